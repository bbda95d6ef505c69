"""How one row is run, the same way by every runner (threads, asyncio, Ray actors).

A row goes: `normalize_row` (an int id becomes its str) → the checks that fail it without
an engine call (`unsafe_row_error`: its id cannot name an output file; `source_row_error`:
the source flagged it; `duplicate_row_error`: its id came before) → `predict_row`: the
runner's predict callable, retried by the client's `RetryPolicy` (`retry_policy_for`),
with one `idempotency_key` derived from the row's content and the sampling arguments →
`record_metadata`: what the sink stores for the row, ok or failed, in 0.5.0's layout.

The predict callable is bound by the client (embedded engine or HTTP) or by a Ray actor:

    predict(frame_bytes, actions_bytes, idempotency_key) -> RowOutcome   (raises DreamError)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dream._retry import RetryPolicy, call_with_retry, call_with_retry_async
from dream.bulk.records import HTTP_OK, RESERVED_KEYS, unsafe_row_id_reason
from dream.errors import DreamError, InputValidationError, status_for_error
from dream.io.types import SourceRow

__all__ = [
    "AsyncRowPredictor",
    "RowOutcome",
    "RowPredictor",
    "colliding_keys",
    "duplicate_row_error",
    "idempotency_key",
    "normalize_row",
    "predict_row",
    "predict_row_async",
    "record_metadata",
    "retry_policy_for",
    "source_row_error",
    "unsafe_row_error",
]


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


def predict_row(
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


async def predict_row_async(
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
