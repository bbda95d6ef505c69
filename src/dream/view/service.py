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
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from dream.view.catalog import Catalog, Row
from dream.view.media import FrameCache, frame_psnr, strip_png, thumbnail_png
from dream.view.truth import LeRobotTruth, has_lerobot_truth

if TYPE_CHECKING:
    import numpy as np

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
        self.truth = LeRobotTruth()
        self._truth_frames: OrderedDict[str, np.ndarray] = OrderedDict()
        self._truth_lock = threading.Lock()

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

    def _reference_info(self, row: Row) -> dict[str, Any] | None:
        """The row's reference: its parent rollout if it has one, else its ground truth."""
        if row.video is None:
            return None
        parent = self.catalog.parent_of(row.row_id)
        if parent is not None:
            return {"kind": "parent", "row_id": parent, "label": f"parent {parent}"}
        if has_lerobot_truth(row.source):
            return {"kind": "truth", "row_id": None,
                    "label": f"ground truth (episode {row.source['episode_index']})"}
        return None

    def _reference_frames(self, row_id: str) -> tuple[dict[str, Any], np.ndarray, str | None]:
        """(reference info, its frames, the parent's video path or None for ground truth)."""
        row = self._row(row_id)
        info = self._reference_info(row)
        if info is None:
            raise RowNotFound(f"row {row_id!r} has no reference to compare with")
        if info["kind"] == "parent":
            path = self.catalog.parent_video(info["row_id"])
            return info, self.cache.frames(path), path
        with self._truth_lock:
            cached = self._truth_frames.get(row_id)
        if cached is None:
            frames = self.cache.frames(self._video_path(row_id))
            try:
                cached = self.truth.frames(row.source, count=len(frames), resolution=frames.shape[1:3])
            except (ValueError, OSError) as exc:
                raise RowNotFound(f"ground truth of row {row_id!r} is unavailable: {exc}") from None
            with self._truth_lock:
                self._truth_frames[row_id] = cached
                while len(self._truth_frames) > 16:
                    self._truth_frames.popitem(last=False)
        return info, cached, None

    def row(self, row_id: str) -> dict[str, Any]:
        row = self._row(row_id)
        out = row.to_json(self.catalog.parent_of(row_id))
        out["source"] = {k: v for k, v in row.source.items()}
        out["reference"] = self._reference_info(row)
        return out

    def video(self, row_id: str) -> bytes:
        return self.catalog.store.read_bytes(self._video_path(row_id))

    def image(self, kind: str, row_id: str) -> bytes:
        return self.cache.image(kind, self._video_path(row_id))

    def reference_video(self, row_id: str) -> bytes:
        _, frames, path = self._reference_frames(row_id)
        if path is not None:
            return self.catalog.store.read_bytes(path)
        from dream.engine.video import encode_mp4

        fps = self._row(row_id).source.get("fps") or 10
        return encode_mp4(frames, round(float(fps)))

    def reference_image(self, kind: str, row_id: str) -> bytes:
        _, frames, path = self._reference_frames(row_id)
        if path is not None:
            return self.cache.image(kind, path)
        return strip_png(frames) if kind == "strip" else thumbnail_png(frames)

    def compare(self, row_id: str) -> dict[str, Any]:
        info, reference, _ = self._reference_frames(row_id)
        frames = self.cache.frames(self._video_path(row_id))
        try:
            values = frame_psnr(frames, reference)
        except ValueError as exc:
            raise RowNotFound(f"row {row_id!r} cannot be compared with its {info['label']}: {exc}") from None
        return {"row_id": row_id, "reference": info, "frames": len(values), "psnr_db": values,
                "mean_db": mean_db(values)}
