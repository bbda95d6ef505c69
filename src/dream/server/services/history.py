"""A customer's rollout history, for the browser page at `/ui` (no FastAPI here).

`RolloutHistory` lists the `rollout_records` of one customer, a page at a time, in SQL
(filter, id search, sort, LIMIT/OFFSET), so a long history costs one small query.
`HistoryView` answers the viewer page's calls (see `dream.view.service`) over it for one
signed-in principal: every call looks the rollout up *with the principal's customer id*,
so another customer's rollout is "not found", never shown.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from dream.server.services.db import Database, rollout_records

if TYPE_CHECKING:
    from dream.server.services.container import Services
    from dream.server.services.ledger import Principal
    from dream.view.media import FrameCache

__all__ = ["HISTORY_COLUMNS", "HistoryView", "RolloutHistory"]

# The page's table columns; the first four sort in SQL.
HISTORY_COLUMNS = ["row_id", "status", "created", "updated", "model", "frames", "cost_usd", "engine_wall_ms", "seed",
                   "error"]
_SORTABLE = {
    "row_id": rollout_records.c.id,
    "status": rollout_records.c.status,
    "created": rollout_records.c.created,
    "updated": rollout_records.c.updated,
}
# The page's status names → the records' (wire-protocol §7.2 statuses).
_STATUS = {"ok": ("succeeded",), "failed": ("failed",)}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class RolloutHistory:
    """Rollout records of one customer at a time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def page(
        self, customer_id: str, *, offset: int = 0, limit: int = 60, status: str = "all", query: str = "",
        sort: str | None = None, descending: bool = False,
    ) -> tuple[int, list[dict[str, Any]], dict[str, int]]:
        """(matching rows, this page's records, counts per status) for `customer_id`.

        Newest first unless `sort` names a column of `_SORTABLE`; ValueError names a bad
        `status` or `sort`.
        """
        if status not in ("all", "ok", "failed", "flagged"):
            raise ValueError(f"status must be one of ['all', 'ok', 'failed', 'flagged'], got {status!r}")
        if sort is not None and sort not in _SORTABLE:
            raise ValueError(f"cannot sort the rollout history by {sort!r}; it sorts by {sorted(_SORTABLE)}")
        t = rollout_records
        where = [t.c.customer_id == customer_id]
        if status == "flagged":
            where.append(t.c.id.is_(None))  # QC flags are a bulk-output notion: none here
        elif status != "all":
            where.append(t.c.status.in_(_STATUS[status]))
        if query.strip():
            where.append(t.c.id.contains(query.strip(), autoescape=True))
        order = _SORTABLE[sort] if sort else t.c.created
        order = order.desc() if (descending or not sort) else order.asc()
        with self.db.begin() as conn:
            total = conn.execute(select(func.count()).select_from(t).where(*where)).scalar_one()
            rows = conn.execute(
                select(t).where(*where).order_by(order, t.c.id).offset(offset).limit(limit)
            ).mappings().all()
            by_status = dict(conn.execute(
                select(t.c.status, func.count()).where(t.c.customer_id == customer_id).group_by(t.c.status)
            ).all())
        counts = {"all": sum(by_status.values()), "ok": by_status.get("succeeded", 0),
                  "failed": by_status.get("failed", 0), "flagged": 0}
        return total, [dict(r) for r in rows], counts

    def get(self, customer_id: str, rollout_id: str) -> dict[str, Any] | None:
        """The record if this customer owns it, else None."""
        with self.db.begin() as conn:
            row = conn.execute(
                select(rollout_records).where(rollout_records.c.id == rollout_id,
                                              rollout_records.c.customer_id == customer_id)
            ).mappings().first()
        return None if row is None else dict(row)


class HistoryView:
    """The viewer page's service over one principal's history (the `/ui` side of `OutputView`)."""

    def __init__(self, svc: Services, principal: Principal, frames: FrameCache) -> None:
        self.svc = svc
        self.principal = principal
        self.history = RolloutHistory(svc.db)
        self.frames = frames

    def summary(self) -> dict[str, Any]:
        return {
            "title": f"rollouts of {self.principal.customer_name}",
            "uri": "",
            "needs_key": self.svc.settings.auth,
            "signed_in": True,
            "customer": self.principal.customer_name,
            "playground": True,
            "models": list(self.svc.settings.specs),
        }

    def _row_json(self, record: dict[str, Any]) -> dict[str, Any]:
        env = json.loads(record["envelope"])
        status = {"succeeded": "ok"}.get(record["status"], record["status"])
        has_video = bool(record["video_id"]) and record["status"] == "succeeded" and self.svc.videos.exists(
            record["video_id"])
        error = record["error"]
        if record["status"] == "succeeded" and not has_video:
            error = f"the video is gone (the server keeps videos {self.svc.videos.retain_s} s)"
        columns = {
            "row_id": record["id"], "status": record["status"], "created": _iso(record["created"]),
            "updated": _iso(record["updated"]), "model": env.get("model"), "frames": env.get("frames"),
            "cost_usd": env.get("cost_usd"), "engine_wall_ms": env.get("engine_wall_ms"), "seed": env.get("seed"),
            "error": record["error"],
        }
        return {"row_id": record["id"], "status": status, "error": error, "has_video": has_video, "parent": None,
                "qc": None, "columns": columns}

    def page(self, *, offset: int, limit: int, status: str, query: str, sort: str | None,
             descending: bool) -> dict[str, Any]:
        total, records, counts = self.history.page(
            self.principal.customer_id, offset=offset, limit=limit, status=status, query=query, sort=sort,
            descending=descending,
        )
        return {"total": total, "offset": offset, "rows": [self._row_json(r) for r in records], "counts": counts,
                "columns": HISTORY_COLUMNS}

    def _record(self, rollout_id: str) -> dict[str, Any]:
        from dream.view.service import RowNotFound

        record = self.history.get(self.principal.customer_id, rollout_id)
        if record is None:
            raise RowNotFound(f"no rollout {rollout_id!r} for this API key")
        return record

    def _video_id(self, rollout_id: str) -> str:
        from dream.view.service import RowNotFound

        record = self._record(rollout_id)
        if not record["video_id"] or record["status"] != "succeeded" or not self.svc.videos.exists(record["video_id"]):
            raise RowNotFound(f"rollout {rollout_id!r} has no video")
        return record["video_id"]

    def row(self, rollout_id: str) -> dict[str, Any]:
        out = self._row_json(self._record(rollout_id))
        out["source"] = {}
        out["reference"] = None
        return out

    def video(self, rollout_id: str) -> bytes:
        return self.svc.videos.read(self._video_id(rollout_id))

    def image(self, kind: str, rollout_id: str) -> bytes:
        return self.frames.image(kind, self._video_id(rollout_id))

    def compare(self, rollout_id: str) -> dict[str, Any]:
        from dream.view.service import RowNotFound

        self._record(rollout_id)
        raise RowNotFound(f"rollout {rollout_id!r} has no reference to compare with")

    def reference_video(self, rollout_id: str) -> bytes:
        return self.compare(rollout_id)  # raises RowNotFound: server rollouts have no reference

    def reference_image(self, kind: str, rollout_id: str) -> bytes:
        return self.compare(rollout_id)  # raises RowNotFound
