"""Where SDK 0.5.0 kept its bulk runner; kept so that code importing from it still works.

0.5.0 code reaches `dream._bulk.estimate_cost_for(_async)` and the result types
(sdk-surface §2); they now live in `dream.bulk`, which new code should import.
"""

from __future__ import annotations

from dream.bulk.estimate import (
    DEFAULT_FRAMES_PER_ROW,
    CostEstimate,
    estimate_cost_for,
    estimate_cost_for_async,
)
from dream.bulk.rows import AsyncRowPredictor, RowOutcome, RowPredictor, idempotency_key
from dream.bulk.run import FailedRow, PredictManyResult
from dream.bulk.threads import run_predict_many, run_predict_many_async

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
