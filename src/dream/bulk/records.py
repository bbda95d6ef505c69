"""What every sink writes per row, and the row-id rules every sink and the runner share.

One metadata entry per row, the same in the dir journal (one JSON line), the S3 journal
(one small JSON object) and every Parquet table (one row). The layout is dream-engine
0.5.0's (sdk-surface §16, §18.3), so code written for it reads our tables unchanged:

    <source keys>        the source row's metadata, one column each, types as given
    _source_<key>        a source value whose key collides with a reserved one below
    request_id           str    engine / server request id ("" when none)
    engine_wall_ms       float  engine time for the row (0.0 if failed)
    estimated_charge_usd float  charge for the row (0.0 if failed)
    status               int    the HTTP status: 200 for ok rows; for failed rows the
                                status the server answers that error with (422, 500, …)
    spec                 str    the model slug the row ran on (the resolved default too)
    row_id               str    the source's row id
    file_name            str    "<videos_subdir>/<row_id>.mp4" for ok rows, "" for failed
    error                str    why the row failed (None for ok rows)          ┐ ours, not
    attempts             int    predict attempts made (retries included)       │ in 0.5.0
    frames               int    frames in the video (start frame included)     │
    sampling_seed        int    the seed the run sampled with                  │
    num_steps            int    sampler steps asked for (None: spec default)   │
    guidance             float  guidance asked for (None: spec default)        ┘

A source key keeps its own column (its type inferred over all rows: bool, int64,
float64 or string; anything else, lists and dicts included, is written as JSON text).
The sampling seed is not called `seed`, because sources use that name for their own
(the product docs' data-augmentation example does).

Sinks (`dream.io.sinks`) write these entries; the runners (`dream.bulk`) build them.
This module imports nothing heavy; the Parquet helpers import pyarrow when called.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dream._extras import require

# 0.5.0's reserved keys, then ours; a source key among them is kept as `_source_<key>`.
SDK_KEYS: tuple[str, ...] = ("request_id", "engine_wall_ms", "estimated_charge_usd", "status", "spec")
EXTRA_KEYS: tuple[str, ...] = ("error", "attempts", "frames", "sampling_seed", "num_steps", "guidance")
RESERVED_KEYS: frozenset[str] = frozenset(SDK_KEYS + EXTRA_KEYS)
# The sampling parameters a resumed run compares before it skips a finished row.
PARAM_KEYS: tuple[str, ...] = ("spec", "sampling_seed", "num_steps", "guidance")

# Columns whose type is fixed (pyarrow type names); source columns are inferred.
KNOWN_TYPES: dict[str, str] = {
    "request_id": "string",
    "engine_wall_ms": "float64",
    "estimated_charge_usd": "float64",
    "status": "int64",
    "spec": "string",
    "row_id": "string",
    "file_name": "string",
    "error": "string",
    "attempts": "int64",
    "frames": "int64",
    "sampling_seed": "int64",
    "num_steps": "int64",
    "guidance": "float64",
}
_SDK_TAIL = (*SDK_KEYS, "row_id", "file_name")  # 0.5.0's column order after the source keys
# The columns every table has, in order (a run with no row writes these, no source column).
BASE_COLUMNS: tuple[str, ...] = (*_SDK_TAIL, *EXTRA_KEYS)

# Journal names of the two outcomes (S3 journal prefixes); the table says it by `status`.
STATUS_OK = "ok"
STATUS_FAILED = "failed"
HTTP_OK = 200

_MAX_ROW_ID_BYTES = 200  # leaves room for ".mp4" and temp suffixes under the usual 255-byte name limit


def unsafe_row_id_reason(row_id: object) -> str | None:
    """Why `row_id` cannot name a file in an output folder, or None when it can.

    Row ids become file names (`videos/<row_id>.mp4`) and object keys, so they must be
    one non-empty path segment that cannot climb out of the folder.
    """
    if not isinstance(row_id, str):
        return f"row id must be a str, got {type(row_id).__name__} {row_id!r}"
    if row_id == "":
        return "row id is empty"
    if row_id in (".", ".."):
        return f"row id {row_id!r} would escape the output folder"
    if "/" in row_id or "\\" in row_id:
        return f"row id {row_id!r} contains a path separator and would escape the output folder"
    if any(ord(c) < 32 or c == "\x7f" for c in row_id):
        return f"row id {row_id!r} contains a control character"
    if len(row_id.encode("utf-8", "surrogatepass")) > _MAX_ROW_ID_BYTES:
        return f"row id {row_id[:40]!r}… is longer than {_MAX_ROW_ID_BYTES} bytes"
    return None


def check_row_id(row_id: object) -> str:
    """Return `row_id` if it is safe as a file name, else raise ValueError naming it."""
    reason = unsafe_row_id_reason(row_id)
    if reason:
        raise ValueError(reason)
    return row_id  # type: ignore[return-value]


def _json_default(value: Any) -> Any:
    # Source metadata holds whatever the dataset had (numpy scalars, arrays, dates, images…):
    # keep what JSON can say and summarise the rest instead of failing the row.
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) <= 64:
            return {"base64": base64.b64encode(raw).decode("ascii")}
        return f"<{len(raw)} bytes>"
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    size = getattr(value, "size", None)
    mode = getattr(value, "mode", None)
    if mode is not None and size is not None:  # a PIL image
        return f"<image {mode} {size}>"
    return str(value)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def source_metadata_json(metadata: Mapping[str, Any] | None) -> str:
    """The source metadata as JSON text (non-JSON values summarised, never an error)."""
    if not metadata:
        return "{}"
    try:
        return json.dumps(dict(metadata), default=_json_default, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        cleaned = {str(k): _finite_or_none(v) for k, v in metadata.items()}
        return json.dumps(cleaned, default=_json_default, ensure_ascii=False, allow_nan=False)


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def status_code(value: Any) -> int:
    """The int status of an entry's `status` (our older journals said "ok" / "failed")."""
    if value == STATUS_OK:
        return HTTP_OK
    if value == STATUS_FAILED:
        return 500
    code = _opt_int(value)
    return HTTP_OK if code is None else code


def is_ok(entry: Mapping[str, Any]) -> bool:
    """Whether an entry (or a 0.5.0 table row, status 200) is a finished, successful row."""
    return 200 <= status_code(entry.get("status", HTTP_OK)) < 300


def _jsonable(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """`metadata` as JSON values (numpy scalars to numbers, bytes summarised, NaN to None)."""
    return json.loads(source_metadata_json(metadata))


def entry_for(
    row_id: str, metadata: Mapping[str, Any] | None, *, file_name: str, failed: bool = False
) -> dict:
    """The metadata entry (one Parquet row) for a record.

    `metadata` is a `RolloutRecord.metadata` as predict_many builds it (source keys at the
    top level plus the reserved keys); a record written by hand may carry anything, and
    its keys become columns all the same. The sink adds `row_id` and `file_name`.
    """
    entry = _jsonable({str(k): v for k, v in (metadata or {}).items()})
    status = status_code(entry.get("status", HTTP_OK))
    if failed and 200 <= status < 300:
        status = 500
    entry["status"] = status
    entry["row_id"] = row_id
    entry["file_name"] = file_name if 200 <= status < 300 else ""
    return entry


def row_params(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling parameters an entry recorded (only those it has a column for)."""
    return {key: entry[key] for key in PARAM_KEYS if key in entry}


def entry_to_line(entry: Mapping[str, Any]) -> bytes:
    """One journal line (JSON + newline)."""
    return (json.dumps(entry, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n").encode("utf-8")


def iter_journal_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, entry) for every complete, parseable line of a JSONL journal.

    A line cut short by a crash (no trailing newline, or not JSON) is skipped: the row it
    described was never acknowledged, so the rerun computes it again.
    """
    with open(path, "rb") as fh:
        for index, raw in enumerate(fh):
            if not raw.endswith(b"\n"):
                break
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("row_id"), str):
                yield index, entry


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "other"


def _column_type(kinds: set[str]) -> str:
    if kinds == {"bool"}:
        return "bool"
    if kinds == {"int"}:
        return "int64"
    if kinds and kinds <= {"int", "float"}:
        return "float64"
    return "string"  # str, mixed, lists, dicts: JSON text for anything not a str


class ParquetEntryWriter:
    """Writes metadata entries as one Parquet table with bounded memory.

    The columns are only known once every entry has been seen (a source key may first
    appear in the last row), so entries are spooled to a temporary JSON Lines file while
    their keys and value kinds are collected; `close()` fixes the schema (0.5.0's column
    order, see the module docstring) and streams the spool into the file in batches.

    `kinds`: the columns and value kinds of tables this one must match (the earlier
    shards of a dataset, `kinds_of_table`): their columns come first, in their order,
    and a column's type is the widest its values take in any of them.
    """

    def __init__(
        self, where: Any, *, batch_rows: int = 2048, kinds: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        self._pq = require("pyarrow.parquet", "Writing the Parquet metadata table")
        self._pa = require("pyarrow", "Writing the Parquet metadata table")
        self._where = where
        self._spool = tempfile.TemporaryFile(prefix="dream-metadata-")  # noqa: SIM115
        # insertion order = first appearance
        self._kinds: dict[str, set[str]] = {str(k): set(v) for k, v in (kinds or {}).items()}
        self._batch_rows = batch_rows
        self.rows = 0

    @property
    def kinds(self) -> dict[str, set[str]]:
        """Every column seen so far (given and added) -> the kinds of its non-null values."""
        return {k: set(v) for k, v in self._kinds.items()}

    def add(self, entry: Mapping[str, Any]) -> None:
        for key, value in entry.items():
            kinds = self._kinds.setdefault(str(key), set())
            if value is not None:
                kinds.add(_kind(value))
        self._spool.write(entry_to_line(entry))
        self.rows += 1

    def add_all(self, entries: Iterable[Mapping[str, Any]]) -> None:
        for entry in entries:
            self.add(entry)

    def schema(self) -> Any:
        """The table's schema: source columns, `_source_*`, 0.5.0's columns, then ours."""
        pa = self._pa
        types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
        source = [k for k in self._kinds if k not in KNOWN_TYPES and not k.startswith("_source_")]
        aliased = [k for k in self._kinds if k not in KNOWN_TYPES and k.startswith("_source_")]
        fields = [pa.field(k, types[_column_type(self._kinds[k])]) for k in (*source, *aliased)]
        fields += [pa.field(k, types[KNOWN_TYPES[k]]) for k in BASE_COLUMNS]
        return pa.schema(fields)

    def close(self) -> None:
        schema = self.schema()
        converters = {f.name: _converter(str(f.type)) for f in schema}
        writer = self._pq.ParquetWriter(self._where, schema, compression="zstd")
        try:
            self._spool.seek(0)
            batch: list[dict] = []
            for raw in self._spool:
                entry = json.loads(raw)
                batch.append({name: convert(entry.get(name)) for name, convert in converters.items()})
                if len(batch) >= self._batch_rows:
                    writer.write_batch(self._pa.RecordBatch.from_pylist(batch, schema=schema))
                    batch = []
            if batch:
                writer.write_batch(self._pa.RecordBatch.from_pylist(batch, schema=schema))
        finally:
            writer.close()
            self._spool.close()


def _converter(type_name: str) -> Any:
    if type_name == "int64":
        return _opt_int
    if type_name == "double":
        return _opt_float
    if type_name == "bool":
        return lambda v: None if v is None else bool(v)

    def to_text(value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, default=_json_default)

    return to_text


_KIND_OF_TYPE = {"bool": "bool", "string": "str", "large_string": "str", "double": "float", "float": "float"}


def kinds_of_table(table: Any) -> dict[str, set[str]]:
    """A written table's columns -> the value kinds `ParquetEntryWriter` would have seen
    (none for a column that is null in every row, so that it constrains nothing)."""
    pa = require("pyarrow", "Reading a Parquet metadata table")
    kinds: dict[str, set[str]] = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        if column.null_count == len(column):
            kinds[field.name] = set()
        elif pa.types.is_integer(field.type):
            kinds[field.name] = {"int"}
        else:
            kinds[field.name] = {_KIND_OF_TYPE.get(str(field.type), "other")}
    return kinds


def conform_table(table: Any, schema: Any) -> Any:
    """`table` with exactly `schema`'s columns, in its order: a missing column is null, and
    values are converted as `ParquetEntryWriter` converts them (int to float, anything to
    JSON text in a string column)."""
    pa = require("pyarrow", "Writing the Parquet metadata table")
    converters = {f.name: _converter(str(f.type)) for f in schema}
    rows = [{name: convert(row.get(name)) for name, convert in converters.items()} for row in table.to_pylist()]
    return pa.Table.from_pylist(rows, schema=schema)


def read_finished_columns(source: Any) -> Iterator[tuple[str, bool, dict[str, Any]]]:
    """(row_id, ok, sampling parameters) per row of a metadata Parquet file.

    Reads our tables, our older ones (status "ok" / "failed") and 0.5.0's (status 200, no
    sampling columns; a table without `status` lists only finished rows).
    """
    pq = require("pyarrow.parquet", "Reading a Parquet metadata table")
    pf = pq.ParquetFile(source)
    names = set(pf.schema_arrow.names)
    if "row_id" not in names:
        return
    columns = ["row_id", *(c for c in ("status", *PARAM_KEYS) if c in names)]
    for batch in pf.iter_batches(columns=columns, batch_size=4096):
        for row in batch.to_pylist():
            if isinstance(row["row_id"], str):
                yield row["row_id"], is_ok(row), row_params(row)
