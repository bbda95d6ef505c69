"""`dream.AsyncClient`: the async twin of `Client` (same options, results and errors)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dream.client.base import (
    DEFAULT_TIMEOUT_S,
    BaseClient,
    _sleep_of,
    actions_bytes_arg,
    check_on_error,
    estimate_from,
    frame_bytes_arg,
    outcome_of,
    price_from_specs,
    resolve_spec,
)
from dream.client.sync_client import _frames_of

if TYPE_CHECKING:
    from dream._retry import RetryPolicy
    from dream.bulk.estimate import CostEstimate
    from dream.bulk.rows import RowOutcome
    from dream.bulk.run import PredictManyResult
    from dream.client.async_transport import AsyncTransport
    from dream.engine.engine import Engine
    from dream.io import IterableSource, RolloutSink
    from dream.resources.billing import AsyncBilling
    from dream.resources.models import AsyncModels
    from dream.resources.sessions import AsyncSessions
    from dream.types import BatchResponse, PredictResponse


class AsyncClient(BaseClient):
    """Async entry point of the SDK; see `Client` for how the transport is chosen.

    Use ``async with dream.AsyncClient() as client:`` or call ``await client.close()``.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry_policy: RetryPolicy | None = None,
        engine: Engine | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key, base_url=base_url, timeout_s=timeout_s, retry_policy=retry_policy, engine=engine,
            threads=threads,
        )
        self._transport_obj: AsyncTransport | None = None

    @property
    def _transport(self) -> AsyncTransport:
        if self._transport_obj is None:
            if self.is_local:
                from dream.client.async_transport import ThreadedAsyncTransport
                from dream.client.local import LocalTransport

                self._transport_obj = ThreadedAsyncTransport(LocalTransport(self._engine, threads=self.threads))
            else:
                from dream.client.http import AsyncHttpTransport

                self._transport_obj = AsyncHttpTransport(
                    base_url=self.base_url, api_key=self.api_key, timeout_s=self.timeout_s,
                    retry_policy=self.retry_policy,
                )
        return self._transport_obj

    @property
    def _http(self) -> Any:
        """The underlying httpx.AsyncClient (HTTP transport only)."""
        return getattr(self._transport, "http", None)

    @property
    def engine(self) -> Engine | None:
        """The in-process engine (embedded transport only)."""
        if not self.is_local:
            return None
        return self._transport.sync.engine  # type: ignore[attr-defined]

    def with_options(self, **overrides: Any) -> AsyncClient:
        """A new client with some options changed; the embedded engine is shared."""
        opts = self._options(**overrides)
        engine = self.engine if self.is_local and not opts["base_url"] else None
        return AsyncClient(**opts, engine=engine)

    async def close(self) -> None:
        if self._transport_obj is not None:
            await self._transport_obj.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.base_url!r})" if self.base_url else "AsyncClient(embedded)"

    @functools.cached_property
    def models(self) -> AsyncModels:
        from dream.resources.models import AsyncModels

        return AsyncModels(self)

    @functools.cached_property
    def billing(self) -> AsyncBilling:
        from dream.resources.billing import AsyncBilling

        return AsyncBilling(self)

    @functools.cached_property
    def sessions(self) -> AsyncSessions:
        from dream.resources.sessions import AsyncSessions

        return AsyncSessions(client=self)

    async def predict(
        self,
        *,
        frame_bytes: bytes | None = None,
        actions_bytes: bytes | None = None,
        frame_path: str | Path | None = None,
        actions_path: str | Path | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
    ) -> PredictResponse:
        """Async `Client.predict`."""
        fb = frame_bytes_arg(frame_bytes, frame_path)
        ab = actions_bytes_arg(actions_bytes, actions_path)
        return await self._transport.predict_bytes(
            frame_bytes=fb, actions_bytes=ab, seed=seed, num_steps=num_steps, guidance=guidance
        )

    async def predict_batch(
        self,
        *,
        frame_bytes: bytes | None = None,
        actions_bytes_list: list[bytes] | None = None,
        frame_path: str | Path | None = None,
        actions_paths: list[str | Path] | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
    ) -> BatchResponse:
        """Async `Client.predict_batch`."""
        fb = frame_bytes_arg(frame_bytes, frame_path)
        if actions_bytes_list is None and actions_paths is None:
            raise ValueError("pass actions_bytes_list= or actions_paths=")
        blobs = (
            [bytes(b) for b in actions_bytes_list]
            if actions_bytes_list is not None
            else [actions_bytes_arg(None, p) for p in actions_paths or []]
        )
        if not blobs:
            raise ValueError("actions_bytes_list is empty; need at least one .npy blob")
        return await self._transport.predict_batch_bytes(
            frame_bytes=fb, actions_bytes_list=blobs, seed=seed, num_steps=num_steps, guidance=guidance
        )

    async def predict_many(
        self,
        src: IterableSource,
        sink: RolloutSink,
        *,
        spec: str | None = None,
        concurrency: int = 4,
        on_error: str = "skip",
        progress: bool = True,
        num_steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        retries: int | None = None,
        resume: bool = True,
    ) -> PredictManyResult:
        """Async `Client.predict_many` (concurrency bounded by an asyncio semaphore)."""
        from dream._retry import RetryPolicy
        from dream.bulk.threads import run_predict_many_async

        mode = check_on_error(on_error)
        # An unknown spec fails here, before any row; the resolved default is what rows record.
        run_spec = resolve_spec(await self._specs_or_none(), spec)
        # Rows are retried by the runner with this client's policy; one layer only.
        bulk_client = self if self.is_local else self.with_options(retry_policy=RetryPolicy(max_attempts=1))
        transport = bulk_client._transport

        async def predict(frame_bytes: bytes, actions_bytes: bytes, idempotency_key: str) -> RowOutcome:
            frames = _frames_of(actions_bytes)
            pr = await transport.predict_bytes(
                frame_bytes=frame_bytes, actions_bytes=actions_bytes, seed=seed, num_steps=num_steps,
                guidance=guidance, spec=spec, idempotency_key=idempotency_key,
            )
            return outcome_of(pr, seed=seed, num_steps=num_steps, frames=frames)

        try:
            return await run_predict_many_async(
                src, sink, predict=predict, spec=run_spec, concurrency=concurrency, on_error=mode, retries=retries,
                retry_policy=self.retry_policy, **_sleep_of(transport),
                progress=progress, num_steps=num_steps, guidance=guidance, seed=seed, resume=resume,
            )
        finally:
            if bulk_client is not self:
                await bulk_client.close()

    async def _specs_or_none(self) -> Any:
        """The specs answer, or None when it cannot be had (then nothing is checked and
        the documented fallback price applies, sdk-surface §17.3)."""
        from dream.errors import DreamError

        try:
            return await self._transport.specs()
        except DreamError:
            return None

    async def estimate_cost(
        self, src: IterableSource, *, spec: str | None = None, frames_per_row: int | None = None
    ) -> CostEstimate:
        """Async `Client.estimate_cost`."""
        specs = await self._specs_or_none()
        slug, price = price_from_specs(specs, resolve_spec(specs, spec))
        try:
            wall_s = await self._transport.rollout_wall_s(slug or None)
        except Exception:
            wall_s = None
        return estimate_from(src, spec=slug, frames_per_row=frames_per_row, price=price, wall_s=wall_s)

    async def specs(self) -> dict[str, Any]:
        return await self._transport.specs()

    async def status(self) -> dict[str, Any]:
        return await self._transport.status()

    async def healthz(self) -> dict[str, Any]:
        return await self._transport.healthz()
