"""`predict_many` on a thread pool (sync) or on asyncio tasks (async): the runners the
clients call.

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
  an engine call (`dream.bulk.rows`, shared with the Ray runner, as is the accounting of
  `dream.bulk.run.BulkRun`). With `resume=True`, rows the sink already holds as finished
  (`finished_rows()`) are skipped when they were made with the same spec and sampling
  parameters; the others are redone, and the result says how many and why.
* Retries follow the client's `RetryPolicy` (`call_with_retry`, as every other call of
  the client: 429 honouring Retry-After, 502/503/504 and transport failures; a 500 is not
  retried), as in 0.5.0. Each row carries one idempotency key derived from its content
  and the sampling arguments, the same on every retry and every rerun, so a server that
  honours `Idempotency-Key` never charges a row twice.
* Each row's `RolloutRecord.metadata` has 0.5.0's layout (the source row's keys at the
  top level, overlaid with request_id, engine_wall_ms, estimated_charge_usd, the int
  HTTP status and spec), plus our keys; see `dream.bulk.records`.
* `on_error="skip"`: any other DreamError fails the row; it is listed in the result and
  handed to `sink.write_failure`, and the run goes on. `"halt"` (alias `"raise"`): the
  first failure stops the run. AuthError, InsufficientCreditsError, ModelNotFoundError,
  WeightsNotFoundError, sink errors and non-dream exceptions always stop it.
* Stopping: no new rows are pulled, in-flight rows are drained (their successes still
  reach the sink), the sink is finalized best-effort, and the first fatal error is raised
  with the row id in its message and in `exc.row_id`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from dream._retry import RetryPolicy
from dream.bulk.rows import (
    AsyncRowPredictor,
    RowOutcome,
    RowPredictor,
    predict_row,
    predict_row_async,
    retry_policy_for,
)
from dream.bulk.run import BulkRun, PredictManyResult, check_concurrency, close_iterator, halts, source_rows
from dream.io.types import IterableSource, RolloutSink, SourceRow

__all__ = ["run_predict_many", "run_predict_many_async"]


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
    halts(on_error)
    check_concurrency(concurrency)
    policy = retry_policy_for(retry_policy, retries)
    run = BulkRun(
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
        return predict_row(predict, row, run.key_for(row), policy, sleep)

    window = 2 * concurrency
    inflight: dict[Future, tuple[str, dict, bytes]] = {}
    rows = source_rows(src, run.finished)
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
        close_iterator(rows)
        raise
    pool.shutdown(wait=True)
    close_iterator(rows)
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

    halts(on_error)
    check_concurrency(concurrency)
    policy = retry_policy_for(retry_policy, retries)
    sleep = sleep or asyncio.sleep
    run = await asyncio.to_thread(
        BulkRun,
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
            return await predict_row_async(predict, row, key, policy, sleep)

    def pull(rows: Iterator[SourceRow]) -> Any:
        return next(rows, _end)

    window = 2 * concurrency
    inflight: dict[asyncio.Task, tuple[str, dict, bytes]] = {}
    rows = await asyncio.to_thread(source_rows, src, run.finished)
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
        close_iterator(rows)
        raise
    close_iterator(rows)
    return await asyncio.to_thread(run.finish)
