"""Per-key limits: a token bucket for requests per second and a cap on concurrent rollouts.

Both answer with `RateLimitError` (HTTP 429) carrying ``retry_after`` in seconds, which
the server sends as ``Retry-After`` and the client's `RetryPolicy` honours. The clock is
injected, so tests move time by hand instead of sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dream.errors import RateLimitError

_MAX_IDLE_BUCKETS = 10_000


@dataclass
class TokenBucket:
    """`rate` tokens per second, at most `burst` banked; one token per request."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float, n: float = 1.0) -> float:
        """Take `n` tokens; returns 0 on success, else seconds until `n` are available."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


def _retry_after(seconds: float) -> float:
    """Round up to 0.1 s so a client that waits exactly this long finds a token."""
    return max(0.1, math.ceil(seconds * 10) / 10)


class Limiter:
    """Request-rate and concurrency limits per limiter key (API key id, or anon:…)."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_concurrent: int,
        concurrency_retry_after_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self.max_concurrent = int(max_concurrent)
        self.concurrency_retry_after_s = concurrency_retry_after_s
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()

    def check_request(self, key: str, *, rate: float | None = None, burst: int | None = None) -> None:
        """Count one request against `key`'s bucket; RateLimitError when it is empty.

        `rate` / `burst` override the defaults for this key (per-key limits from the ledger).
        """
        rate = self.rate if rate is None else float(rate)
        burst_f = self.burst if burst is None else max(1.0, float(burst))
        if rate <= 0:
            return
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= _MAX_IDLE_BUCKETS:
                    self._drop_full_buckets(now)
                bucket = self._buckets[key] = TokenBucket(rate, burst_f, burst_f, now)
            elif (bucket.rate, bucket.burst) != (rate, burst_f):
                bucket.rate, bucket.burst = rate, burst_f
            wait = bucket.take(now)
        if wait > 0:
            retry = _retry_after(wait)
            raise RateLimitError(
                f"rate limit: more than {rate:g} requests/s (burst {burst_f:g}) for this key; retry in {retry:g} s",
                retry_after=retry,
            )

    def _drop_full_buckets(self, now: float) -> None:
        for k in [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * b.rate >= b.burst]:
            del self._buckets[k]

    @contextmanager
    def rollout_slot(self, key: str, *, max_concurrent: int | None = None) -> Iterator[None]:
        """Hold one of `key`'s concurrent-rollout slots for the duration of the block."""
        cap = self.max_concurrent if max_concurrent is None else int(max_concurrent)
        if cap <= 0:
            yield
            return
        with self._lock:
            active = self._active.get(key, 0)
            if active >= cap:
                raise RateLimitError(
                    f"rate limit: {active} rollouts already running for this key (max {cap}); "
                    f"retry in {self.concurrency_retry_after_s:g} s",
                    retry_after=self.concurrency_retry_after_s,
                )
            self._active[key] = active + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._active.get(key, 1) - 1
                if left > 0:
                    self._active[key] = left
                else:
                    self._active.pop(key, None)

    def active(self, key: str) -> int:
        with self._lock:
            return self._active.get(key, 0)


def slot_for(limiter: Limiter, principal: object) -> Any:
    """`limiter.rollout_slot` for a principal, honouring its per-key cap."""
    limits = getattr(principal, "limits", None)
    cap = limits.max_concurrent if limits is not None else None
    return limiter.rollout_slot(principal.limiter_key, max_concurrent=cap)  # type: ignore[attr-defined]
