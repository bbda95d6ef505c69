"""Retry policy for HTTP calls (wire-protocol §5): one named policy, one wrapper.

Retried: transport failures, 429 (honouring Retry-After), 502, 503, 504. Everything
else surfaces at once. The wrapper sets ``attempts_made`` on the error it finally
raises. Callers that POST create their Idempotency-Key *before* calling the wrapper,
so every attempt carries the same key and the server never runs a retried call twice.
The sleep and the random source are injectable so tests never wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from dream.errors import DreamError, RateLimitError, ServerError

T = TypeVar("T")

RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})


@dataclass
class RetryPolicy:
    """How many times to try a call and how long to wait in between.

    max_attempts counts the first try (1 disables retries) for 429, 502 and 504. An
    outage, meaning a connection failure or a 503 (a server restarting, a model loading),
    is retried until `budget_s` seconds of backoff have been spent however many tries
    that takes, so a restart of a few seconds is ridden out (budget_s=0: outages count
    attempts like the rest). The delay before retry n (1-based) is base_delay_s · 2^(n-1),
    capped at max_delay_s, then scaled by a uniform factor in [0.5, 1.5] when jitter is
    on; the last outage delay is cut to what is left of the budget. A 429's Retry-After
    replaces the computed delay (still capped at max_delay_s, no jitter).
    """

    max_attempts: int = 3
    base_delay_s: float = 0.25
    max_delay_s: float = 4.0
    jitter: bool = True
    budget_s: float = 10.0

    def next_delay(
        self, attempt: int, exc: DreamError, slept_s: float, *, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before trying again after failed `attempt`, or None to give up."""
        attempts = max(1, int(self.max_attempts))
        if attempts == 1 or not is_retryable(exc):
            return None
        delay = self.delay_for(attempt, _retry_after(exc), rng=rng)
        if is_outage(exc) and self.budget_s > 0:
            left = self.budget_s - slept_s
            return min(delay, left) if left > 1e-9 else None
        return delay if attempt < attempts else None

    def delay_for(self, attempt: int, retry_after_s: float | None = None, *, rng: random.Random | None = None) -> float:
        if retry_after_s is not None:
            return max(0.0, min(float(retry_after_s), self.max_delay_s))
        # Cap the exponent so 2**n cannot overflow for absurd attempt counts.
        delay = min(self.base_delay_s * (2 ** min(max(attempt - 1, 0), 30)), self.max_delay_s)
        if self.jitter:
            delay *= (rng or random).uniform(0.5, 1.5)
        return delay


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed attempt may be tried again."""
    if isinstance(exc, RateLimitError):
        return True
    if isinstance(exc, ServerError):
        return exc.status_code is None or exc.status_code in RETRYABLE_STATUSES
    return False


def is_outage(exc: BaseException) -> bool:
    """A connection failure (no response) or a 503: the server is away for a while."""
    return isinstance(exc, ServerError) and exc.status_code in (None, 503)


def _retry_after(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, RateLimitError) else None


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn` until it succeeds, raises a non-retryable error, or the policy gives up."""
    attempt, slept = 0, 0.0
    while True:
        attempt += 1
        try:
            return fn()
        except DreamError as exc:
            delay = policy.next_delay(attempt, exc, slept)
            if delay is None:
                exc.attempts_made = attempt  # type: ignore[attr-defined]
                raise
            sleep(delay)
            slept += delay


async def call_with_retry_async(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Async twin of `call_with_retry`."""
    attempt, slept = 0, 0.0
    while True:
        attempt += 1
        try:
            return await fn()
        except DreamError as exc:
            delay = policy.next_delay(attempt, exc, slept)
            if delay is None:
                exc.attempts_made = attempt  # type: ignore[attr-defined]
                raise
            await sleep(delay)
            slept += delay


__all__ = [
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "call_with_retry",
    "call_with_retry_async",
    "is_outage",
    "is_retryable",
]
