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

import json
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dream._extras import require
from dream.bulk.records import BASE_COLUMNS
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
# Columns predict_many writes itself, in today's layout and in the one before 0.5.0's (a
# `source_metadata` JSON column, `cost_usd`); `seed` is not among them: it is a source key.
_RECORD_COLUMNS = frozenset(BASE_COLUMNS) | {"status_code", "http_status", "cost_usd", "source_metadata"}


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


class Row:
    """One metadata row: its columns as written, plus what the viewer derives.

    Columns stay in the catalog's column lists and the source metadata stays JSON text
    until asked for, so opening a 20,000-row output builds no per-row dicts.
    """

    __slots__ = ("_extra", "_index", "_source", "_table", "error", "qc", "row_id", "status", "video")

    def __init__(self, row_id: str, status: str, error: str | None, video: str | None,
                 table: dict[str, list[Any]], index: int, extra: tuple[str, ...]) -> None:
        self.row_id = row_id
        self.status = status  # "ok" | "failed"
        self.error = error
        self.video = video  # relative path of its mp4, None for failed rows
        self.qc: dict[str, Any] = {}
        self._table = table
        self._index = index
        self._extra = extra  # top-level columns that are source metadata (issue 11's layout)
        self._source: dict[str, Any] | None = None

    def value(self, column: str) -> Any:
        """One column's value (the QC columns come from `qc_scores.parquet`)."""
        if column == "qc_drift_db":
            return self.qc.get("drift_db")
        if column == "qc_flagged":
            return bool(self.qc.get("flagged")) if self.qc else None
        values = self._table.get(column)
        return None if values is None else values[self._index]

    @property
    def columns(self) -> dict[str, Any]:
        out = {name: values[self._index] for name, values in self._table.items()}
        if self.qc:
            out["qc_drift_db"] = self.value("qc_drift_db")
            out["qc_flagged"] = self.value("qc_flagged")
        return out

    def source_value(self, key: str) -> Any:
        """One source-metadata value, parsing the JSON text only when it can hold the key."""
        if key in self._extra:
            value = self.value(key)
            if value is not None:
                return value
        if self._source is None:
            text = self.value("source_metadata")
            if isinstance(text, str) and f'"{key}"' not in text:
                return None
        return self.source.get(key)

    @property
    def source(self) -> dict[str, Any]:
        """The source row's metadata: the JSON column merged with the top-level extra columns."""
        if self._source is None:
            merged: dict[str, Any] = {}
            text = self.value("source_metadata")
            if isinstance(text, str) and text:
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    merged.update(parsed)
            elif isinstance(text, Mapping):
                merged.update(text)
            merged.update({k: self.value(k) for k in self._extra if self.value(k) is not None})
            self._source = merged
        return self._source

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


def _read_parquet(data: bytes) -> Any:
    """The table in `data`. Read from an Arrow buffer, not a Python file object: Arrow's
    scanner threads may drop their last reference to a Python file while the interpreter
    exits, and that aborts the process ("terminate called without an active exception")."""
    pa = require("pyarrow", "Reading the metadata table")
    pq = require("pyarrow.parquet", "Reading the metadata table")
    return pq.read_table(pa.BufferReader(data))


def _read_parquet_columns(data: bytes) -> dict[str, list[Any]]:
    return _read_parquet(data).to_pydict()


def _read_parquet_rows(data: bytes) -> list[dict[str, Any]]:
    return _read_parquet(data).to_pylist()


def _read_jsonl_columns(data: bytes, *, last_wins: bool) -> dict[str, list[Any]]:
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
    entries = list(rows.values()) if last_wins else ordered
    names: dict[str, None] = {}
    for entry in entries:
        names.update(dict.fromkeys(entry))
    return {name: [e.get(name) for e in entries] for name in names}


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
        found = [name for name in ("metadata.parquet", "metadata.jsonl", "metadata.journal.jsonl")
                 if self.store.exists(name)]
        if not found:
            raise FileNotFoundError(
                f"{self.store.uri!r} holds no metadata table (metadata.parquet, metadata.jsonl, "
                "metadata.journal.jsonl or metadata/data-*.parquet): is it a dream sink output?"
            )
        table, journal = found[0], "metadata.journal.jsonl"
        if table != journal and journal in found:
            # A dir sink run in progress appends to the journal; the table is rebuilt only
            # at finalize(), so a journal newer than the table holds rows the table lacks.
            t, j = self.store.version(table), self.store.version(journal)
            if isinstance(t, tuple) and isinstance(j, tuple) and j[0] > t[0]:
                return [journal]
        return [table]

    def _version(self) -> object:
        # Local outputs are looked at again on every call (a run may be writing into them);
        # remote ones once, to keep each page one request to S3 / the Hub at most.
        if self.store.local_dir() is not None or not self._metadata_files:
            self._metadata_files = self._find_metadata()
        return (tuple(self._metadata_files),
                tuple(self.store.version(f) for f in [*self._metadata_files, QC_SCORES_FILE]))

    def refresh(self) -> None:
        """Re-read the table if it changed since the last read."""
        with self._lock:
            version = self._version()
            if version == self._loaded_version:
                return
            self._load()
            self._loaded_version = version

    def _load(self) -> None:
        table: dict[str, list[Any]] = {}
        size = 0
        for name in self._metadata_files:
            data = self.store.read_bytes(name)
            if name.endswith(".parquet"):
                part = _read_parquet_columns(data)
            else:
                part = _read_jsonl_columns(data, last_wins=name.endswith(".journal.jsonl"))
            n = len(next(iter(part.values()), []))
            for column in part:
                if column not in table:
                    table[column] = [None] * size
            for column, values in table.items():
                values.extend(part.get(column, [None] * n))
            size += n
        extra = tuple(c for c in table if c not in _RECORD_COLUMNS)
        ids, statuses = table.get("row_id", []), table.get("status", [None] * size)
        files, errors = table.get("file_name", [None] * size), table.get("error", [None] * size)
        status_of: dict[Any, str] = {}
        rows_out: list[Row] = []
        for i in range(size):
            row_id = ids[i]
            if row_id is None:
                continue
            row_id = str(row_id)
            raw_status = statuses[i]
            status = status_of.get(raw_status)
            if status is None:
                status = status_of[raw_status] = normalize_status(raw_status)
            video = None
            if status == "ok":
                file_name = files[i]
                video = file_name if isinstance(file_name, str) and file_name else f"videos/{row_id}.mp4"
            error = errors[i]
            rows_out.append(Row(row_id, status, None if error is None else str(error), video, table, i, extra))
        self._rows = rows_out
        self._by_id = {r.row_id: r for r in rows_out}
        self._columns = list(table)
        self._load_qc()
        self._link_parents()

    def _load_qc(self) -> None:
        if not self.store.exists(QC_SCORES_FILE):
            return
        for score in _read_parquet_rows(self.store.read_bytes(QC_SCORES_FILE)):
            row = self._by_id.get(str(score.get("row_id")))
            if row is None:
                continue
            row.qc = {
                "parent_row_id": score.get("parent_row_id"),
                "drift_db": score.get("drift_db"),
                "flagged": bool(score.get("flagged")),
                "error": score.get("error"),
            }
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
        # A row's parent is its first parent key with a value. Keys are cheap to rule out
        # on the JSON text (a substring test), so only rows that may hold one are parsed.
        texts = [row.value("source_metadata") for row in self._rows]
        decided = [row.video is None for row in self._rows]  # failed rows: nothing to put beside a parent
        for i, row in enumerate(self._rows):
            if not decided[i] and row.qc.get("parent_row_id"):
                self._parent_of[row.row_id] = str(row.qc["parent_row_id"])
                decided[i] = True
        for key in keys:
            needle = f'"{key}"'
            in_column = key in self._columns and key not in _RECORD_COLUMNS
            for i, row in enumerate(self._rows):
                if decided[i]:
                    continue
                text = texts[i]
                if not in_column and isinstance(text, str) and needle not in text:
                    continue
                value = row.source_value(key)
                if value is None or value == "":
                    continue
                decided[i] = True
                parent = str(value)
                if parent != row.row_id and (parent in self._parent_videos or self._has_video(parent)):
                    self._parent_of[row.row_id] = parent

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
            selected.sort(key=lambda r: _sort_key(r.value(sort)), reverse=descending)
            if descending:  # keep missing values last either way
                selected.sort(key=lambda r: r.value(sort) is None)
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
