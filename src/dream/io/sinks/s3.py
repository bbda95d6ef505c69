"""S3RolloutSink: the dir layout under an S3 prefix, one PUT per object, resumable.

    <prefix>/<videos_subdir>/<row_id>.mp4       one PUT per ok row
    <prefix>/_journal/ok/<row id>.json          one small PUT per ok row, after its mp4
    <prefix>/_journal/failed/<row id>.json      one per failed row (deleted once it succeeds)
    <prefix>/<metadata_filename>                Parquet, one PUT at finalize()

(row ids in journal keys are percent-encoded.) A PUT is atomic, so a crash leaves each
object whole or absent; an mp4 without its journal object is simply redone and
overwritten by the rerun. `finished_row_ids()` is one paginated listing of
`_journal/ok/`. finalize() lists the journal and streams every entry into the Parquet
table (entries written by this process come from a local spill file; older ones are
fetched), so it always covers every run into the prefix.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, unquote

from dream._extras import require
from dream.bulk.records import (
    STATUS_FAILED,
    STATUS_OK,
    ParquetEntryWriter,
    check_row_id,
    entry_for,
    entry_to_line,
    row_params,
)
from dream.io.sources.s3 import parse_s3_uri
from dream.io.types import RolloutRecord, RolloutSink

__all__ = ["S3RolloutSink"]

_JOURNAL = "_journal"


def _encode_id(row_id: str) -> str:
    return quote(row_id, safe="") + ".json"


def _decode_id(name: str) -> str:
    return unquote(name[: -len(".json")])


class S3RolloutSink(RolloutSink, kind="s3"):
    """Rollouts under `s3://bucket/prefix/`; `write` / `write_failure` are thread-safe."""

    def __init__(
        self,
        uri: str,
        *,
        boto3_kwargs: dict[str, Any] | None = None,
        videos_subdir: str = "videos",
        metadata_filename: str = "metadata.parquet",
    ) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        require("boto3", "RolloutSink.s3")
        require("pyarrow", "RolloutSink.s3 (Parquet metadata)")
        self.boto3_kwargs = dict(boto3_kwargs or {})
        self.videos_subdir = videos_subdir.strip("/")
        self.metadata_filename = metadata_filename.strip("/")
        self._client: Any = None
        self._lock = threading.Lock()
        # Entries written by this process: row id -> (status, offset, length) in the spill.
        self._spill = tempfile.TemporaryFile(prefix="dream-s3-sink-")  # noqa: SIM115
        self._spill_index: dict[str, tuple[str, int, int]] = {}
        self._known_failed: set[str] | None = None
        self._dirty = False
        self._finalized_uri: str | None = None

    # -- helpers ----------------------------------------------------------------------

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                boto3 = require("boto3", "RolloutSink.s3")
                self._client = boto3.client("s3", **self.boto3_kwargs)
            return self._client

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _journal_key(self, status: str, row_id: str) -> str:
        return self._key(f"{_JOURNAL}/{status}/{_encode_id(row_id)}")

    def _list(self, rel_prefix: str) -> Iterator[str]:
        prefix = self._key(rel_prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                yield obj["Key"][len(prefix) :]

    def _journal_ids(self, status: str) -> set[str]:
        return {_decode_id(name) for name in self._list(f"{_JOURNAL}/{status}/") if name.endswith(".json")}

    @property
    def output_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/" if self.prefix else f"s3://{self.bucket}/"

    def _remember(self, row_id: str, status: str, line: bytes) -> None:
        with self._lock:
            offset = self._spill.seek(0, os.SEEK_END)
            self._spill.write(line)
            self._spill_index[row_id] = (status, offset, len(line))
            self._dirty = True
            self._finalized_uri = None

    def _failed_before(self, row_id: str) -> bool:
        with self._lock:
            known = self._known_failed
        if known is None:
            known = self._journal_ids(STATUS_FAILED)
            with self._lock:
                if self._known_failed is None:
                    self._known_failed = known
                known = self._known_failed
        return row_id in known

    # -- writing ----------------------------------------------------------------------

    def write(self, record: RolloutRecord) -> None:
        row_id = check_row_id(record.row_id)
        entry = entry_for(row_id, record.metadata, file_name=f"{self.videos_subdir}/{row_id}.mp4")
        line = entry_to_line(entry)
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(f"{self.videos_subdir}/{row_id}.mp4"),
            Body=record.mp4_bytes,
            ContentType="video/mp4",
        )
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._journal_key(STATUS_OK, row_id),
            Body=line,
            ContentType="application/json",
        )
        if self._failed_before(row_id):
            self.client.delete_object(Bucket=self.bucket, Key=self._journal_key(STATUS_FAILED, row_id))
            with self._lock:
                if self._known_failed is not None:
                    self._known_failed.discard(row_id)
        self._remember(row_id, STATUS_OK, line)

    def write_failure(self, record: RolloutRecord) -> None:
        row_id = str(record.row_id)
        line = entry_to_line(entry_for(row_id, record.metadata, file_name="", failed=True))
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._journal_key(STATUS_FAILED, row_id),
            Body=line,
            ContentType="application/json",
        )
        with self._lock:
            if self._known_failed is not None:
                self._known_failed.add(row_id)
        self._remember(row_id, STATUS_FAILED, line)

    def finished_row_ids(self) -> set[str]:
        return self._journal_ids(STATUS_OK)

    def finished_rows(self) -> dict[str, dict]:
        """Rows journalled ok -> the sampling parameters they recorded (one GET per row)."""
        ids = sorted(self._journal_ids(STATUS_OK))
        out: dict[str, dict] = {}
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="dream-s3-resume") as pool:
            for start in range(0, len(ids), 512):
                chunk = ids[start : start + 512]
                for row_id, entry in zip(chunk, pool.map(lambda rid: self._fetch_entry(rid, STATUS_OK), chunk), strict=True):
                    if entry is not None:
                        out[row_id] = row_params(entry)
        return out

    # -- finalize ---------------------------------------------------------------------

    def _local_entry(self, row_id: str, status: str) -> dict | None:
        with self._lock:
            hit = self._spill_index.get(row_id)
            if hit is None or hit[0] != status:
                return None
            self._spill.seek(hit[1])
            return json.loads(self._spill.read(hit[2]))

    def _fetch_entry(self, row_id: str, status: str) -> dict | None:
        local = self._local_entry(row_id, status)
        if local is not None:
            return local
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._journal_key(status, row_id))[
                "Body"
            ].read()
            entry = json.loads(body)
        except Exception:
            return None  # deleted between listing and reading (a later success replaced it)
        return entry if isinstance(entry, dict) else None

    def finalize(self) -> str:
        """Write `<prefix>/<metadata_filename>` from the journal (one PUT); idempotent."""
        with self._lock:
            if self._finalized_uri is not None and not self._dirty:
                return self._finalized_uri
        ok_ids = self._journal_ids(STATUS_OK)
        failed_ids = self._journal_ids(STATUS_FAILED) - ok_ids
        todo = [(rid, STATUS_OK) for rid in sorted(ok_ids)] + [
            (rid, STATUS_FAILED) for rid in sorted(failed_ids)
        ]
        with tempfile.TemporaryDirectory(prefix="dream-s3-meta-") as tmpdir:
            path = os.path.join(tmpdir, "metadata.parquet")
            writer = ParquetEntryWriter(path)
            try:
                with ThreadPoolExecutor(max_workers=8, thread_name_prefix="dream-s3-meta") as pool:
                    # map() submits its whole input at once: feed it bounded slices.
                    for start in range(0, len(todo), 512):
                        for entry in pool.map(
                            lambda item: self._fetch_entry(*item), todo[start : start + 512]
                        ):
                            if entry is not None:
                                writer.add(entry)
            finally:
                writer.close()
            with open(path, "rb") as fh:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(self.metadata_filename),
                    Body=fh,
                    ContentType="application/vnd.apache.parquet",
                )
        uri = self.output_uri
        with self._lock:
            self._dirty = False
            self._finalized_uri = uri
        return uri

    def __repr__(self) -> str:
        return f"S3RolloutSink({self.output_uri!r})"
