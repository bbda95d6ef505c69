"""Bulk inference on Ray Data: the datasource, the per-actor predictor, the datasink and
the one-call runner (`dream.ray` is its public face). The thread runner
(`dream.bulk.threads`) sits beside it and shares its per-row logic (`dream.bulk.rows`:
row-id checks, idempotency keys, record metadata, retries) and the driver-side
accounting (`dream.bulk.run.BulkRun`: resume, failure records, the result).

How `run_predict_many_ray` goes:

* `SourceDatasource` reads the `IterableSource` in Ray read tasks (one per shard when
  the source offers ``shards(n)``, else one streaming task); rows the sink already
  holds come without their bytes and are passed through as "skipped".
* `RolloutPredictor` actors (`map_batches`, one engine each, weights loaded once per
  actor, torch threads = the actor's CPUs) check each row exactly as `predict_many`
  does, run it with the same retries and idempotency key, and emit one output row per
  input row: ok, failed or skipped. Rows of one batch are fused into one engine call
  when the model is batch-invariant (their bytes equal single predicts).
* The driver consumes the outputs as they stream and hands each to `BulkRun`, which
  drops duplicate ids, writes ok rows through the sink, records failures and stops on a
  fatal error — the very code the thread runner uses. The driver is the only writer,
  so any `RolloutSink` works, local folder included, whatever node the actors run on.

Failures: a source that raises ends its read task with a row carrying the exception,
and the driver stops the run with that very exception (as `predict_many` does), not with
Ray's wrapper of it and its logged traceback. A killed actor is restarted by Ray and its unfinished batch retried (by
Ray Data's actor-pool defaults, max_restarts=-1 and max_task_retries=-1); a row reaches
the sink only when the driver receives its output, once per id. A killed driver loses
only the rows it had not written; rerun with ``resume=True`` and the sink's finished
set (`RolloutSink.finished_row_ids`) skips the rest. We use the sink's finished set
rather than Ray Data's checkpointing because the sink is what knows a row is durably
written (mp4 in place, journal line fsynced); a checkpoint kept beside it could say
"done" for a row the sink lost, or miss one it holds, and it would work only for
Ray runs, not for a rerun with `predict_many`.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from dream.bulk.rows import (
    RowOutcome,
    idempotency_key,
    normalize_row,
    predict_row,
    record_metadata,
    retry_policy_for,
    source_row_error,
    unsafe_row_error,
)
from dream.bulk.run import BulkRun, PredictManyResult, close_iterator, halts, source_rows
from dream.errors import DreamError, EngineError, ModelNotFoundError
from dream.io.types import IterableSource, RolloutRecord, RolloutSink, SourceRow

try:
    import ray
    import ray.data
    from ray.data import Datasink, Datasource
except ImportError as exc:  # an optional extra: say which
    raise ImportError(f"dream.ray needs Ray Data: pip install 'dream-engine[ray]' ({exc})") from exc

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "RolloutDatasink",
    "RolloutPredictor",
    "SourceDatasource",
    "run_predict_many_ray",
]

log = logging.getLogger("dream.ray")

ROWS_PER_BLOCK = 16

# Output row kinds (the "kind" column of RolloutPredictor's output).
KIND_OK, KIND_FAILED, KIND_SKIPPED, KIND_UNSAFE = "ok", "failed", "skipped", "unsafe-id"
KIND_SOURCE_ERROR = "source-error"  # the source itself raised: the run stops with that error


# -- datasource ---------------------------------------------------------------------------


def _rows_table(rows: list[SourceRow]) -> pa.Table:
    import pyarrow as pa

    return pa.table(
        {
            "row_id": pa.array([r.row_id if isinstance(r.row_id, str) else repr(r.row_id) for r in rows], pa.string()),
            "row_id_ok": pa.array([isinstance(r.row_id, str) for r in rows], pa.bool_()),
            "frame_bytes": pa.array([bytes(r.frame_bytes) for r in rows], pa.binary()),
            "actions_bytes": pa.array([bytes(r.actions_bytes) for r in rows], pa.binary()),
            "metadata": pa.array([json.dumps(r.metadata or {}, default=str) for r in rows], pa.string()),
            "error": pa.array([getattr(r, "error", None) for r in rows], pa.string()),
            "source_error": pa.array([None] * len(rows), pa.binary()),
        }
    )


def portable_error(exc: BaseException) -> BaseException:
    """`exc` without its traceback, as it can cross a process boundary (pickled); an
    exception that does not pickle becomes an EngineError naming its type and message."""
    exc.__traceback__ = None
    try:
        pickle.dumps(exc)
    except Exception:
        return EngineError(f"{type(exc).__name__}: {exc}")
    return exc


def _source_error_table(exc: BaseException) -> pa.Table:
    """The one-row block a read task ends with when its source raised."""
    import pyarrow as pa

    table = _rows_table([SourceRow("", b"", b"")])
    return table.set_column(
        table.schema.get_field_index("source_error"), "source_error",
        pa.array([pickle.dumps(portable_error(exc))], pa.binary()),
    )


def _read_blocks(src: IterableSource, skip_ids: frozenset[str]) -> Iterator[pa.Table]:
    # A source that raises ends its task with a row carrying the error instead of failing
    # the task: Ray would log its traceback and hand the driver its own wrapper of it.
    block: list[SourceRow] = []
    rows = None
    try:
        rows = source_rows(src, set(skip_ids))
        for row in rows:
            block.append(normalize_row(row))
            if len(block) >= ROWS_PER_BLOCK:
                yield _rows_table(block)
                block = []
    except Exception as exc:
        if block:
            yield _rows_table(block)
        yield _source_error_table(exc)
        return
    finally:
        if rows is not None:
            close_iterator(rows)
    if block:
        yield _rows_table(block)


class SourceDatasource(Datasource):
    """A Ray Data datasource over any `dream.io.IterableSource`.

    ``ray.data.read_datasource(SourceDatasource(src))`` gives one row per source row
    with the columns ``row_id`` (str; a non-str id as its repr, with ``row_id_ok``
    False), ``frame_bytes``, ``actions_bytes``, ``metadata`` (the row's metadata as
    JSON), ``error`` (the source's error for the row, or null) and ``source_error``
    (null, except in the last row of a read task whose source raised: the exception,
    pickled; `RolloutPredictor` passes it on and the runner stops with it). A source that can
    split itself — a ``shards(n)`` method returning up to n disjoint sources — is read
    by that many parallel tasks; any other is streamed by one task in its own order.
    `skip_ids`: rows to pass through without their bytes (the sink's finished set).
    """

    def __init__(self, source: IterableSource, *, skip_ids: Iterable[str] = ()) -> None:
        super().__init__()
        if not isinstance(source, IterableSource) and not hasattr(source, "__iter__"):
            raise TypeError(f"SourceDatasource needs a dream.io.IterableSource; got {type(source).__name__}")
        self.source = source
        self.skip_ids = frozenset(skip_ids)

    def get_name(self) -> str:
        return f"dream:{type(self.source).__name__}"

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def _shards(self, parallelism: int) -> list[IterableSource]:
        shards = getattr(self.source, "shards", None)
        if callable(shards) and parallelism > 1:
            parts = [p for p in shards(parallelism) if p is not None]
            if parts:
                return parts
        return [self.source]

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list:
        from ray.data.block import BlockMetadata
        from ray.data.datasource import ReadTask

        tasks = []
        skip_ids = self.skip_ids
        for part in self._shards(parallelism):
            rows = getattr(part, "rows_hint", None)
            meta = BlockMetadata(num_rows=rows, size_bytes=None, input_files=None, exec_stats=None)
            tasks.append(ReadTask(lambda part=part: _read_blocks(part, skip_ids), meta))
        return tasks


# -- the per-actor predictor --------------------------------------------------------------


def _actor_cpus() -> int | None:
    """Whole CPUs Ray assigned to the calling actor (None outside Ray or with none)."""
    try:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:
        return None
    return max(1, int(cpus)) if cpus else None


def _batch_rows(batch: Any) -> list[dict[str, Any]]:
    """A map_batches batch (pyarrow, pandas or a dict of numpy columns) as a list of rows."""
    if hasattr(batch, "to_pylist"):
        return batch.to_pylist()
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):
        return batch.to_dict("records")
    columns = list(batch)
    return [dict(zip(columns, values, strict=True)) for values in zip(*(batch[c] for c in columns), strict=True)]


class RolloutPredictor:
    """A callable class for ``Dataset.map_batches`` holding one engine per actor.

    Input batches have `SourceDatasource`'s columns; each output row is one input row's
    result: ``row_id``, ``kind`` ("ok", "failed", "skipped", "unsafe-id"), ``mp4_bytes``
    (empty unless ok), ``record_metadata`` (JSON: what `predict_many` writes to a sink)
    and ``result`` (a pickle the one-call runner reads). Rows are checked, keyed and
    retried exactly as `predict_many` does; rows in `finished` are passed through as
    skipped. The engine is built and its weights loaded once, in ``__init__``; its torch
    threads are the CPUs Ray gave the actor unless `threads` says otherwise. With
    `base_url` the actor calls that server instead (same idempotency keys).

    `fuse`: None fuses a batch's rows into one engine call when the spec's runner is
    batch-invariant (`Runner.batch_invariant`), True always, False never.
    """

    def __init__(
        self,
        *,
        spec: str | None = None,
        seed: int = 0,
        num_steps: int | None = None,
        guidance: float | None = None,
        retries: int | None = None,
        threads: int | None = None,
        device: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        finished: Iterable[str] = (),
        fuse: bool | None = None,
    ) -> None:
        import dream
        from dream._retry import RetryPolicy
        from dream.client.sync_client import row_predictor

        self.spec, self.seed, self.num_steps, self.guidance = spec, seed, num_steps, guidance
        # Rows are retried here (the transport tries once), by predict_many's policy.
        self.policy = retry_policy_for(None, retries)
        self.finished = frozenset(finished)
        if base_url:
            self.client = dream.Client(base_url=base_url, api_key=api_key, retry_policy=RetryPolicy(max_attempts=1))
        else:
            from dream.engine.engine import Engine

            engine = Engine(device=device, threads=threads or _actor_cpus(), coalesce=True if fuse else None)
            engine.load(spec)  # weights once per actor, before the first batch
            self.client = dream.Client(engine=engine)
        self.predict = row_predictor(
            self.client._transport, spec=spec, seed=seed, num_steps=num_steps, guidance=guidance
        )
        self.fuse = fuse

    def _key(self, row: SourceRow) -> str:
        return idempotency_key(
            spec=self.spec, seed=self.seed, num_steps=self.num_steps, guidance=self.guidance,
            row_id=row.row_id, frame_bytes=row.frame_bytes, actions_bytes=row.actions_bytes,
        )

    def _output(self, out: dict[str, list], row_id: str, kind: str, metadata: dict, outcome: RowOutcome | None,
                exc: BaseException | None, attempts: int, actions_bytes: bytes = b"") -> None:
        if exc is not None:
            exc = portable_error(exc)
        record = record_metadata(
            spec=self.spec, seed=self.seed, num_steps=self.num_steps, guidance=self.guidance,
            source_metadata=metadata, attempts=attempts, outcome=outcome, error=exc,
        )
        out["row_id"].append(row_id)
        out["kind"].append(kind)
        out["mp4_bytes"].append(outcome.mp4_bytes if outcome is not None else b"")
        out["actions_bytes"].append(actions_bytes if outcome is not None else b"")
        out["record_metadata"].append(json.dumps(record, default=str))
        out["result"].append(pickle.dumps((metadata, outcome, exc, attempts)))

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        out: dict[str, list] = {
            k: [] for k in ("row_id", "kind", "mp4_bytes", "actions_bytes", "record_metadata", "result")
        }
        todo: list[tuple[SourceRow, dict]] = []
        for item in _batch_rows(batch):
            if item.get("source_error") is not None:
                out["row_id"].append("")
                out["kind"].append(KIND_SOURCE_ERROR)
                out["mp4_bytes"].append(b"")
                out["record_metadata"].append("{}")
                out["result"].append(pickle.dumps(({}, None, pickle.loads(item["source_error"]), 0)))
                continue
            row_id = str(item["row_id"])
            metadata = json.loads(item["metadata"] or "{}")
            error = item["error"]
            row = SourceRow(
                row_id, bytes(item["frame_bytes"]), bytes(item["actions_bytes"]), metadata,
                None if error is None else str(error),
            )
            unsafe = unsafe_row_error(row_id) if bool(item["row_id_ok"]) else unsafe_row_error(None)
            if unsafe is not None:
                self._output(out, row_id, KIND_UNSAFE, metadata, None, unsafe, 0)
            elif row_id in self.finished:
                self._output(out, row_id, KIND_SKIPPED, metadata, None, None, 0)
            elif (source_error := source_row_error(row)) is not None:
                self._output(out, row_id, KIND_FAILED, metadata, None, source_error, 0)
            else:
                todo.append((row, metadata))
        for (row, metadata), (outcome, exc, attempts) in zip(todo, self._run(todo), strict=True):
            self._output(out, row.row_id, KIND_OK if outcome is not None else KIND_FAILED, metadata, outcome, exc,
                         attempts, row.actions_bytes)
        return out

    def _run(self, todo: list[tuple[SourceRow, dict]]) -> list[tuple[RowOutcome | None, BaseException | None, int]]:
        def one(item: tuple[SourceRow, dict]) -> tuple[RowOutcome | None, BaseException | None, int]:
            row = item[0]
            return predict_row(self.predict, row, self._key(row), self.policy, time.sleep)

        if len(todo) < 2 or not self._fuses():
            return [one(item) for item in todo]
        # The rows' predicts, issued together, are fused by the engine into one call
        # (Engine.coalesce); each keeps its own retries, key and outcome.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(todo), thread_name_prefix="dream-ray-row") as pool:
            return list(pool.map(one, todo))

    def _fuses(self) -> bool:
        engine = getattr(self.client, "engine", None)
        if self.fuse is False:
            return False
        if engine is None:  # a remote engine: the server batches concurrent rows itself
            return True
        return engine.coalesces(self.spec)


# -- datasink ---------------------------------------------------------------------------


class RolloutDatasink(Datasink):
    """A Ray Data datasink writing `RolloutPredictor` output through a `dream.io.RolloutSink`.

    ``ds.write_datasink(RolloutDatasink("./out"))``: `sink` is a sink URI (as `dream run`
    takes, options in `sink_options`) or a zero-argument callable returning a sink, so
    each write task opens its own sink on the same location (sinks hold locks and open
    files, which do not travel between processes). Ok rows go to ``write``, failed rows
    to ``write_failure``, skipped rows nowhere; the layout and atomic writes are the
    sink's own. Write tasks run on the driver's node; `on_write_complete` finalizes.
    """

    def __init__(self, sink: str | Callable[[], RolloutSink], *, sink_options: dict[str, Any] | None = None) -> None:
        super().__init__()
        if not isinstance(sink, str) and not callable(sink):
            raise TypeError(
                f"RolloutDatasink needs a sink URI or a zero-argument callable returning a RolloutSink; got {sink!r}"
            )
        self.sink = sink
        self.sink_options = dict(sink_options or {})

    def _open(self) -> RolloutSink:
        if isinstance(self.sink, str):
            from dream.io.uri import sink_from_uri

            return sink_from_uri(self.sink, **self.sink_options)
        return self.sink()

    @property
    def supports_distributed_writes(self) -> bool:
        return False  # write on the driver's node: a local folder sink must see every row

    def write(self, blocks: Iterable[Any], ctx: Any) -> int:
        from ray.data.block import BlockAccessor

        sink = self._open()
        written = 0
        try:
            for block in blocks:
                for row in BlockAccessor.for_block(block).iter_rows(public_row_format=False):
                    record = RolloutRecord(str(row["row_id"]), bytes(row["mp4_bytes"]),
                                           json.loads(row["record_metadata"]),
                                           actions_bytes=bytes(row.get("actions_bytes") or b""))
                    if row["kind"] == KIND_OK:
                        sink.write(record)
                        written += 1
                    elif row["kind"] in (KIND_FAILED, KIND_UNSAFE):
                        write_failure = getattr(sink, "write_failure", None)
                        if callable(write_failure):
                            write_failure(record)
                    elif row["kind"] == KIND_SOURCE_ERROR:
                        raise pickle.loads(row["result"])[2]
        finally:
            close = getattr(sink, "close", None)
            if callable(close):
                close()
        return written

    def on_write_complete(self, write_result: Any) -> None:
        self.output_uri = self._open().finalize()


# -- the one-call runner --------------------------------------------------------------------


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number; got {value!r}")


def read_concurrency(num_actors: int) -> int:
    """Read tasks run at once: enough to keep `num_actors` actors fed (a read is a file or
    object fetch, far cheaper than a rollout), never one worker process per row."""
    return max(2, num_actors)


def run_predict_many_ray(
    src: IterableSource,
    sink: RolloutSink,
    *,
    spec: str | None,
    num_actors: int,
    num_gpus_per_actor: float = 0,
    num_cpus_per_actor: float = 1,
    address: str | None = None,
    seed: int = 0,
    num_steps: int | None = None,
    guidance: float | None = None,
    on_error: str = "skip",
    resume: bool = True,
    progress: bool = True,
    retries: int | None = None,
    batch_size: int = 4,
    fuse: bool | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
) -> PredictManyResult:
    """`predict_many` on Ray Data: `num_actors` engine actors, the driver writing the sink.

    See the module docstring. `address`: None starts (or reuses) a local Ray; "local"
    likewise; anything else joins that cluster ("auto", "ray://host:10001", "host:6379").
    `batch_size` rows go to an actor at a time (fused when the model allows it).
    Raises ValueError for bad arguments before touching the source or the sink.
    """
    halts(on_error)
    if isinstance(num_actors, bool) or not isinstance(num_actors, int) or num_actors < 1:
        raise ValueError(f"num_actors must be a positive int; got {num_actors!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    _check_positive("num_cpus_per_actor", num_cpus_per_actor)
    _check_positive("num_gpus_per_actor", num_gpus_per_actor, allow_zero=True)
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "local") else address, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)

    if base_url is None:
        # An unknown spec fails here, before any row or actor; rows record the resolved default.
        from dream import DEFAULT_SPEC
        from dream.engine import specs

        try:
            spec = specs.get(spec or DEFAULT_SPEC).slug
        except KeyError as exc:
            raise ModelNotFoundError(exc.args[0], status_code=404) from None
    run = BulkRun(
        src, sink, spec=spec, on_error=on_error, progress=progress, num_steps=num_steps, guidance=guidance,
        seed=seed, resume=resume,
    )
    finished = sorted(run.finished)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the runner shows its own
    # Reading takes no CPU slot: actors holding every CPU must not starve the reads. With
    # no slot Ray would also run every read task at once, each in a worker process of its
    # own (64 rows of a folder: 60 processes on a 2-core machine, 6x slower), hence the cap.
    ds = ray.data.read_datasource(
        SourceDatasource(src, skip_ids=finished), num_cpus=0, concurrency=read_concurrency(num_actors)
    ).map_batches(
        RolloutPredictor,
        fn_constructor_kwargs={
            "spec": spec, "seed": seed, "num_steps": num_steps, "guidance": guidance, "retries": retries,
            "threads": max(1, int(num_cpus_per_actor)), "device": "cuda" if num_gpus_per_actor else None,
            "base_url": base_url, "api_key": api_key, "finished": finished, "fuse": fuse,
        },
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=num_cpus_per_actor,
        num_gpus=num_gpus_per_actor,
        batch_format="pyarrow",
    )
    rows = iter(ds.iter_rows())
    try:
        for out in rows:
            _settle(run, out)
            if run.stopping:
                break
    except DreamError as exc:
        run.set_fatal(exc, None)
    except Exception as exc:
        # Ray wraps what a task or an actor raised (e.g. its engine failing to load): stop
        # with the original error, so that callers catch its type and the CLI prints it.
        cause = getattr(exc, "cause", None) or exc.__cause__
        run.set_fatal(cause if isinstance(cause, Exception) else exc, None)
    except BaseException:
        run.close_bar()
        close_iterator(rows)
        raise
    close_iterator(rows)
    return run.finish()


def _settle(run: BulkRun, out: dict[str, Any]) -> None:
    row_id, kind = str(out["row_id"]), str(out["kind"])
    metadata, outcome, exc, attempts = pickle.loads(out["result"])
    if kind == KIND_SOURCE_ERROR:
        run.set_fatal(exc, None)
    elif kind == KIND_UNSAFE:
        run._fail(row_id, metadata, exc, attempts=0)
    elif not run.first_sighting(row_id, metadata):
        return
    elif kind == KIND_SKIPPED:
        run.skip()
    else:
        run.done(row_id, metadata, outcome, exc, attempts, bytes(out.get("actions_bytes") or b""))
