"""What every sink writes per row, and the row-id rules every sink and the runner share.

One metadata entry per row, the same in the dir journal (one JSON line), the S3 journal
(one small JSON object) and every Parquet table (one row, explicit schema):

    row_id          str    the source's row id
    file_name       str    "<videos_subdir>/<row_id>.mp4" for ok rows, "" for failed ones
    status          str    "ok" or "failed"
    error           str    why the row failed (None for ok rows)
    request_id      str    engine / server request id ("" when none)
    spec            str    model slug the run asked for (None when not given)
    seed            int    sampling seed
    num_steps       int    sampler steps asked for (None: the spec's default)
    guidance        float  guidance asked for (None: the spec's default)
    frames          int    frames in the rollout video (start frame included; 0 if failed)
    cost_usd        float  charge for the row (0.0 if failed)
    engine_wall_ms  float  engine time for the row (0.0 if failed)
    attempts        int    predict attempts made (retries included)
    source_metadata str    the source row's metadata as JSON text

This module imports nothing heavy; `metadata_schema()` and `ParquetEntryWriter` import
pyarrow when called.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

IO_EXTRA_HINT = "pip install 'dream-engine[io]'"

# (name, pyarrow type name) in column order.
METADATA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("row_id", "string"),
    ("file_name", "string"),
    ("status", "string"),
    ("error", "string"),
    ("request_id", "string"),
    ("spec", "string"),
    ("seed", "int64"),
    ("num_steps", "int64"),
    ("guidance", "float64"),
    ("frames", "int64"),
    ("cost_usd", "float64"),
    ("engine_wall_ms", "float64"),
    ("attempts", "int64"),
    ("source_metadata", "string"),
)
COLUMN_NAMES = tuple(name for name, _ in METADATA_COLUMNS)

# Keys of RolloutRecord.metadata that predict_many sets itself; anything else a record
# carries (a user writing records by hand) is kept as source metadata.
RECORD_KEYS = frozenset(COLUMN_NAMES) | {"estimated_charge_usd", "http_status"}

STATUS_OK = "ok"
STATUS_FAILED = "failed"

_MAX_ROW_ID_BYTES = 200  # leaves room for ".mp4" and temp suffixes under the usual 255-byte name limit


# Which extra provides a package (PyAV, for LeRobot videos, comes with [decode]).
_EXTRA_OF = {"av": "decode"}


def require(module: str, what: str) -> Any:
    """Import `module` or raise an ImportError naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        extra = _EXTRA_OF.get(package, "io")
        raise ImportError(f"{what} needs the '{package}' package: pip install 'dream-engine[{extra}]'") from exc


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
    except (TypeError, ValueError):
        return None


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def entry_for(
    row_id: str, metadata: Mapping[str, Any] | None, *, file_name: str, failed: bool = False
) -> dict:
    """The metadata entry (one Parquet row) for a record.

    `metadata` is a `RolloutRecord.metadata` as predict_many builds it (status, request_id,
    …, source_metadata); keys it does not know are kept in `source_metadata`, so records
    written by hand land in the table too.
    """
    md = dict(metadata or {})
    status = STATUS_FAILED if failed or md.get("status") == STATUS_FAILED else STATUS_OK
    source = md.get("source_metadata")
    extra = {k: v for k, v in md.items() if k not in RECORD_KEYS}
    if isinstance(source, str) and not extra:
        source_text = source  # already JSON text (an entry read back from a journal)
    elif isinstance(source, Mapping):
        source_text = source_metadata_json({**source, **extra})
    else:
        source_text = source_metadata_json(extra)
    error = md.get("error")
    return {
        "row_id": row_id,
        "file_name": "" if status == STATUS_FAILED else file_name,
        "status": status,
        "error": None if error is None else str(error),
        "request_id": str(md.get("request_id") or ""),
        "spec": None if md.get("spec") is None else str(md.get("spec")),
        "seed": _opt_int(md.get("seed")),
        "num_steps": _opt_int(md.get("num_steps")),
        "guidance": _opt_float(md.get("guidance")),
        "frames": _opt_int(md.get("frames")) or 0,
        "cost_usd": _opt_float(md.get("cost_usd", md.get("estimated_charge_usd"))) or 0.0,
        "engine_wall_ms": _opt_float(md.get("engine_wall_ms")) or 0.0,
        "attempts": _opt_int(md.get("attempts")) or 1,
        "source_metadata": source_text,
    }


def entry_to_line(entry: Mapping[str, Any]) -> bytes:
    """One journal line (JSON + newline)."""
    return (json.dumps(entry, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


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


def metadata_schema() -> Any:
    """The explicit pyarrow schema of the metadata table (never inferred from a row)."""
    pa = require("pyarrow", "Writing the Parquet metadata table")
    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
    return pa.schema([pa.field(name, types[kind]) for name, kind in METADATA_COLUMNS])


class ParquetEntryWriter:
    """Streams metadata entries into a Parquet file in fixed-size batches (bounded memory)."""

    def __init__(self, where: Any, *, batch_rows: int = 2048) -> None:
        pq = require("pyarrow.parquet", "Writing the Parquet metadata table")
        self._pa = require("pyarrow", "Writing the Parquet metadata table")
        self._schema = metadata_schema()
        self._writer = pq.ParquetWriter(where, self._schema, compression="zstd")
        self._batch: list[dict] = []
        self._batch_rows = batch_rows
        self.rows = 0

    def add(self, entry: Mapping[str, Any]) -> None:
        self._batch.append({name: entry.get(name) for name in COLUMN_NAMES})
        if len(self._batch) >= self._batch_rows:
            self._flush()

    def add_all(self, entries: Iterable[Mapping[str, Any]]) -> None:
        for entry in entries:
            self.add(entry)

    def _flush(self) -> None:
        if self._batch:
            batch = self._pa.RecordBatch.from_pylist(self._batch, schema=self._schema)
            self._writer.write_batch(batch)
            self.rows += len(self._batch)
            self._batch = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def read_status_columns(source: Any) -> Iterator[tuple[str, str]]:
    """(row_id, status) pairs of a metadata Parquet file (tables without `status` read as ok)."""
    pq = require("pyarrow.parquet", "Reading a Parquet metadata table")
    pf = pq.ParquetFile(source)
    names = set(pf.schema_arrow.names)
    if "row_id" not in names:
        return
    columns = ["row_id", "status"] if "status" in names else ["row_id"]
    for batch in pf.iter_batches(columns=columns, batch_size=4096):
        ids = batch.column(0).to_pylist()
        statuses = batch.column(1).to_pylist() if len(columns) == 2 else [STATUS_OK] * len(ids)
        for row_id, status in zip(ids, statuses, strict=True):
            if isinstance(row_id, str):
                yield row_id, (status or STATUS_OK)
