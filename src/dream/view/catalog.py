"""The rows of one sink output, as the viewer and `dream qc` see them.

`Catalog(store)` reads the metadata table that the sink wrote (the dir/S3 `metadata.parquet`,
the dir sink's JSON Lines fallback or its journal while a run is still going, the Hub's
`metadata/data-*.parquet` shards) into one list of rows, and answers pages of it:
filtered by status, searched by row id, sorted by any column, sliced on the server so a
20,000-row run costs the browser one page.

Two metadata layouts are read alike: today's (`status` "ok"/"failed", the source row's
metadata as JSON text in `source_metadata`) and the official SDK's (`status` an HTTP
code, 200 for ok; source metadata keys as top-level columns). A row's *source* is both
merged, so `--parent-key source_episode` finds the key wherever it lives.

References for side-by-side viewing:
- parent: the row named by the row's `parent_key` value, when that row has a video
  (in this output, or among the parents `dream qc` rolled out into `qc_parents/`);
- QC scores (`qc_scores.parquet`, written by `dream qc`) are joined as columns
  `qc_drift_db` and `qc_flagged`.
"""

from __future__ import annotations

import io
import json
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dream.io._records import COLUMN_NAMES, require
from dream.view.store import OutputStore

__all__ = [
    "DEFAULT_PARENT_KEYS",
    "PARENTS_DIR",
    "QC_SCORES_FILE",
    "Catalog",
    "Page",
    "Row",
    "normalize_status",
]

QC_SCORES_FILE = "qc_scores.parquet"
PARENTS_DIR = "qc_parents"
# Keys tried, in order, when no --parent-key is given.
DEFAULT_PARENT_KEYS = ("parent_row_id", "parent_id", "parent", "source_episode")
STATUSES = ("all", "ok", "failed", "flagged")
_RECORD_COLUMNS = frozenset(COLUMN_NAMES) | {"status_code", "http_status"}


def normalize_status(value: Any) -> str:
    """'ok' or 'failed' from either layout (200 / '200' / 'ok' / None → ok)."""
    if value is None:
        return "ok"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "ok" if 200 <= int(value) < 300 else "failed"
    text = str(value).strip().lower()
    if text.isdigit():
        return "ok" if 200 <= int(text) < 300 else "failed"
    return "ok" if text in ("ok", "succeeded", "success", "") else "failed"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


@dataclass
class Row:
    """One metadata row: its columns as written, plus what the viewer derives."""

    row_id: str
    status: str  # "ok" | "failed"
    error: str | None
    video: str | None  # relative path of its mp4, None for failed rows
    columns: dict[str, Any]
    source: dict[str, Any]
    qc: dict[str, Any] = field(default_factory=dict)

    def to_json(self, parent: str | None) -> dict[str, Any]:
        return {
            "row_id": self.row_id,
            "status": self.status,
            "error": self.error,
            "has_video": self.video is not None,
            "parent": parent,
            "qc": _jsonable(self.qc) or None,
            "columns": _jsonable(self.columns),
        }


@dataclass(frozen=True)
class Page:
    """One server-side page of a filtered, sorted view."""

    total: int  # rows matching the filter
    offset: int
    rows: list[dict[str, Any]]
    counts: dict[str, int]  # all / ok / failed / flagged over the whole output
    columns: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "offset": self.offset, "rows": self.rows, "counts": self.counts,
                "columns": self.columns}


def _read_parquet_rows(data: bytes) -> tuple[list[str], list[dict[str, Any]]]:
    pq = require("pyarrow.parquet", "Reading the metadata table")
    table = pq.read_table(io.BytesIO(data))
    return list(table.column_names), table.to_pylist()


def _read_jsonl_rows(data: bytes, *, last_wins: bool) -> tuple[list[str], list[dict[str, Any]]]:
    rows: dict[str, dict[str, Any]] = {}
    ordered: list[dict[str, Any]] = []
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # a line cut short by a crash: that row was never acknowledged
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("row_id"), str):
            continue
        if last_wins:
            rows.pop(entry["row_id"], None)
            rows[entry["row_id"]] = entry
        else:
            ordered.append(entry)
    out = list(rows.values()) if last_wins else ordered
    columns: list[str] = []
    for entry in out[:1] or []:
        columns = list(entry)
    return columns, out


def _sort_key(value: Any) -> tuple:
    # None last; numbers before text so a numeric column sorts numerically.
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0, "")
    if isinstance(value, bool):
        return (0, int(value), "")
    if isinstance(value, (int, float)):
        return (0, value, "")
    return (1, 0, str(value))


class Catalog:
    """The rows of a sink output (see the module docstring).

    `parent_key` names the source-metadata key holding a row's parent row id; None tries
    `DEFAULT_PARENT_KEYS`. The table is read on first use and again whenever the store
    reports that the metadata file changed (a run still writing into the folder).
    """

    def __init__(self, store: OutputStore, *, parent_key: str | None = None) -> None:
        self.store = store
        self.parent_key = parent_key
        self._lock = threading.Lock()
        self._loaded_version: object = object()
        self._rows: list[Row] = []
        self._by_id: dict[str, Row] = {}
        self._columns: list[str] = []
        self._metadata_files: list[str] = []
        self._parent_of: dict[str, str] = {}
        self._parent_videos: dict[str, str] = {}

    # -- loading ----------------------------------------------------------------------

    def _find_metadata(self) -> list[str]:
        shards = [f for f in self.store.list("metadata") if f.startswith("metadata/data-") and f.endswith(".parquet")]
        if shards:
            return shards
        for name in ("metadata.parquet", "metadata.jsonl", "metadata.journal.jsonl"):
            if self.store.exists(name):
                return [name]
        raise FileNotFoundError(
            f"{self.store.uri!r} holds no metadata table (metadata.parquet, metadata.jsonl, "
            "metadata.journal.jsonl or metadata/data-*.parquet): is it a dream sink output?"
        )

    def _version(self) -> object:
        files = self._metadata_files or self._find_metadata()
        return tuple(self.store.version(f) for f in [*files, QC_SCORES_FILE])

    def refresh(self) -> None:
        """Re-read the table if it changed since the last read."""
        with self._lock:
            version = self._version()
            if version == self._loaded_version:
                return
            self._load()
            self._loaded_version = version

    def _load(self) -> None:
        self._metadata_files = self._find_metadata()
        columns: list[str] = []
        entries: list[dict[str, Any]] = []
        for name in self._metadata_files:
            data = self.store.read_bytes(name)
            if name.endswith(".parquet"):
                cols, rows = _read_parquet_rows(data)
            else:
                cols, rows = _read_jsonl_rows(data, last_wins=name.endswith(".journal.jsonl"))
            columns += [c for c in cols if c not in columns]
            entries += rows
        rows_out: list[Row] = []
        for entry in entries:
            row_id = entry.get("row_id")
            if row_id is None:
                continue
            row_id = str(row_id)
            status = normalize_status(entry.get("status"))
            source: dict[str, Any] = {}
            text = entry.get("source_metadata")
            if isinstance(text, str) and text:
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    source.update(parsed)
            elif isinstance(text, Mapping):
                source.update(text)
            source.update({k: v for k, v in entry.items() if k not in _RECORD_COLUMNS})
            file_name = entry.get("file_name")
            video = None
            if status == "ok":
                video = file_name if isinstance(file_name, str) and file_name else f"videos/{row_id}.mp4"
            error = entry.get("error")
            rows_out.append(Row(row_id, status, None if error is None else str(error), video, entry, source))
        self._rows = rows_out
        self._by_id = {r.row_id: r for r in rows_out}
        self._columns = columns
        self._load_qc()
        self._link_parents()

    def _load_qc(self) -> None:
        if not self.store.exists(QC_SCORES_FILE):
            return
        _, scores = _read_parquet_rows(self.store.read_bytes(QC_SCORES_FILE))
        for score in scores:
            row = self._by_id.get(str(score.get("row_id")))
            if row is None:
                continue
            row.qc = {
                "parent_row_id": score.get("parent_row_id"),
                "drift_db": score.get("drift_db"),
                "flagged": bool(score.get("flagged")),
                "error": score.get("error"),
            }
            row.columns["qc_drift_db"] = score.get("drift_db")
            row.columns["qc_flagged"] = bool(score.get("flagged"))
        for name in ("qc_drift_db", "qc_flagged"):
            if name not in self._columns:
                self._columns.append(name)

    def _link_parents(self) -> None:
        parents_dir = f"{PARENTS_DIR}/videos/"
        self._parent_videos = {
            f[len(parents_dir):-4]: f for f in self.store.list(f"{PARENTS_DIR}/videos") if f.endswith(".mp4")
        }
        keys = [self.parent_key] if self.parent_key else list(DEFAULT_PARENT_KEYS)
        self._parent_of = {}
        for row in self._rows:
            if row.video is None:
                continue  # a failed row has nothing to put beside its parent
            if row.qc.get("parent_row_id"):
                self._parent_of[row.row_id] = str(row.qc["parent_row_id"])
                continue
            for key in keys:
                value = row.source.get(key)
                if value is None or value == "":
                    continue
                parent = str(value)
                if parent != row.row_id and (parent in self._parent_videos or self._has_video(parent)):
                    self._parent_of[row.row_id] = parent
                break

    def _has_video(self, row_id: str) -> bool:
        row = self._by_id.get(row_id)
        return row is not None and row.video is not None

    # -- queries ----------------------------------------------------------------------

    @property
    def rows(self) -> list[Row]:
        self.refresh()
        return self._rows

    def row(self, row_id: str) -> Row:
        """The row, or KeyError naming it."""
        self.refresh()
        try:
            return self._by_id[row_id]
        except KeyError:
            raise KeyError(f"no row {row_id!r} in {self.store.uri!r}") from None

    def parent_of(self, row_id: str) -> str | None:
        """The parent row id of a row, when its parent's video can be shown."""
        self.refresh()
        return self._parent_of.get(row_id)

    def parent_video(self, parent_row_id: str) -> str:
        """Relative path of a parent's mp4: the row in this output, else the one `dream qc` rolled out."""
        self.refresh()
        row = self._by_id.get(parent_row_id)
        if row is not None and row.video is not None:
            return row.video
        if parent_row_id in self._parent_videos:
            return self._parent_videos[parent_row_id]
        raise KeyError(f"no video for parent row {parent_row_id!r} in {self.store.uri!r}")

    def page(
        self,
        *,
        offset: int = 0,
        limit: int = 60,
        status: str = "all",
        query: str = "",
        sort: str | None = None,
        descending: bool = False,
    ) -> Page:
        """One page of rows: `status` all/ok/failed/flagged, `query` a row-id substring."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}, got {status!r}")
        if offset < 0 or not 1 <= limit <= 1000:
            raise ValueError(f"offset must be >= 0 and limit in 1..1000, got offset={offset} limit={limit}")
        self.refresh()
        rows: Iterable[Row] = self._rows
        if status == "flagged":
            rows = (r for r in rows if r.qc.get("flagged"))
        elif status != "all":
            rows = (r for r in rows if r.status == status)
        needle = query.strip().lower()
        if needle:
            rows = (r for r in rows if needle in r.row_id.lower())
        selected = list(rows)
        if sort:
            if sort not in self._columns and sort != "row_id":
                raise ValueError(f"cannot sort by {sort!r}: the table's columns are {self._columns}")
            selected.sort(key=lambda r: _sort_key(r.columns.get(sort)), reverse=descending)
            if descending:  # keep missing values last either way
                selected.sort(key=lambda r: r.columns.get(sort) is None)
        counts = {
            "all": len(self._rows),
            "ok": sum(r.status == "ok" for r in self._rows),
            "failed": sum(r.status == "failed" for r in self._rows),
            "flagged": sum(bool(r.qc.get("flagged")) for r in self._rows),
        }
        window = selected[offset : offset + limit]
        return Page(
            total=len(selected),
            offset=offset,
            rows=[r.to_json(self._parent_of.get(r.row_id)) for r in window],
            counts=counts,
            columns=list(self._columns),
        )
