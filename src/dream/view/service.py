"""What the viewer's page asks for, answered from one sink output (no HTTP here).

`OutputView` is the service behind `dream view`; the server's `/ui` has its own over a
key's rollout history (`dream.server.services.history`). Both answer the same calls, so
one router and one page serve both:

    summary()                 title, where the rows come from, what the page may offer
    page(...)                 one server-side page of rows (filter, search, sort)
    row(row_id)               one row, with its reference if it has one
    video(row_id)             the row's mp4 bytes
    image(kind, row_id)       "thumb" (first | last frame) or "strip" (all frames) PNG
    compare(row_id)           reference + per-frame PSNR of the row against it
    reference_image / reference_video   the reference's strip / mp4
"""

from __future__ import annotations

import statistics
from typing import Any

from dream.view.catalog import Catalog, Row
from dream.view.media import FrameCache, frame_psnr

__all__ = ["OutputView", "RowNotFound", "mean_db"]


class RowNotFound(KeyError):
    """A row id the output does not hold, or a row without the asked-for media (HTTP 404)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


def mean_db(values: list[float | None]) -> float | None:
    """Mean of per-frame PSNRs, identical frames (None) left out; None when all are."""
    finite = [v for v in values if v is not None]
    return round(statistics.fmean(finite), 3) if finite else None


class OutputView:
    """The viewer's service over a `Catalog`."""

    def __init__(self, catalog: Catalog, *, title: str | None = None) -> None:
        self.catalog = catalog
        self.title = title or catalog.store.uri
        self.cache = FrameCache(catalog.store.read_bytes, catalog.store.version)

    def summary(self) -> dict[str, Any]:
        return {"title": self.title, "uri": self.catalog.store.uri, "playground": False, "needs_key": False}

    def page(self, **query: Any) -> dict[str, Any]:
        return self.catalog.page(**query).to_json()

    def _row(self, row_id: str) -> Row:
        try:
            return self.catalog.row(row_id)
        except KeyError as exc:
            raise RowNotFound(str(exc.args[0])) from None

    def _video_path(self, row_id: str) -> str:
        row = self._row(row_id)
        if row.video is None:
            raise RowNotFound(f"row {row_id!r} failed and has no video")
        return row.video

    def _reference_path(self, row_id: str) -> tuple[str, str]:
        parent = self.catalog.parent_of(row_id)
        if parent is None:
            raise RowNotFound(f"row {row_id!r} has no reference to compare with")
        return parent, self.catalog.parent_video(parent)

    def row(self, row_id: str) -> dict[str, Any]:
        row = self._row(row_id)
        out = row.to_json(self.catalog.parent_of(row_id))
        out["source"] = {k: v for k, v in row.source.items()}
        out["reference"] = None
        if out["parent"] is not None:
            out["reference"] = {"kind": "parent", "row_id": out["parent"], "label": f"parent {out['parent']}"}
        return out

    def video(self, row_id: str) -> bytes:
        return self.catalog.store.read_bytes(self._video_path(row_id))

    def image(self, kind: str, row_id: str) -> bytes:
        return self.cache.image(kind, self._video_path(row_id))

    def reference_video(self, row_id: str) -> bytes:
        return self.catalog.store.read_bytes(self._reference_path(row_id)[1])

    def reference_image(self, kind: str, row_id: str) -> bytes:
        return self.cache.image(kind, self._reference_path(row_id)[1])

    def compare(self, row_id: str) -> dict[str, Any]:
        parent, ref_path = self._reference_path(row_id)
        frames = self.cache.frames(self._video_path(row_id))
        reference = self.cache.frames(ref_path)
        values = frame_psnr(frames, reference)
        return {
            "row_id": row_id,
            "reference": {"kind": "parent", "row_id": parent, "label": f"parent {parent}"},
            "frames": len(values),
            "psnr_db": values,
            "mean_db": mean_db(values),
        }
