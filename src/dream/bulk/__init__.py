"""Bulk execution: one rollout per source row into a sink, on threads or on Ray.

    rows.py      how one row is run, by every runner: checks, idempotency key, retries,
                 the metadata its sink entry gets
    run.py       one run's driver-side state: resume, admission, failures, the result
    threads.py   predict_many on a thread pool / asyncio (what `Client.predict_many` calls)
    ray.py       predict_many on Ray Data actors (public face: `dream.ray`; needs [ray])
    records.py   the sink entry layout, journal lines and the Parquet metadata table
    estimate.py  estimate_cost without running anything

The sources and sinks themselves live in `dream.io` (formats only, no runner). Importing
this package imports none of its modules; the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "CostEstimate",
    "FailedRow",
    "PredictManyResult",
    "RowOutcome",
    "estimate_cost_for",
    "estimate_cost_for_async",
    "idempotency_key",
    "run_predict_many",
    "run_predict_many_async",
]

_LAZY: dict[str, str] = {
    "CostEstimate": "dream.bulk.estimate",
    "estimate_cost_for": "dream.bulk.estimate",
    "estimate_cost_for_async": "dream.bulk.estimate",
    "FailedRow": "dream.bulk.run",
    "PredictManyResult": "dream.bulk.run",
    "RowOutcome": "dream.bulk.rows",
    "idempotency_key": "dream.bulk.rows",
    "run_predict_many": "dream.bulk.threads",
    "run_predict_many_async": "dream.bulk.threads",
}

if TYPE_CHECKING:
    from dream.bulk.estimate import CostEstimate, estimate_cost_for, estimate_cost_for_async
    from dream.bulk.rows import RowOutcome, idempotency_key
    from dream.bulk.run import FailedRow, PredictManyResult
    from dream.bulk.threads import run_predict_many, run_predict_many_async


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dream.bulk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
