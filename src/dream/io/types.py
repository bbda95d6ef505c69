"""The dream.io contract: rows in, records out (sdk-surface §18.1).

`IterableSource` yields `SourceRow`s (PNG start frame + .npy actions, keyed by a stable
`row_id`); `Client.predict_many` runs one rollout per row and hands each result to a
`RolloutSink` as a `RolloutRecord`. Subclass either ABC to plug in your own storage; only
`__iter__` (sources) and `write` / `finalize` (sinks) are required.

Nothing here imports numpy, pyarrow, boto3 or datasets, nor any sink: the built-in sinks
(`dream.io.sinks`) subclass `RolloutSink` with a `kind=` that the factories
(`RolloutSink.dir/.s3/.hf/.lerobot`) look up, so the dependency runs one way, sinks → contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["IterableSource", "RolloutRecord", "RolloutSink", "SourceRow"]


@dataclass(frozen=True)
class SourceRow:
    """One unit of bulk work.

    row_id:        stable id of the row; becomes the output file name `<row_id>.mp4`, so
                   it must be one path segment (no `/`, `\\`, not empty, `.` or `..`) and
                   unique within a source. Resume skips rows whose id the sink holds.
    frame_bytes:   the start frame as an encoded image (PNG; JPEG passes through).
    actions_bytes: the action sequence as `.npy` bytes, float32 (T, action_dim).
    metadata:      provenance kept next to the output (JSON-able values preferred).
    error:         the source could not build this row (e.g. a frame without its actions
                   file); predict_many records it as failed without calling the engine.
                   Beyond sdk-surface §18.1: keyword, defaults to None.
    """

    row_id: str
    frame_bytes: bytes
    actions_bytes: bytes
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class IterableSource(ABC):
    """A re-iterable stream of `SourceRow`s.

    Every `iter(source)` must start a fresh pass (estimate_cost peeks at the first row,
    predict_many then reads them all). `rows_hint` is the row count when known without a
    full pass (it drives progress totals and `estimate_cost`); `len()` returns it, or
    raises TypeError when it is None.
    """

    rows_hint: int | None = None

    @abstractmethod
    def __iter__(self) -> Iterator[SourceRow]:
        """Yield the rows, each with a stable, unique `row_id`."""

    def __len__(self) -> int:
        if self.rows_hint is None:
            raise TypeError(f"{type(self).__name__} does not know its row count (rows_hint is None)")
        return int(self.rows_hint)


@dataclass(frozen=True)
class RolloutRecord:
    """One finished rollout on its way to a sink.

    metadata (as `predict_many` builds it, 0.5.0's layout): the source row's metadata at
    the top level, overlaid with request_id, engine_wall_ms, estimated_charge_usd, status
    (the int HTTP status: 200, or the failed row's error status) and spec; then ours:
    error, attempts, frames, sampling_seed, num_steps, guidance. A source key that
    collides with one of these is kept as `_source_<key>` (with one UserWarning per run).

    actions_bytes: the row's actions (`.npy`, as the source gave them), which predict_many
    and dream.ray pass on so a sink can store them beside the frames (RolloutSink.lerobot
    does); empty for failed rows. Beyond sdk-surface §18.1: keyword, defaults to b"".
    """

    row_id: str
    mp4_bytes: bytes
    metadata: dict[str, Any] = field(default_factory=dict)
    actions_bytes: bytes = b""


class RolloutSink(ABC):
    """Where finished rollouts go.

    Required: `write(record)` (called once per successful row; may be called from several
    threads, so keep it thread-safe) and `finalize()` (called once at the end of a run;
    must be idempotent and return the output URI).

    Optional hooks with safe defaults, which the built-in sinks implement:
    `write_failure(record)` receives each failed row (empty mp4, metadata with the
    error's status and message) so the sink can list it next to the successes;
    `finished_row_ids()` names the rows already durably written ok, and
    `finished_rows()` maps them to the sampling parameters they recorded, so a resumed
    run skips only the rows finished with the same spec and sampling parameters.
    """

    # The built-in sinks by factory name; each registers itself with `kind=` when its
    # module is imported (`dream.io` imports them all).
    _kinds: ClassVar[dict[str, type[RolloutSink]]] = {}

    def __init_subclass__(cls, *, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            RolloutSink._kinds[kind] = cls

    @staticmethod
    def _kind(kind: str) -> type[RolloutSink]:
        try:
            return RolloutSink._kinds[kind]
        except KeyError:
            raise RuntimeError(f"the built-in {kind!r} sink is not registered: import dream.io first") from None

    @abstractmethod
    def write(self, record: RolloutRecord) -> None:
        """Persist one successful rollout (thread-safe)."""

    @abstractmethod
    def finalize(self) -> str:
        """Flush whatever is buffered; idempotent; return the output URI."""

    def write_failure(self, record: RolloutRecord) -> None:
        """Record a failed row (`record.mp4_bytes` is empty). The default keeps nothing:
        failures are always listed in `PredictManyResult.failures` anyway."""
        return None

    def finished_row_ids(self) -> set[str]:
        """Row ids already written ok (resume skips them). Default: none."""
        return set()

    def finished_rows(self) -> dict[str, dict[str, Any]]:
        """Finished row ids -> the sampling parameters recorded with them (`spec`,
        `sampling_seed`, `num_steps`, `guidance`; a missing key matches anything).
        Default: `finished_row_ids()` with no parameters recorded."""
        return {row_id: {} for row_id in self.finished_row_ids()}

    # Factories (sdk-surface §18.1); each sink imports its third-party packages on first use.

    @classmethod
    def dir(
        cls,
        path: str | Path,
        *,
        videos_subdir: str = "videos",
        metadata_filename: str = "metadata.parquet",
    ) -> RolloutSink:
        """Local folder: `<path>/<videos_subdir>/<row_id>.mp4` + `<path>/<metadata_filename>`."""
        return RolloutSink._kind("dir")(path, videos_subdir=videos_subdir, metadata_filename=metadata_filename)

    @classmethod
    def s3(
        cls,
        uri: str,
        *,
        boto3_kwargs: dict[str, Any] | None = None,
        videos_subdir: str = "videos",
        metadata_filename: str = "metadata.parquet",
    ) -> RolloutSink:
        """S3 prefix mirroring the dir layout (needs boto3 and pyarrow)."""
        return RolloutSink._kind("s3")(
            uri, boto3_kwargs=boto3_kwargs, videos_subdir=videos_subdir, metadata_filename=metadata_filename
        )

    @classmethod
    def hf(
        cls,
        repo: str,
        *,
        token: str | None = None,
        private: bool = False,
        shard_rows: int = 500,
        license: str = "cc-by-4.0",
        pretty_name: str | None = None,
        endpoint: str | None = None,
    ) -> RolloutSink:
        """Hugging Face dataset repo: videos/ + metadata/data-NNNNN.parquet shards + card."""
        return RolloutSink._kind("hf")(
            repo,
            token=token,
            private=private,
            shard_rows=shard_rows,
            license=license,
            pretty_name=pretty_name,
            endpoint=endpoint,
        )

    @classmethod
    def lerobot(
        cls,
        root: str | Path,
        *,
        repo_id: str,
        fps: int | None = None,
        task: str | None = None,
        camera_key: str | None = None,
        push_to_hub: bool = False,
        private: bool = False,
        token: str | None = None,
        endpoint: str | None = None,
        episodes_per_file: int = 100,
    ) -> RolloutSink:
        """A LeRobot v3.0 dataset at `root`: one episode per rollout, frame t with action t
        (the rollout's last frame, which no action follows, is left out); `stats.json` as
        LeRobot computes it; provenance in the episodes table; resumable after a kill.
        `push_to_hub=True` uploads it to the dataset repo `repo_id` at finalize. Beyond
        sdk-surface §18.1. Needs pyarrow and av."""
        return RolloutSink._kind("lerobot")(
            root,
            repo_id=repo_id,
            fps=fps,
            task=task,
            camera_key=camera_key,
            push_to_hub=push_to_hub,
            private=private,
            token=token,
            endpoint=endpoint,
            episodes_per_file=episodes_per_file,
        )
