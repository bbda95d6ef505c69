"""Async face of a transport.

`AsyncClient` talks to an `AsyncTransport`. `ThreadedAsyncTransport` gives any sync
transport that face by running each call in a worker thread (the embedded engine's
calls are CPU/GPU-bound anyway); an HTTP transport may implement the async methods
natively instead.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dream.client.transport import BatchRequest, RolloutRequest, Transport
    from dream.rollout import BatchRollout, Rollout
    from dream.types import BatchResponse, PredictResponse


class AsyncTransport:
    """Async mirror of `Transport`; see that class for what each method does."""

    kind: str = ""
    base_url: str = ""

    async def list_models(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def get_model(self, slug: str) -> dict[str, Any]:
        raise NotImplementedError

    async def rollout(self, req: RolloutRequest) -> Rollout:
        raise NotImplementedError

    async def rollout_batch(self, req: BatchRequest) -> BatchRollout:
        raise NotImplementedError

    async def predict_bytes(self, **kwargs: Any) -> PredictResponse:
        raise NotImplementedError

    async def predict_batch_bytes(self, **kwargs: Any) -> BatchResponse:
        raise NotImplementedError

    async def specs(self) -> dict[str, Any]:
        raise NotImplementedError

    async def status(self) -> dict[str, Any]:
        raise NotImplementedError

    async def healthz(self) -> dict[str, Any]:
        raise NotImplementedError

    async def rollout_wall_s(self, spec: str | None) -> float | None:
        return None

    async def billing_balance(self) -> dict[str, Any]:
        raise NotImplementedError

    async def billing_transactions(self, limit: int) -> dict[str, Any]:
        raise NotImplementedError

    async def billing_topup(self, amount_cents: int) -> dict[str, Any]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class ThreadedAsyncTransport(AsyncTransport):
    """Runs a sync transport's calls in worker threads."""

    def __init__(self, sync: Transport) -> None:
        self.sync = sync
        self.kind = sync.kind
        self.base_url = sync.base_url

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.sync, name), *args, **kwargs)

    async def list_models(self) -> list[dict[str, Any]]:
        return await self._call("list_models")

    async def get_model(self, slug: str) -> dict[str, Any]:
        return await self._call("get_model", slug)

    async def rollout(self, req: RolloutRequest) -> Rollout:
        return await self._call("rollout", req)

    async def rollout_batch(self, req: BatchRequest) -> BatchRollout:
        return await self._call("rollout_batch", req)

    async def predict_bytes(self, **kwargs: Any) -> PredictResponse:
        return await self._call("predict_bytes", **kwargs)

    async def predict_batch_bytes(self, **kwargs: Any) -> BatchResponse:
        return await self._call("predict_batch_bytes", **kwargs)

    async def specs(self) -> dict[str, Any]:
        return await self._call("specs")

    async def status(self) -> dict[str, Any]:
        return await self._call("status")

    async def healthz(self) -> dict[str, Any]:
        return await self._call("healthz")

    async def rollout_wall_s(self, spec: str | None) -> float | None:
        return await self._call("rollout_wall_s", spec)

    async def billing_balance(self) -> dict[str, Any]:
        return await self._call("billing_balance")

    async def billing_transactions(self, limit: int) -> dict[str, Any]:
        return await self._call("billing_transactions", limit)

    async def billing_topup(self, amount_cents: int) -> dict[str, Any]:
        return await self._call("billing_topup", amount_cents)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.sync.close)
