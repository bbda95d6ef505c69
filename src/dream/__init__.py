"""dream: action-conditioned video world models, embedded or served.

    import dream
    client = dream.Client()                        # embedded engine, runs on CPU
    model = client.models.get("pusht-96")
    rollout = model.predict(start_frame=frame, actions=actions)   # (T, 2) → T + 1 frames
    rollout.save("out.mp4")

Every public name is imported lazily, so ``import dream`` loads no numpy, httpx, PIL
or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dream._version import __version__

DEFAULT_SPEC = "pusht-96"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Client": "dream.client.sync_client",
    "AsyncClient": "dream.client.async_client",
    "RetryPolicy": "dream._retry",
    "ModelHandle": "dream.resources.models",
    "Models": "dream.resources.models",
    "AsyncModelHandle": "dream.resources.models",
    "AsyncModels": "dream.resources.models",
    "ModelNotActiveError": "dream.errors",
    "Billing": "dream.resources.billing",
    "AsyncBilling": "dream.resources.billing",
    "DreamError": "dream.errors",
    "AuthError": "dream.errors",
    "RateLimitError": "dream.errors",
    "ModelNotFoundError": "dream.errors",
    "ValidationError": "dream.errors",
    "InsufficientCreditsError": "dream.errors",
    "ServerError": "dream.errors",
    "EngineError": "dream.errors",
    "InputValidationError": "dream.errors",
    "ModelSpec": "dream.types",
    "ModelSpecData": "dream.types",
    "UpstreamProvider": "dream.types",
    "Benchmark": "dream.types",
    "PredictResponse": "dream.types",
    "BatchResponse": "dream.types",
    "BillingBalance": "dream.types",
    "BillingTransaction": "dream.types",
    "TopupSession": "dream.types",
    "Rollout": "dream.rollout",
    "BatchRollout": "dream.rollout",
    "PredictManyResult": "dream.bulk.run",
    "FailedRow": "dream.bulk.run",
    "CostEstimate": "dream.bulk.estimate",
}
_SUBPACKAGES = ("examples", "io")
# Submodules that 0.5.0 code reaches as attributes (`dream.errors.AuthError` in an
# `except` clause, `dream.types.ModelSpec`): imported on first access, not listed in
# __all__ (the 36 names of sdk-surface §1).
_SUBMODULES = ("errors", "types", "rollout", "resources", "inputs", "client")

__all__ = [*_LAZY, *_SUBPACKAGES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBPACKAGES or name in _SUBMODULES:
        value = importlib.import_module(f"dream.{name}")
    else:
        raise AttributeError(f"module 'dream' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # mirror for type checkers and IDEs
    from dream import client, errors, examples, inputs, io, resources, rollout, types
    from dream._retry import RetryPolicy
    from dream.bulk.estimate import CostEstimate
    from dream.bulk.run import FailedRow, PredictManyResult
    from dream.client.async_client import AsyncClient
    from dream.client.sync_client import Client
    from dream.errors import (
        AuthError,
        DreamError,
        EngineError,
        InputValidationError,
        InsufficientCreditsError,
        ModelNotActiveError,
        ModelNotFoundError,
        RateLimitError,
        ServerError,
        ValidationError,
    )
    from dream.resources.billing import AsyncBilling, Billing
    from dream.resources.models import AsyncModelHandle, AsyncModels, ModelHandle, Models
    from dream.rollout import BatchRollout, Rollout
    from dream.types import (
        BatchResponse,
        Benchmark,
        BillingBalance,
        BillingTransaction,
        ModelSpec,
        ModelSpecData,
        PredictResponse,
        TopupSession,
        UpstreamProvider,
    )
