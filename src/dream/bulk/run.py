"""One bulk run's driver-side state, shared by the thread runner and the Ray runner.

`BulkRun` is the only code that touches the sink and the counters of a run: what resume
skips (rows the sink holds as finished with the same spec and sampling parameters) and
redoes (rows finished with other parameters), the checks a row passes before it is sent
(`admit`), what happens to each result (`done`: written, recorded as failed, or the run
stopped), and the `PredictManyResult` at the end (`finish`). The runners differ only in
where rows are predicted: a thread pool, asyncio tasks, or Ray actors.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dream.bulk.rows import (
    RowOutcome,
    colliding_keys,
    duplicate_row_error,
    idempotency_key,
    normalize_row,
    record_metadata,
    source_row_error,
    unsafe_row_error,
)
from dream.errors import (
    AuthError,
    DreamError,
    InsufficientCreditsError,
    ModelNotFoundError,
    WeightsNotFoundError,
)
from dream.io.types import IterableSource, RolloutRecord, RolloutSink, SourceRow

__all__ = [
    "FATAL",
    "ON_ERROR_VALUES",
    "BulkRun",
    "FailedRow",
    "PredictManyResult",
    "check_concurrency",
    "close_iterator",
    "halts",
    "source_rows",
    "tag_row",
]

log = logging.getLogger("dream.bulk")

ON_ERROR_VALUES = {"skip": False, "halt": True, "raise": True}  # value -> halts?

# Errors that say every later row would fail the same way (or would be refused): stop.
FATAL = (AuthError, InsufficientCreditsError, ModelNotFoundError, WeightsNotFoundError)

_PACKAGE = Path(__file__).resolve().parents[1]  # src/dream: warnings point outside it


# -- result types (sdk-surface §16) ----------------------------------------------------


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


# -- helpers ----------------------------------------------------------------------------


def halts(on_error: str) -> bool:
    """Whether `on_error` stops the run at the first failed row; ValueError names a bad value."""
    try:
        return ON_ERROR_VALUES[on_error]
    except (KeyError, TypeError):
        raise ValueError(
            f"on_error must be 'skip' or 'halt' (or its alias 'raise'), got {on_error!r}"
        ) from None


def check_concurrency(concurrency: int) -> int:
    """`concurrency` if it is a positive int, else ValueError naming it."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    return concurrency


def tag_row(exc: BaseException, row_id: str | None) -> BaseException:
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
    import sys

    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level


def source_rows(src: IterableSource, finished: set[str]) -> Iterator[SourceRow]:
    """A fresh pass over `src`; the built-in sources skip reading (and decoding) the rows in
    `finished`, which the sink already holds."""
    # Only when `__iter__` is the one defined beside `_iter_rows`: a subclass that overrides
    # `__iter__` (to transform rows, say) must be iterated as it says.
    if finished:
        owner = next((c for c in type(src).__mro__ if "_iter_rows" in c.__dict__), None)
        if owner is not None and type(src).__iter__ is owner.__dict__.get("__iter__"):
            return iter(src._iter_rows(finished))  # type: ignore[attr-defined]
    return iter(src)


def close_iterator(rows: Iterator[Any]) -> None:
    """Close a source's generator (its files and connections) if it has a `close`."""
    close = getattr(rows, "close", None)
    if callable(close):
        try:
            close()
        except Exception:
            log.debug("closing the source iterator failed", exc_info=True)


# -- the run ----------------------------------------------------------------------------


class BulkRun:
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
        self.halt = halts(on_error)
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
            self.fatal = tag_row(exc, row_id)

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
        elif isinstance(exc, DreamError) and not isinstance(exc, FATAL):
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
