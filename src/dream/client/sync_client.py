"""`dream.Client`: one client over two transports (embedded engine or HTTP server)."""

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

if TYPE_CHECKING:
    from dream._retry import RetryPolicy
    from dream.bulk.estimate import CostEstimate
    from dream.bulk.rows import RowOutcome, RowPredictor
    from dream.bulk.run import PredictManyResult
    from dream.client.transport import Transport
    from dream.engine.engine import Engine
    from dream.io import IterableSource, RolloutSink
    from dream.resources.billing import Billing
    from dream.resources.models import Models
    from dream.resources.sessions import Sessions
    from dream.types import BatchResponse, PredictResponse


def _frames_of(actions_bytes: bytes) -> int:
    """Output frames of a row (T + 1) from its .npy header, without trusting anything else."""
    from dream.inputs import decode_npy_bytes

    arr = decode_npy_bytes(actions_bytes)
    return int(arr.shape[0]) + 1 if arr.ndim >= 1 else 0


def row_predictor(
    transport: Transport, *, spec: str | None, seed: int, num_steps: int | None, guidance: float | None
) -> RowPredictor:
    """The bulk runners' `predict(frame_bytes, actions_bytes, idempotency_key)` over a transport."""

    def predict(frame_bytes: bytes, actions_bytes: bytes, idempotency_key: str) -> RowOutcome:
        frames = _frames_of(actions_bytes)
        pr = transport.predict_bytes(
            frame_bytes=frame_bytes, actions_bytes=actions_bytes, seed=seed, num_steps=num_steps,
            guidance=guidance, spec=spec, idempotency_key=idempotency_key,
        )
        return outcome_of(pr, seed=seed, num_steps=num_steps, frames=frames)

    return predict


class Client(BaseClient):
    """Entry point of the SDK.

    ``Client()`` runs the embedded engine in this process (the built-in ``pusht-96``
    model works on a CPU out of the box). ``Client(base_url="http://host:8000")`` (or
    ``DREAM_BASE_URL``) talks to a ``dream serve`` server or the hosted service with
    ``api_key`` (or ``DREAM_API_KEY``). Models, results and errors are the same either way.
    ``threads`` sets the embedded engine's torch CPU threads (default: the CPUs this
    process may use, `dream.engine.threads.usable_cpus`); output bytes do not depend on it.
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
        self._transport_obj: Transport | None = None

    # ----------------------------------------------------------------- plumbing

    @property
    def _transport(self) -> Transport:
        if self._transport_obj is None:
            if self.is_local:
                from dream.client.local import LocalTransport

                self._transport_obj = LocalTransport(self._engine, threads=self.threads)
            else:
                from dream.client.http import HttpTransport

                self._transport_obj = HttpTransport(
                    base_url=self.base_url, api_key=self.api_key, timeout_s=self.timeout_s,
                    retry_policy=self.retry_policy,
                )
        return self._transport_obj

    @property
    def _http(self) -> Any:
        """The underlying httpx.Client (HTTP transport only; None for the embedded engine)."""
        return getattr(self._transport, "http", None)

    @property
    def engine(self) -> Engine | None:
        """The in-process engine (embedded transport only)."""
        return getattr(self._transport, "engine", None) if self.is_local else None

    def with_options(self, **overrides: Any) -> Client:
        """A new client with some options changed (api_key, base_url, timeout_s, retry_policy).

        The embedded engine (and its loaded models) is shared with the new client.
        """
        opts = self._options(**overrides)
        engine = self.engine if self.is_local and not opts["base_url"] else None
        return Client(**opts, engine=engine)

    def close(self) -> None:
        if self._transport_obj is not None:
            self._transport_obj.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})" if self.base_url else "Client(embedded)"

    # ----------------------------------------------------------------- resources

    @functools.cached_property
    def models(self) -> Models:
        from dream.resources.models import Models

        return Models(self)

    @functools.cached_property
    def billing(self) -> Billing:
        from dream.resources.billing import Billing

        return Billing(self)

    @functools.cached_property
    def sessions(self) -> Sessions:
        from dream.resources.sessions import Sessions

        return Sessions(client=self)

    # ----------------------------------------------------------------- byte-level calls

    def predict(
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
        """Byte-level rollout on the default model: PNG/JPEG bytes + .npy bytes → mp4.

        Bytes win over paths. Prefer ``client.models.get(slug).predict(...)``, which
        accepts arrays and checks them against the model first.
        """
        fb = frame_bytes_arg(frame_bytes, frame_path)
        ab = actions_bytes_arg(actions_bytes, actions_path)
        return self._transport.predict_bytes(
            frame_bytes=fb, actions_bytes=ab, seed=seed, num_steps=num_steps, guidance=guidance
        )

    def predict_batch(
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
        """Byte-level K-candidate batch on the default model (one start frame, K .npy blobs)."""
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
        return self._transport.predict_batch_bytes(
            frame_bytes=fb, actions_bytes_list=blobs, seed=seed, num_steps=num_steps, guidance=guidance
        )

    # ----------------------------------------------------------------- bulk

    def predict_many(
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
        """Run one rollout per source row and write each to `sink`.

        Streams `src` through `concurrency` workers (memory bounded by the pool, not the
        dataset), retries transient failures by the client's `RetryPolicy` (`retries` + 1
        attempts when `retries` is given), records failed rows (``on_error="skip"``) or
        stops at the first (``"halt"``), and with `resume` skips rows the sink already
        holds from a run with the same spec and sampling parameters (the others are
        redone). An unknown `spec` raises ModelNotFoundError before any row. Returns
        counts, failures, cost and wall time.
        """
        from dream._retry import RetryPolicy
        from dream.bulk.threads import run_predict_many

        mode = check_on_error(on_error)
        # An unknown spec fails here, before any row; the resolved default is what rows record.
        run_spec = resolve_spec(self._specs_or_none(), spec)
        # Rows are retried by the runner with this client's policy; one layer only.
        bulk_client = self if self.is_local else self.with_options(retry_policy=RetryPolicy(max_attempts=1))
        transport = bulk_client._transport

        predict = row_predictor(transport, spec=spec, seed=seed, num_steps=num_steps, guidance=guidance)
        try:
            return run_predict_many(
                src, sink, predict=predict, spec=run_spec, concurrency=concurrency, on_error=mode, retries=retries,
                retry_policy=self.retry_policy, **_sleep_of(transport),
                progress=progress, num_steps=num_steps, guidance=guidance, seed=seed, resume=resume,
            )
        finally:
            if bulk_client is not self:
                bulk_client.close()

    def _specs_or_none(self) -> Any:
        """The specs answer, or None when it cannot be had (then nothing is checked and
        the documented fallback price applies, sdk-surface §17.3)."""
        from dream.errors import DreamError

        try:
            return self._transport.specs()
        except DreamError:
            return None

    def estimate_cost(
        self, src: IterableSource, *, spec: str | None = None, frames_per_row: int | None = None
    ) -> CostEstimate:
        """Rows, frames, USD and estimated engine time of running `src` on `spec`."""
        specs = self._specs_or_none()
        slug, price = price_from_specs(specs, resolve_spec(specs, spec))
        try:
            wall_s = self._transport.rollout_wall_s(slug or None)
        except Exception:
            wall_s = None
        return estimate_from(src, spec=slug, frames_per_row=frames_per_row, price=price, wall_s=wall_s)

    # ----------------------------------------------------------------- info

    def specs(self) -> dict[str, Any]:
        """Specs and prices served here (GET /v1/specs)."""
        return self._transport.specs()

    def status(self) -> dict[str, Any]:
        """Models, uptime and rolling 24 h latency percentiles (GET /v1/status)."""
        return self._transport.status()

    def healthz(self) -> dict[str, Any]:
        """Liveness (GET /healthz)."""
        return self._transport.healthz()
