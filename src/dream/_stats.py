"""Rolling latency percentiles over a time window (the `status()` figures of both transports)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RollingLatency:
    """Latency samples of the last `window_s` seconds, at most `max_samples` of them.

    Old samples fall out by age; under heavy load the oldest fall out by count first,
    so memory stays bounded whatever the request rate.
    """

    def __init__(
        self, window_s: float = 24 * 3600.0, max_samples: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def add(self, latency_ms: float) -> None:
        with self._lock:
            self._samples.append((self._clock(), float(latency_ms)))

    def _prune(self) -> None:
        cutoff = self._clock() - self.window_s
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()

    def summary(self) -> dict[str, float | int | None]:
        """{"count", "p50_ms", "p99_ms", "mean_ms", "window_s"}; percentiles None when empty."""
        with self._lock:
            self._prune()
            values = sorted(v for _, v in self._samples)
        if not values:
            return {"count": 0, "p50_ms": None, "p99_ms": None, "mean_ms": None, "window_s": self.window_s}
        return {
            "count": len(values),
            "p50_ms": percentile(values, 50),
            "p99_ms": percentile(values, 99),
            "mean_ms": sum(values) / len(values),
            "window_s": self.window_s,
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in [0, 100])."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


__all__ = ["RollingLatency", "percentile"]
