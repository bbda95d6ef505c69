"""HfRolloutSink: a Hugging Face dataset repo, one commit per shard, resumable.

    <repo>/videos/<row_id>.mp4
    <repo>/metadata/data-00000.parquet       one shard per `shard_rows` rows (ok and failed)
    <repo>/metadata/data-00001.parquet       …
    <repo>/README.md                         dataset card, written once (never overwritten)

Every shard has the same schema, so `datasets.load_dataset(<repo>)` reads them as one
table: a shard is written with the columns of the shards before it (null where its rows
lack them) and with each column's widest type; when a shard widens a type (an int column
that now holds text) or brings a new column, the older shards are rewritten to the new
schema in the same commit.

Rows are buffered until `shard_rows` of them are ready: the metadata in memory, the mp4s
spilled to a temporary folder (so memory does not grow with shard_rows). Each shard then
goes up as ONE commit (`HfApi.create_commit`) holding its mp4s and its Parquet shard, so
the repo never shows a shard without its videos or the reverse. A re-run appends new
shards after the highest existing index; `finished_row_ids()` reads the existing shards.
A row that appears again (a failed row retried, or a rerun with resume=False) is removed
from its older shard in the same commit, so every row is listed exactly once.
⚠ sdk-surface §18.3 keeps whole shards in RAM and makes one commit per mp4.
"""

from __future__ import annotations

import datetime as _dt
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from dream._extras import require
from dream.bulk.records import (
    BASE_COLUMNS,
    ParquetEntryWriter,
    check_row_id,
    conform_table,
    entry_for,
    is_ok,
    kinds_of_table,
    read_finished_columns,
    row_params,
)
from dream.io.types import RolloutRecord, RolloutSink

__all__ = ["HfRolloutSink"]

_SHARD_RE = re.compile(r"^metadata/data-(\d{5,})\.parquet$")


class HfRolloutSink(RolloutSink, kind="hf"):
    """Rollouts into the dataset repo `repo` ("org/name"); `write` is thread-safe."""

    def __init__(
        self,
        repo: str,
        *,
        token: str | None = None,
        private: bool = False,
        shard_rows: int = 500,
        license: str = "cc-by-4.0",
        pretty_name: str | None = None,
        endpoint: str | None = None,
        revision: str | None = None,
    ) -> None:
        hub = require("huggingface_hub", "RolloutSink.hf")
        require("pyarrow", "RolloutSink.hf (Parquet shards)")
        if not isinstance(repo, str) or repo.count("/") != 1 or not all(repo.split("/")):
            raise ValueError(f"RolloutSink.hf needs a dataset repo id 'org/name', got {repo!r}")
        if int(shard_rows) < 1:
            raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
        self.repo = repo
        self.private = private
        self.shard_rows = int(shard_rows)
        self.license = license
        self.pretty_name = pretty_name or repo.split("/")[-1]
        self.revision = revision
        self.token = token
        self.endpoint = endpoint
        self._hub = hub
        self._api = hub.HfApi(endpoint=endpoint, token=token)
        self._lock = threading.RLock()
        self._buffer: dict[str, dict] = {}  # row id -> metadata entry, in arrival order
        self._workdir: Path | None = None  # spilled mp4s and local copies of shards
        self._scanned = False
        self._repo_exists = False
        self._has_card = False
        self._next_shard = 0
        self._row_shard: dict[str, tuple[str, bool, dict]] = {}  # row id -> (shard path, ok, params)
        self._shard_files: dict[str, Path] = {}  # shard path in repo -> local copy
        self._shard_schemas: dict[str, Any] = {}  # shard path in repo -> its pyarrow schema
        self._kinds: dict[str, set[str]] = {}  # the repo's columns -> value kinds, all shards
        self.commits = 0

    # -- state of the repo ------------------------------------------------------------

    @property
    def output_uri(self) -> str:
        return f"hf://datasets/{self.repo}"

    def _dir(self, name: str) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="dream-hf-sink-"))
        path = self._workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _scan(self) -> None:
        """Read the repo's files and existing shards once (row id -> shard, status)."""
        if self._scanned:
            return
        errors = self._hub.errors
        try:
            files = self._api.list_repo_files(self.repo, repo_type="dataset", revision=self.revision)
        except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError):
            files = None
        if files is None:
            self._repo_exists = False
        else:
            self._repo_exists = True
            self._has_card = "README.md" in files
            shards = sorted(
                ((int(m.group(1)), f) for f in files if (m := _SHARD_RE.match(f))), key=lambda item: item[0]
            )
            self._next_shard = shards[-1][0] + 1 if shards else 0
            pq = require("pyarrow.parquet", "RolloutSink.hf")
            for _, shard in shards:
                local = Path(
                    self._hub.hf_hub_download(
                        self.repo,
                        shard,
                        repo_type="dataset",
                        revision=self.revision,
                        token=self.token,
                        endpoint=self.endpoint,
                        cache_dir=str(self._dir("hub-cache")),
                    )
                )
                self._shard_files[shard] = local
                table = pq.read_table(str(local))
                self._shard_schemas[shard] = table.schema
                for column, kinds in kinds_of_table(table).items():
                    self._kinds.setdefault(column, set()).update(kinds)
                for row_id, ok, params in read_finished_columns(str(local)):
                    self._row_shard[row_id] = (shard, ok, params)
        self._scanned = True

    def finished_rows(self) -> dict[str, dict]:
        """Rows committed ok in the repo's metadata shards -> their sampling parameters."""
        with self._lock:
            self._scan()
            return {row_id: dict(params) for row_id, (_, ok, params) in self._row_shard.items() if ok}

    def finished_row_ids(self) -> set[str]:
        """Rows committed ok in the repo's metadata shards."""
        return set(self.finished_rows())

    # -- writing ----------------------------------------------------------------------

    def write(self, record: RolloutRecord) -> None:
        row_id = check_row_id(record.row_id)
        entry = entry_for(row_id, record.metadata, file_name=f"videos/{row_id}.mp4")
        with self._lock:
            (self._dir("videos") / f"{row_id}.mp4").write_bytes(record.mp4_bytes)
            self._buffer.pop(row_id, None)
            self._buffer[row_id] = entry
            if len(self._buffer) >= self.shard_rows:
                self._flush()

    def write_failure(self, record: RolloutRecord) -> None:
        row_id = str(record.row_id)
        entry = entry_for(row_id, record.metadata, file_name="", failed=True)
        with self._lock:
            self._buffer.pop(row_id, None)
            self._buffer[row_id] = entry
            if len(self._buffer) >= self.shard_rows:
                self._flush()

    def _card(self) -> str:
        """The dataset card (README.md): metadata through `huggingface_hub.DatasetCardData`,
        which writes the YAML header (quoting included) the Hub reads."""
        from dream._version import __version__

        hub = self._hub
        data = hub.DatasetCardData(
            license=self.license,
            pretty_name=self.pretty_name,
            # ⚠ sdk-surface §18.3 lists `video-generation` as the task category; it is not one
            # of the Hub's task ids, so it goes to tags and the card uses real task ids.
            task_categories=["image-to-video", "robotics"],
            tags=["synthetic", "machine-generated", "video", "video-generation", "world-model", "dream-engine"],
            annotations_creators=["machine-generated"],
            configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "metadata/*.parquet"}]}],
        )
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        columns = ", ".join(f"`{c}`" for c in BASE_COLUMNS)
        title = " ".join(self.pretty_name.split())  # one Markdown heading line
        body = (
            f"# {title}\n\n"
            "Rollouts predicted by an action-conditioned video world model with "
            f"[dream-engine](https://pypi.org/project/dream-engine/) {__version__}.\n\n"
            "## Layout\n\n"
            "- `videos/<row_id>.mp4`: one predicted rollout per source row.\n"
            "- `metadata/data-NNNNN.parquet`: one row per source row (successful and failed), "
            f"the source row's metadata keys, then columns {columns}. `file_name` points at the "
            "video; `status` is the HTTP status (200 for ok rows; failed rows have an empty "
            "`file_name` and their `error`). Every shard has the same columns.\n\n"
            f"First shard written {now} by dream-engine {__version__}.\n"
        )
        card = hub.DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
        return str(card)

    def _write_shard(self, name: str, entries: list[dict]) -> tuple[Path, Any, dict[str, set[str]]]:
        """`entries` as a Parquet shard in the repo's schema: (local path, schema, column kinds)."""
        path = self._dir("shards") / name.replace("/", "__")
        writer = ParquetEntryWriter(str(path), kinds=self._kinds)
        try:
            writer.add_all(entries)
            schema, kinds = writer.schema(), writer.kinds
        finally:
            writer.close()
        return path, schema, kinds

    def _flush(self) -> None:
        """Commit the buffer as one shard (videos + Parquet, plus fixes to older shards)."""
        if not self._buffer:
            return
        hub = self._hub
        pq = require("pyarrow.parquet", "RolloutSink.hf")
        pc = require("pyarrow.compute", "RolloutSink.hf")
        pa = require("pyarrow", "RolloutSink.hf")
        self._scan()
        if not self._repo_exists:
            self._api.create_repo(self.repo, repo_type="dataset", private=self.private, exist_ok=True)
            self._repo_exists = True
        shard = f"metadata/data-{self._next_shard:05d}.parquet"
        entries = list(self._buffer.values())
        spill = self._dir("videos")
        ops: list[Any] = []
        for entry in entries:
            if is_ok(entry):
                ops.append(
                    hub.CommitOperationAdd(
                        path_in_repo=f"videos/{entry['row_id']}.mp4",
                        path_or_fileobj=str(spill / f"{entry['row_id']}.mp4"),
                    )
                )
        shard_local, schema, kinds = self._write_shard(shard, entries)
        ops.append(hub.CommitOperationAdd(path_in_repo=shard, path_or_fileobj=str(shard_local)))

        # Older shards, in this same commit: rows listed again leave them, and a shard
        # whose schema differs from the new one's (a column added or widened) is rewritten.
        stale: dict[str, set[str]] = {}
        for entry in entries:
            old = self._row_shard.get(entry["row_id"])
            if old is not None:
                stale.setdefault(old[0], set()).add(entry["row_id"])
                if old[1] and not is_ok(entry):
                    ops.append(hub.CommitOperationDelete(path_in_repo=f"videos/{entry['row_id']}.mp4"))
        rewritten: dict[str, Path | None] = {}
        for old_shard, old_local in self._shard_files.items():
            ids = stale.get(old_shard)
            if not ids and self._shard_schemas[old_shard].equals(schema):
                continue
            table = pq.read_table(str(old_local))
            if ids:
                keep = pc.invert(pc.is_in(table.column("row_id"), value_set=pa.array(sorted(ids), pa.string())))
                table = table.filter(keep)
            if table.num_rows == 0:
                ops.append(hub.CommitOperationDelete(path_in_repo=old_shard))
                rewritten[old_shard] = None
            else:
                local = self._dir("shards") / (old_shard.replace("/", "__") + ".rewrite")
                pq.write_table(conform_table(table, schema), str(local), compression="zstd")
                ops.append(hub.CommitOperationAdd(path_in_repo=old_shard, path_or_fileobj=str(local)))
                rewritten[old_shard] = local
        if not self._has_card:
            ops.append(
                hub.CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=self._card().encode())
            )
        ok = sum(1 for e in entries if is_ok(e))
        self._api.create_commit(
            self.repo,
            ops,
            repo_type="dataset",
            revision=self.revision,
            commit_message=f"dream-engine: add {shard} ({ok} ok, {len(entries) - ok} failed)",
        )
        # The commit landed: update what we know, then drop the spilled files.
        self.commits += 1
        self._has_card = True
        self._next_shard += 1
        self._kinds = kinds
        self._shard_files[shard] = shard_local
        self._shard_schemas[shard] = schema
        for old_shard, local in rewritten.items():
            if local is None:
                self._shard_files.pop(old_shard, None)
                self._shard_schemas.pop(old_shard, None)
            else:
                self._shard_files[old_shard] = local
                self._shard_schemas[old_shard] = schema
        for entry in entries:
            self._row_shard[entry["row_id"]] = (shard, is_ok(entry), row_params(entry))
            if is_ok(entry):  # failed rows may carry unsafe ids: never a path
                (spill / f"{entry['row_id']}.mp4").unlink(missing_ok=True)
        self._buffer.clear()

    def finalize(self) -> str:
        """Commit the last partial shard; idempotent. Returns `hf://datasets/<repo>`."""
        with self._lock:
            self._flush()
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
                self._shard_files.clear()
                self._shard_schemas.clear()
                self._kinds.clear()
                self._scanned = False  # a later write rescans (the local copies are gone)
                self._row_shard.clear()
        return self.output_uri

    def __repr__(self) -> str:
        return f"HfRolloutSink({self.repo!r}, shard_rows={self.shard_rows})"

