"""Bulk inference: the predict_many / estimate_cost runners and their result types.

The runners see only the dream.io interfaces (`IterableSource`, `RolloutSink`) and a
predict callable bound by the client, so they never know a directory from S3, nor the
embedded engine from the HTTP API:

    predict(frame_bytes, actions_bytes, idempotency_key) -> RowOutcome   (raises DreamError)

How a run goes (sdk-surface §16, DESIGN decision 7):

* The calling thread pulls rows from the source and keeps at most 2 × concurrency rows in
  flight on a pool of `concurrency` workers, so memory does not grow with the dataset.
  Only the calling thread touches the source and the sink; results are handled in
  completion order.
* Before a row reaches the engine the runner checks its id (one safe file name, unique in
  the run) and whether the source flagged it (`SourceRow.error`); such rows fail without
  an engine call. With `resume=True`, rows the sink already holds as finished
  (`finished_rows()`) are skipped when they were made with the same spec and sampling
  parameters; the others are redone, and the result says how many and why.
* Retries follow the client's `RetryPolicy` (`call_with_retry`, as every other call of
  the client: 429 honouring Retry-After, 502/503/504 and transport failures; a 500 is not
  retried), as in 0.5.0. Each row carries one idempotency key derived from its content
  and the sampling arguments, the same on every retry and every rerun, so a server that
  honours `Idempotency-Key` never charges a row twice.
* Each row's `RolloutRecord.metadata` has 0.5.0's layout (the source row's keys at the
  top level, overlaid with request_id, engine_wall_ms, estimated_charge_usd, the int
  HTTP status and spec), plus our keys; see `dream.io._records`.
* `on_error="skip"`: any other DreamError fails the row; it is listed in the result and
  handed to `sink.write_failure`, and the run goes on. `"halt"` (alias `"raise"`): the
  first failure stops the run. AuthError, InsufficientCreditsError, ModelNotFoundError,
  WeightsNotFoundError, sink errors and non-dream exceptions always stop it.
* Stopping: no new rows are pulled, in-flight rows are drained (their successes still
  reach the sink), the sink is finalized best-effort, and the first fatal error is raised
  with the row id in its message and in `exc.row_id`.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from dream._retry import RetryPolicy, call_with_retry, call_with_retry_async
from dream.errors import (
    AuthError,
    DreamError,
    InputValidationError,
    InsufficientCreditsError,
    ModelNotFoundError,
    WeightsNotFoundError,
    status_for_error,
)
from dream.io._records import HTTP_OK, RESERVED_KEYS, unsafe_row_id_reason
from dream.io.types import IterableSource, RolloutRecord, RolloutSink, SourceRow

__all__ = [
    "DEFAULT_FRAMES_PER_ROW",
    "AsyncRowPredictor",
    "CostEstimate",
    "FailedRow",
    "PredictManyResult",
    "RowOutcome",
    "RowPredictor",
    "estimate_cost_for",
    "estimate_cost_for_async",
    "idempotency_key",
    "run_predict_many",
    "run_predict_many_async",
]

log = logging.getLogger("dream.bulk")

DEFAULT_FRAMES_PER_ROW = 49  # sdk-surface §17: used when the first row's actions can't be read

ON_ERROR_VALUES = {"skip": False, "halt": True, "raise": True}  # value -> halts?

# Errors that say every later row would fail the same way (or would be refused): stop.
_FATAL = (AuthError, InsufficientCreditsError, ModelNotFoundError, WeightsNotFoundError)


# -- result types (sdk-surface §16, §17) ----------------------------------------------


@dataclass(frozen=True)
class FailedRow:
    """A row that produced no rollout: its id, the error, and the attempts made (0: never sent)."""

    row_id: str
    error: DreamError
    attempts: int = 1

    @property
    def message(self) -> str:
        return str(self.error)


@dataclass(frozen=True)
class PredictManyResult:
    """What a predict_many run did. `total` = ok + failed (skipped rows are not counted)."""

    ok: int
    failed: int
    output_uri: str
    failures: list[FailedRow] = field(default_factory=list)
    skipped: int = 0  # rows already finished in the sink with the same parameters (resume)
    redone: int = 0  # rows finished before with another spec / sampling parameters, run again
    redone_why: str = ""  # e.g. "spec 'a' → 'b' (9 rows)"
    cost_usd: float = 0.0  # sum over this run's ok rows
    wall_s: float = 0.0

    @property
    def total(self) -> int:
        return self.ok + self.failed


@dataclass(frozen=True)
class CostEstimate:
    """Price of running a source (sdk-surface §17), plus the estimated engine time.

    est_engine_s: rows × the spec's measured wall per rollout (engine-seconds; divide by
    the number of engines serving the run for wall-clock), None when either is unknown.
    """

    rows: int | None
    frames_per_row: int
    total_frames: int | None
    total_usd: float | None
    spec: str
    price_per_frame_usd: float
    est_engine_s: float | None = None


@dataclass(frozen=True)
class RowOutcome:
    """What one successful predict returns to the runner."""

    mp4_bytes: bytes
    request_id: str
    engine_wall_ms: float
    cost_usd: float
    frames: int
    seed: int
    num_steps: int | None
    status: int = 200


RowPredictor = Callable[[bytes, bytes, str], RowOutcome]
AsyncRowPredictor = Callable[[bytes, bytes, str], Awaitable[RowOutcome]]


# -- small pure helpers ----------------------------------------------------------------


def idempotency_key(
    *,
    spec: str | None,
    seed: int,
    num_steps: int | None,
    guidance: float | None,
    row_id: str,
    frame_bytes: bytes,
    actions_bytes: bytes,
) -> str:
    """A key that is the same for the same row content and sampling arguments, across
    retries, reruns and processes (so a resumed row is never charged twice)."""
    parts = [
        "dream-predict-many/1",
        spec,
        seed,
        num_steps,
        guidance,
        row_id,
        hashlib.sha256(frame_bytes).hexdigest(),
        hashlib.sha256(actions_bytes).hexdigest(),
    ]
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()
    return f"pm-{digest[:48]}"


def _halts(on_error: str) -> bool:
    try:
        return ON_ERROR_VALUES[on_error]
    except (KeyError, TypeError):
        raise ValueError(
            f"on_error must be 'skip' or 'halt' (or its alias 'raise'), got {on_error!r}"
        ) from None


def _check_concurrency(concurrency: int) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    return concurrency


def _tag_row(exc: BaseException, row_id: str | None) -> BaseException:
    """Name the row in a fatal error: `exc.row_id`, and a `row 'x': ` message prefix."""
    if row_id is None or getattr(exc, "row_id", None) is not None:
        return exc
    try:
        exc.row_id = row_id  # type: ignore[attr-defined]
    except AttributeError:
        return exc
    prefix = f"row {row_id!r}: "
    if isinstance(exc, DreamError):
        if not exc.message.startswith(prefix):
            exc.message = prefix + exc.message
            exc.args = (exc.message, *exc.args[1:])
    elif len(exc.args) == 1 and isinstance(exc.args[0], str) and not isinstance(exc, OSError):
        exc.args = (prefix + exc.args[0],)
    elif hasattr(exc, "add_note"):
        exc.add_note(f"while processing row {row_id!r}")
    return exc


def _same(recorded: Any, value: Any) -> bool:
    if isinstance(recorded, (int, float)) and isinstance(value, (int, float)):
        return float(recorded) == float(value)
    return recorded == value


def _outside_dream() -> int:
    """The `stacklevel` that points a warning at the nearest caller outside dream."""
    import os
    import sys

    package = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back
        level += 1
    return level


def _source_rows(src: IterableSource, finished: set[str]) -> Iterator[SourceRow]:
    # Built-in sources can skip reading (and decoding) rows the sink already holds. Only
    # when `__iter__` is the one defined beside `_iter_rows`: a subclass that overrides
    # `__iter__` (to transform rows, say) must be iterated as it says.
    if finished:
        owner = next((c for c in type(src).__mro__ if "_iter_rows" in c.__dict__), None)
        if owner is not None and type(src).__iter__ is owner.__dict__.get("__iter__"):
            return iter(src._iter_rows(finished))  # type: ignore[attr-defined]
    return iter(src)


def _close_iterator(rows: Iterator[Any]) -> None:
    close = getattr(rows, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            log.debug("closing the source iterator failed", exc_info=True)


# -- per-row logic shared by every runner (threads here, Ray actors in _bulk_ray) -------


def normalize_row(row: SourceRow) -> SourceRow:
    """The row with an int id turned into its str form (other ids are left to the check)."""
    row_id = row.row_id
    if isinstance(row_id, int) and not isinstance(row_id, bool):
        return SourceRow(str(row_id), row.frame_bytes, row.actions_bytes, row.metadata, row.error)
    return row


def unsafe_row_error(row_id: object) -> InputValidationError | None:
    """Why `row_id` cannot name an output file, as the row's error; None when it can."""
    reason = unsafe_row_id_reason(row_id)
    if reason is None:
        return None
    return InputValidationError(f"{reason}; row ids name the output files, so the row was not run")


def duplicate_row_error(row_id: str) -> InputValidationError:
    return InputValidationError(
        f"duplicate row id {row_id!r}: an earlier row of this source has the same id; "
        "this row was not run (row ids must be unique)"
    )


def source_row_error(row: SourceRow) -> InputValidationError | None:
    """The error the source flagged on this row (`SourceRow.error`), if any."""
    source_error = getattr(row, "error", None)  # duck-typed rows may predate the field
    return None if source_error is None else InputValidationError(str(source_error))


def colliding_keys(source_metadata: dict | None) -> list[str]:
    """Source metadata keys that `record_metadata` moves to `_source_<key>`."""
    return sorted(RESERVED_KEYS & (source_metadata or {}).keys())


def record_metadata(
    *,
    spec: str | None,
    seed: int,
    num_steps: int | None,
    guidance: float | None,
    source_metadata: dict | None,
    attempts: int,
    outcome: RowOutcome | None = None,
    error: BaseException | None = None,
) -> dict[str, Any]:
    """A row's metadata in the sink, in 0.5.0's layout (sdk-surface §16): the source keys at
    the top level, overlaid with the SDK's (`request_id`, `engine_wall_ms`,
    `estimated_charge_usd`, `status` as the int HTTP status, `spec`); a colliding source
    key is kept as `_source_<key>`. Then our own keys: what the run asked for (a resumed
    run compares these), not what an engine echoed."""
    metadata = dict(source_metadata or {})
    for key in colliding_keys(metadata):
        metadata[f"_source_{key}"] = metadata[key]
    if outcome is not None:
        status = int(outcome.status or HTTP_OK)
    else:
        status = status_for_error(error) if isinstance(error, DreamError) else 500
    metadata["request_id"] = (outcome.request_id if outcome is not None else getattr(error, "request_id", None)) or ""
    metadata["engine_wall_ms"] = float(outcome.engine_wall_ms) if outcome is not None else 0.0
    metadata["estimated_charge_usd"] = float(outcome.cost_usd or 0.0) if outcome is not None else 0.0
    metadata["status"] = status
    if spec:
        metadata["spec"] = spec
    else:
        metadata.pop("spec", None)
    metadata["error"] = None if error is None else str(error)
    metadata["attempts"] = attempts
    metadata["frames"] = int(outcome.frames) if outcome is not None else 0
    metadata["sampling_seed"] = seed
    metadata["num_steps"] = num_steps
    metadata["guidance"] = guidance
    return metadata


# -- the state machine shared by the sync and async drivers -----------------------------


class _BulkRun:
    """Counters, admission checks and result handling of one run (calling thread only)."""

    def __init__(
        self,
        src: IterableSource,
        sink: RolloutSink,
        *,
        spec: str | None,
        on_error: str,
        progress: bool,
        num_steps: int | None,
        guidance: float | None,
        seed: int,
        resume: bool,
    ) -> None:
        self.halt = _halts(on_error)
        self.src = src
        self.sink = sink
        self.spec = spec
        self.num_steps = num_steps
        self.guidance = guidance
        self.seed = seed
        self.started = time.perf_counter()
        # finished: skipped; stale: finished with other parameters -> why (redone).
        self.finished: set[str] = set()
        self.stale: dict[str, str] = {}
        if resume:
            self._load_finished()
        self.redone_why: dict[str, int] = {}
        self.seen: set[str] = set()
        self.ok = 0
        self.skipped = 0
        self.redone = 0
        self.collisions_warned: set[str] = set()
        self.cost_usd = 0.0
        self.failures: list[FailedRow] = []
        self.fatal: BaseException | None = None
        self.bar = _progress_bar(progress, getattr(src, "rows_hint", None))

    def _load_finished(self) -> None:
        finished_rows = getattr(self.sink, "finished_rows", None)
        if callable(finished_rows):
            rows = finished_rows()
        else:  # a duck-typed sink from before finished_rows
            finished_ids = getattr(self.sink, "finished_row_ids", None)
            rows = {row_id: {} for row_id in finished_ids()} if callable(finished_ids) else {}
        mine = {"spec": self.spec, "sampling_seed": self.seed, "num_steps": self.num_steps, "guidance": self.guidance}
        for row_id, params in rows.items():
            why = [
                f"{key} {params[key]!r} → {value!r}"
                for key, value in mine.items()
                if key in (params or {}) and not _same(params[key], value)
            ]
            if why:
                self.stale[row_id] = ", ".join(why)
            else:
                self.finished.add(row_id)

    @property
    def stopping(self) -> bool:
        return self.fatal is not None

    def set_fatal(self, exc: BaseException, row_id: str | None) -> None:
        if self.fatal is None:
            self.fatal = _tag_row(exc, row_id)

    # -- rows -------------------------------------------------------------------------

    def admit(self, row: SourceRow) -> SourceRow | None:
        """The row to send to the engine, or None when it was handled here."""
        row = normalize_row(row)
        row_id = row.row_id
        unsafe = unsafe_row_error(row_id)
        if unsafe is not None:
            self._fail(row_id if isinstance(row_id, str) else repr(row_id), row.metadata, unsafe, attempts=0)
            return None
        if not self.first_sighting(row_id, row.metadata):
            return None
        if row_id in self.finished:
            self.skip()
            return None
        source_error = source_row_error(row)
        if source_error is not None:
            self._fail(row_id, row.metadata, source_error, attempts=0)
            return None
        return row

    def first_sighting(self, row_id: str, source_metadata: dict) -> bool:
        """True the first time `row_id` comes; a repeat fails as a duplicate."""
        if row_id in self.seen:
            # Not handed to the sink: its metadata is keyed by row id, and an entry for this
            # id would overwrite the first row's.
            self._fail(row_id, source_metadata, duplicate_row_error(row_id), attempts=0, to_sink=False)
            return False
        self.seen.add(row_id)
        why = self.stale.get(row_id)
        if why is not None:  # finished before with other parameters: run again
            self.redone += 1
            self.redone_why[why] = self.redone_why.get(why, 0) + 1
        return True

    def skip(self) -> None:
        """Count a row the sink already holds (resume)."""
        self.skipped += 1
        self._tick()

    def done(
        self,
        row_id: str,
        source_metadata: dict,
        outcome: RowOutcome | None,
        exc: BaseException | None,
        attempts: int,
        actions_bytes: bytes = b"",
    ) -> None:
        """Handle one finished predict: write it, record it, or stop the run."""
        if exc is None and outcome is not None:
            record = RolloutRecord(
                row_id, outcome.mp4_bytes, self._metadata(row_id, source_metadata, attempts, outcome=outcome),
                actions_bytes=actions_bytes,
            )
            try:
                self.sink.write(record)
            except Exception as write_exc:
                self.set_fatal(write_exc, row_id)  # a sink that cannot write loses rows: stop
                return
            self.ok += 1
            self.cost_usd += float(outcome.cost_usd or 0.0)
            self._tick()
        elif isinstance(exc, DreamError) and not isinstance(exc, _FATAL):
            self._fail(row_id, source_metadata, exc, attempts=attempts)
        else:
            assert exc is not None
            self.set_fatal(exc, row_id)

    def _fail(
        self, row_id: str, source_metadata: dict, exc: DreamError, *, attempts: int, to_sink: bool = True
    ) -> None:
        exc.__traceback__ = None  # keep failures light: a run may collect many
        self.failures.append(FailedRow(row_id, exc, attempts))
        log.info("row %r failed: %s", row_id, exc)
        write_failure = getattr(self.sink, "write_failure", None)  # duck-typed sinks may lack it
        if to_sink and callable(write_failure):
            record = RolloutRecord(row_id, b"", self._metadata(row_id, source_metadata, attempts, error=exc))
            try:
                write_failure(record)
            except Exception as write_exc:
                self.set_fatal(write_exc, row_id)
        self._tick()
        if self.halt:
            self.set_fatal(exc, row_id)

    def _metadata(
        self,
        row_id: str,
        source_metadata: dict | None,
        attempts: int,
        *,
        outcome: RowOutcome | None = None,
        error: BaseException | None = None,
    ) -> dict[str, Any]:
        """0.5.0's record metadata (see `record_metadata`); a source key colliding with ours
        is warned about once per run."""
        collisions = colliding_keys(source_metadata)
        if collisions and not set(collisions) <= self.collisions_warned:
            self.collisions_warned.update(collisions)
            warnings.warn(
                f"source metadata keys {collisions} collide with the keys predict_many records; the source "
                f"values are kept as {[f'_source_{k}' for k in collisions]} (first seen on row "
                f"{row_id!r})",
                UserWarning,
                stacklevel=_outside_dream(),
            )
        return record_metadata(
            spec=self.spec,
            seed=self.seed,
            num_steps=self.num_steps,
            guidance=self.guidance,
            source_metadata=source_metadata,
            attempts=attempts,
            outcome=outcome,
            error=error,
        )

    def key_for(self, row: SourceRow) -> str:
        return idempotency_key(
            spec=self.spec,
            seed=self.seed,
            num_steps=self.num_steps,
            guidance=self.guidance,
            row_id=row.row_id,
            frame_bytes=row.frame_bytes,
            actions_bytes=row.actions_bytes,
        )

    # -- progress and the end -----------------------------------------------------------

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix(ok=self.ok, failed=len(self.failures), skipped=self.skipped, refresh=False)
            self.bar.update(1)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def finish(self) -> PredictManyResult:
        """Finalize the sink and return the result, or re-raise the first fatal error."""
        self.close_bar()
        if self.fatal is not None:
            try:
                self.sink.finalize()
            except Exception:
                log.warning("finalizing the sink after a fatal error failed", exc_info=True)
            raise self.fatal
        output_uri = self.sink.finalize()
        if self.failures:
            log.warning(
                "predict_many: %d row(s) failed; each is listed with its error in the run's failures "
                "and in the sink's metadata table",
                len(self.failures),
            )
        redone_why = "; ".join(f"{why} ({n} rows)" for why, n in self.redone_why.items())
        if self.redone:
            log.warning(
                "predict_many: %d row(s) finished earlier with other parameters were redone: %s",
                self.redone,
                redone_why,
            )
        return PredictManyResult(
            ok=self.ok,
            failed=len(self.failures),
            output_uri=str(output_uri),
            failures=list(self.failures),
            skipped=self.skipped,
            redone=self.redone,
            redone_why=redone_why,
            cost_usd=self.cost_usd,
            wall_s=time.perf_counter() - self.started,
        )


def _progress_bar(progress: bool, total: int | None) -> Any:
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="row", desc="predict_many", dynamic_ncols=True)


# -- one row, with retries --------------------------------------------------------------


def retry_policy_for(policy: RetryPolicy | None, retries: int | None) -> RetryPolicy:
    """The policy rows are retried with: the client's (`policy`), with `retries` + 1
    attempts when `retries` is given (then outages count attempts too: no time budget)."""
    policy = policy if policy is not None else RetryPolicy()
    if retries is None:
        return policy
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0 (or None for the client's RetryPolicy), got {retries!r}")
    return dataclasses.replace(policy, max_attempts=retries + 1, budget_s=0.0)


def _predict_row(
    predict: RowPredictor, row: SourceRow, key: str, policy: RetryPolicy, sleep: Callable[[float], Any]
) -> tuple[RowOutcome | None, BaseException | None, int]:
    attempts = 0

    def attempt() -> RowOutcome:
        nonlocal attempts
        attempts += 1
        return predict(row.frame_bytes, row.actions_bytes, key)

    try:
        return call_with_retry(attempt, policy, sleep=sleep), None, attempts
    except Exception as exc:
        return None, exc, attempts


async def _predict_row_async(
    predict: AsyncRowPredictor, row: SourceRow, key: str, policy: RetryPolicy, sleep: Callable[[float], Any]
) -> tuple[RowOutcome | None, BaseException | None, int]:
    import inspect

    attempts = 0

    async def attempt() -> RowOutcome:
        nonlocal attempts
        attempts += 1
        return await predict(row.frame_bytes, row.actions_bytes, key)

    async def wait(seconds: float) -> None:
        slept = sleep(seconds)
        if inspect.isawaitable(slept):
            await slept

    try:
        return await call_with_retry_async(attempt, policy, sleep=wait), None, attempts
    except Exception as exc:
        return None, exc, attempts


# -- drivers ----------------------------------------------------------------------------


def run_predict_many(
    src: IterableSource,
    sink: RolloutSink,
    *,
    predict: RowPredictor,
    spec: str | None = None,
    concurrency: int = 4,
    on_error: str = "skip",
    retries: int | None = None,
    retry_policy: RetryPolicy | None = None,
    progress: bool = True,
    num_steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    resume: bool = True,
    sleep: Callable[[float], Any] = time.sleep,
) -> PredictManyResult:
    """Run `predict` over every row of `src` into `sink` on a pool of `concurrency` threads.

    See the module docstring for retries, failures, resume and stopping. `spec`,
    `num_steps`, `guidance` and `seed` are what the client bound into `predict`; they are
    recorded in each row's metadata and in its idempotency key. Rows are retried by
    `retry_policy` (the client's), with `retries` + 1 attempts when `retries` is given.
    `sleep` waits between retries (inject a fake in tests). Raises ValueError for a bad `on_error` or
    `concurrency` before touching the source or the sink.
    """
    _halts(on_error)
    _check_concurrency(concurrency)
    policy = retry_policy_for(retry_policy, retries)
    run = _BulkRun(
        src,
        sink,
        spec=spec,
        on_error=on_error,
        progress=progress,
        num_steps=num_steps,
        guidance=guidance,
        seed=seed,
        resume=resume,
    )

    def task(row: SourceRow) -> tuple[RowOutcome | None, BaseException | None, int]:
        return _predict_row(predict, row, run.key_for(row), policy, sleep)

    window = 2 * concurrency
    inflight: dict[Future, tuple[str, dict, bytes]] = {}
    rows = _source_rows(src, run.finished)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="dream-predict-many")
    try:
        exhausted = False
        while True:
            while not exhausted and not run.stopping and len(inflight) < window:
                try:
                    row = next(rows)
                except StopIteration:
                    exhausted = True
                    break
                except Exception as exc:  # the source itself broke: stop like any fatal error
                    run.set_fatal(exc, None)
                    break
                admitted = run.admit(row)
                if admitted is not None:
                    inflight[pool.submit(task, admitted)] = (admitted.row_id, admitted.metadata, admitted.actions_bytes)
            if not inflight:
                break
            finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for fut in finished:
                row_id, source_metadata, actions_bytes = inflight.pop(fut)
                outcome, exc, attempts = fut.result()
                run.done(row_id, source_metadata, outcome, exc, attempts, actions_bytes)
    except BaseException:
        # KeyboardInterrupt and the like: stop now; rows not acknowledged by the sink are
        # simply redone by the next (resumed) run.
        for fut in inflight:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        run.close_bar()
        _close_iterator(rows)
        raise
    pool.shutdown(wait=True)
    _close_iterator(rows)
    return run.finish()


async def run_predict_many_async(
    src: IterableSource,
    sink: RolloutSink,
    *,
    predict: AsyncRowPredictor,
    spec: str | None = None,
    concurrency: int = 4,
    on_error: str = "skip",
    retries: int | None = None,
    retry_policy: RetryPolicy | None = None,
    progress: bool = True,
    num_steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    resume: bool = True,
    sleep: Callable[[float], Any] | None = None,
) -> PredictManyResult:
    """`run_predict_many` for a coroutine `predict`: an asyncio.Semaphore caps live calls at
    `concurrency`; the source and the sink run in worker threads (one call at a time), so
    blocking storage does not stall the event loop. `sleep` may be sync or async
    (default asyncio.sleep)."""
    import asyncio

    _halts(on_error)
    _check_concurrency(concurrency)
    policy = retry_policy_for(retry_policy, retries)
    sleep = sleep or asyncio.sleep
    run = await asyncio.to_thread(
        _BulkRun,
        src,
        sink,
        spec=spec,
        on_error=on_error,
        progress=progress,
        num_steps=num_steps,
        guidance=guidance,
        seed=seed,
        resume=resume,
    )
    semaphore = asyncio.Semaphore(concurrency)
    _end = object()

    async def task(row: SourceRow) -> tuple[RowOutcome | None, BaseException | None, int]:
        async with semaphore:
            key = run.key_for(row)
            return await _predict_row_async(predict, row, key, policy, sleep)

    def pull(rows: Iterator[SourceRow]) -> Any:
        return next(rows, _end)

    window = 2 * concurrency
    inflight: dict[asyncio.Task, tuple[str, dict, bytes]] = {}
    rows = await asyncio.to_thread(_source_rows, src, run.finished)
    try:
        exhausted = False
        while True:
            while not exhausted and not run.stopping and len(inflight) < window:
                try:
                    row = await asyncio.to_thread(pull, rows)
                except Exception as exc:
                    run.set_fatal(exc, None)
                    break
                if row is _end:
                    exhausted = True
                    break
                admitted = await asyncio.to_thread(run.admit, row)
                if admitted is not None:
                    inflight[asyncio.ensure_future(task(admitted))] = (
                        admitted.row_id, admitted.metadata, admitted.actions_bytes
                    )
            if not inflight:
                break
            finished, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            for fut in finished:
                row_id, source_metadata, actions_bytes = inflight.pop(fut)
                outcome, exc, attempts = fut.result()
                await asyncio.to_thread(run.done, row_id, source_metadata, outcome, exc, attempts, actions_bytes)
    except BaseException:
        for fut in inflight:
            fut.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)
        run.close_bar()
        _close_iterator(rows)
        raise
    _close_iterator(rows)
    return await asyncio.to_thread(run.finish)


# -- estimate_cost ----------------------------------------------------------------------


def npy_shape(data: bytes) -> tuple[int, ...] | None:
    """The array shape in a `.npy` header, without loading the data (None if not .npy)."""
    if len(data) < 10 or not data.startswith(b"\x93NUMPY"):
        return None
    major = data[6]
    if major == 1:
        length, start = int.from_bytes(data[8:10], "little"), 10
    elif major in (2, 3):
        length, start = int.from_bytes(data[8:12], "little"), 12
    else:
        return None
    try:
        header = ast.literal_eval(data[start : start + length].decode("latin1"))
        shape = header["shape"]
        return tuple(int(n) for n in shape)
    except (ValueError, SyntaxError, KeyError, TypeError):
        return None


def _peek_frames_per_row(src: IterableSource, *, max_rows: int = 8) -> int:
    """T + 1 of the first readable row's actions (sdk-surface §17), else 49."""
    try:
        rows = iter(src)
    except Exception:
        return DEFAULT_FRAMES_PER_ROW
    try:
        for _ in range(max_rows):
            row = next(rows, None)
            if row is None:
                break
            shape = npy_shape(bytes(row.actions_bytes[:4096])) if row.actions_bytes else None
            if shape is not None and len(shape) == 2:
                return shape[0] + 1
    except Exception:
        log.debug("peeking at the first row failed", exc_info=True)
    finally:
        _close_iterator(rows)
    return DEFAULT_FRAMES_PER_ROW


def estimate_cost_for(
    src: IterableSource,
    *,
    spec: str | None,
    frames_per_row: int | None,
    price_per_frame_usd: float,
    rollout_wall_s: float | None,
    rollout_frames: int | None = None,
) -> CostEstimate:
    """Estimate a run of `src` without running it.

    rows: `src.rows_hint`, else `len(src)`, else None (never a full pass over the data;
    the built-in sources fill rows_hint from their listing or metadata).
    frames_per_row: the argument, else T + 1 of the first row's actions (read from the
    .npy header only), else 49.
    est_engine_s: rows × `rollout_wall_s` (the spec's measured wall per rollout), scaled by
    frames_per_row / `rollout_frames` when the measurement was for another length.
    """
    rows = getattr(src, "rows_hint", None)
    if rows is None:
        try:
            rows = len(src)
        except TypeError:
            rows = None
    fpr = int(frames_per_row) if frames_per_row is not None else _peek_frames_per_row(src)
    price = float(price_per_frame_usd)
    total_frames = rows * fpr if rows is not None else None
    total_usd = total_frames * price if total_frames is not None else None
    est_engine_s = None
    if rows is not None and rollout_wall_s is not None:
        per_row = float(rollout_wall_s)
        if rollout_frames:
            per_row *= fpr / float(rollout_frames)
        est_engine_s = rows * per_row
    return CostEstimate(
        rows=rows,
        frames_per_row=fpr,
        total_frames=total_frames,
        total_usd=total_usd,
        spec=spec or "",
        price_per_frame_usd=price,
        est_engine_s=est_engine_s,
    )


async def estimate_cost_for_async(
    src: IterableSource,
    *,
    spec: str | None,
    frames_per_row: int | None,
    price_per_frame_usd: float,
    rollout_wall_s: float | None,
    rollout_frames: int | None = None,
) -> CostEstimate:
    """`estimate_cost_for` in a worker thread (the peek may do blocking I/O)."""
    import asyncio

    return await asyncio.to_thread(
        estimate_cost_for,
        src,
        spec=spec,
        frames_per_row=frames_per_row,
        price_per_frame_usd=price_per_frame_usd,
        rollout_wall_s=rollout_wall_s,
        rollout_frames=rollout_frames,
    )
