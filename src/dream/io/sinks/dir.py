"""DirRolloutSink: videos + metadata in a local folder, crash-safe and resumable.

Layout (sdk-surface §18.3, datasets-io "RolloutSink.dir"):

    <path>/<videos_subdir>/<row_id>.mp4     one file per ok row, written temp + rename
    <path>/<stem>.journal.jsonl             one JSON line per finished row (ok or failed),
                                            appended and fsync'd after its mp4 is in place
    <path>/<metadata_filename>              Parquet table built from the journal at
                                            finalize() (last entry per row wins), temp + rename

The journal is the source of truth: a process killed at any instant leaves every
journalled row complete (its mp4 was renamed into place first), a half-written temp file
or a cut-off last journal line at worst, both of which the next sink on the folder
cleans up. `finished_row_ids()` reads the journal, so a rerun skips those rows and
writes none of them twice; finalize() rebuilds the table from the whole journal, so it
always lists every row of every run.

Without pyarrow the mp4s and the journal still work; a warning at construction says so,
and finalize() writes the table as JSON Lines (`<stem>.jsonl`, same columns) instead of
Parquet. ⚠ sdk-surface §18.3 fails with ImportError at finalize, after the whole run.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import uuid
import warnings
from pathlib import Path, PurePosixPath

from dream.bulk.records import (
    ParquetEntryWriter,
    check_row_id,
    entry_for,
    entry_to_line,
    is_ok,
    iter_journal_lines,
    read_finished_columns,
    row_params,
)
from dream.io.types import RolloutRecord, RolloutSink

__all__ = ["DirRolloutSink"]

_TMP_MARK = ".dream-tmp-"


def _relative_name(value: str, what: str) -> str:
    parts = PurePosixPath(value).parts
    if not value or PurePosixPath(value).is_absolute() or ".." in parts or "\\" in value:
        raise ValueError(f"{what} must be a relative path inside the sink folder, got {value!r}")
    return value


class DirRolloutSink(RolloutSink, kind="dir"):
    """Rollouts as `<path>/<videos_subdir>/<row_id>.mp4` plus one metadata table.

    `write` / `write_failure` are thread-safe. `fsync=True` (default) makes each journal
    line durable before `write` returns (and each mp4 before it is journalled), so even a
    power cut loses no acknowledged row; `fsync=False` is safe against process crashes
    only.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        videos_subdir: str = "videos",
        metadata_filename: str = "metadata.parquet",
        fsync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.videos_subdir = _relative_name(videos_subdir, "videos_subdir").strip("/")
        self.metadata_filename = _relative_name(metadata_filename, "metadata_filename")
        self.fsync = fsync
        self.videos_dir = self.path / self.videos_subdir
        self.videos_dir.mkdir(parents=True, exist_ok=True)
        stem = PurePosixPath(self.metadata_filename).name.rsplit(".", 1)[0] or "metadata"
        meta_parent = self.path / PurePosixPath(self.metadata_filename).parent
        meta_parent.mkdir(parents=True, exist_ok=True)
        self.journal_path = meta_parent / f"{stem}.journal.jsonl"
        self.has_pyarrow = importlib.util.find_spec("pyarrow") is not None
        if self.has_pyarrow:
            self.metadata_path = self.path / self.metadata_filename
        else:
            self.metadata_path = meta_parent / f"{stem}.jsonl"
            warnings.warn(
                f"pyarrow is not installed: the rollout metadata will be written as JSON Lines to "
                f"{self.metadata_path} instead of Parquet (pip install 'dream-engine[io]' for Parquet)",
                stacklevel=3,
            )
        self._lock = threading.Lock()
        self._journal = None  # opened on first write
        self._dirty = False
        self._finalized_uri: str | None = None
        self._recover()

    # -- crash recovery ---------------------------------------------------------------

    def _recover(self) -> None:
        """Drop what a killed writer left half-done: temp files and a cut-off journal line."""
        for leftover in self.videos_dir.glob(f"*{_TMP_MARK}*"):
            leftover.unlink(missing_ok=True)
        for leftover in self.metadata_path.parent.glob(f"*{_TMP_MARK}*"):
            leftover.unlink(missing_ok=True)
        if not self.journal_path.exists():
            return
        with open(self.journal_path, "rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            # Find the last newline and cut everything after it.
            pos, chunk = size, 65536
            keep = 0
            while pos > 0:
                start = max(0, pos - chunk)
                fh.seek(start)
                block = fh.read(pos - start)
                idx = block.rfind(b"\n")
                if idx >= 0:
                    keep = start + idx + 1
                    break
                pos = start
            fh.truncate(keep)

    # -- writing ----------------------------------------------------------------------

    def _video_path(self, row_id: str) -> Path:
        return self.videos_dir / f"{row_id}.mp4"

    def _append(self, entry: dict) -> None:
        line = entry_to_line(entry)
        with self._lock:
            if self._journal is None:
                self._journal = open(self.journal_path, "ab")  # noqa: SIM115 (kept open across writes)
            self._journal.write(line)
            self._journal.flush()
            if self.fsync:
                os.fsync(self._journal.fileno())
            self._dirty = True
            self._finalized_uri = None

    def write(self, record: RolloutRecord) -> None:
        row_id = check_row_id(record.row_id)
        final = self._video_path(row_id)
        tmp = final.with_name(f".{row_id}{_TMP_MARK}{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(record.mp4_bytes)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._append(entry_for(row_id, record.metadata, file_name=f"{self.videos_subdir}/{row_id}.mp4"))

    def write_failure(self, record: RolloutRecord) -> None:
        # Row ids here may be unsafe as file names (that can be why the row failed): they
        # only go into the journal, never into a path.
        self._append(entry_for(str(record.row_id), record.metadata, file_name="", failed=True))

    # -- reading back -----------------------------------------------------------------

    def _last_entries(self) -> dict[str, tuple[bool, dict]]:
        """Row id -> (ok, sampling parameters) of its last entry."""
        last: dict[str, tuple[bool, dict]] = {}
        if self.journal_path.exists():
            for _, entry in iter_journal_lines(self.journal_path):
                last[entry["row_id"]] = (is_ok(entry), row_params(entry))
        elif self.has_pyarrow and self.metadata_path.exists():
            # A folder written by a sink without a journal (e.g. dream-engine 0.5.0).
            for row_id, ok, params in read_finished_columns(self.metadata_path):
                last[row_id] = (ok, params)
        return last

    def finished_rows(self) -> dict[str, dict]:
        """Rows recorded ok whose mp4 is in place -> the sampling parameters they recorded
        (spec, sampling_seed, num_steps, guidance; a 0.5.0 folder records only spec)."""
        return {
            row_id: params
            for row_id, (ok, params) in self._last_entries().items()
            if ok and self._video_path(row_id).is_file()
        }

    def finished_row_ids(self) -> set[str]:
        """Rows recorded ok whose mp4 is in place."""
        return set(self.finished_rows())

    # -- finalize ---------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def finalize(self) -> str:
        """Build the metadata table from the journal (last entry per row wins); idempotent."""
        uri = str(self.path.resolve())
        with self._lock:
            if self._finalized_uri is not None and not self._dirty and self.metadata_path.exists():
                return self._finalized_uri
            if self._journal is not None:
                self._journal.flush()
            tmp = self.metadata_path.with_name(f".{self.metadata_path.name}{_TMP_MARK}{uuid.uuid4().hex}")
            try:
                self._build_table(tmp)
                os.replace(tmp, self.metadata_path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            self._dirty = False
            self._finalized_uri = uri
        return uri

    def _build_table(self, target: Path) -> None:
        # Pass 1 keeps only row id -> line number of its last entry (small); pass 2 streams
        # the winning lines into the writer in batches, so memory stays bounded.
        last: dict[str, int] = {}
        if self.journal_path.exists():
            for index, entry in iter_journal_lines(self.journal_path):
                last[entry["row_id"]] = index
        entries = (
            entry
            for index, entry in (iter_journal_lines(self.journal_path) if last else iter(()))
            if last.get(entry["row_id"]) == index
        )
        if self.has_pyarrow:
            writer = ParquetEntryWriter(str(target))
            try:
                writer.add_all(entries)
            finally:
                writer.close()
        else:
            with open(target, "wb") as fh:
                for entry in entries:
                    fh.write(entry_to_line(entry))
                fh.flush()
                os.fsync(fh.fileno())

    def __repr__(self) -> str:
        return f"DirRolloutSink({str(self.path)!r})"
