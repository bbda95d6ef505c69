"""The embedded transport: the engine runs in this process (no server, no network).

Results look exactly like the HTTP transport's: rollout ids, request ids, costs at the
spec's price (customer ``"local"``), the same errors. Idempotency keys are honoured in
memory: a repeated key returns the stored result without running the engine again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from dream._stats import RollingLatency
from dream.client.transport import BatchRequest, RolloutRequest, Transport
from dream.errors import InputValidationError, ServerError
from dream.inputs import actions_to_array, decode_image_bytes
from dream.rollout import BatchRollout, Rollout
from dream.types import BatchResponse, PredictResponse

if TYPE_CHECKING:
    from dream.engine.engine import Engine, EngineResult

logger = logging.getLogger("dream.local")

LOCAL_CUSTOMER_ID = "local"
_IDEMPOTENCY_CACHE_SIZE = 256


def new_id(prefix: str) -> str:
    """A request/rollout id in the server's format: ``<prefix>_<32 hex>``."""
    return f"{prefix}_{uuid.uuid4().hex}"


class LocalTransport(Transport):
    """Runs rollouts on an in-process `Engine` (created on first use unless given)."""

    kind = "local"
    base_url = ""

    def __init__(self, engine: Engine | None = None, *, threads: int | None = None) -> None:
        self._engine = engine
        self._threads = threads  # torch CPU threads of the engine created here (None: the policy's)
        self._engine_lock = threading.Lock()
        self._latency = RollingLatency()
        self._started = time.time()
        self._idempotent: OrderedDict[str, Any] = OrderedDict()
        self._idem_lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    from dream.engine.engine import Engine

                    self._engine = Engine(threads=self._threads)
        return self._engine

    # ----------------------------------------------------------------- catalog

    def _entry(self, slug: str) -> dict[str, Any]:
        spec = self.engine.spec(slug)
        status = self.engine.weights_status(slug)
        return spec.to_model_entry(active=status.available, status_message=status.message)

    def list_models(self) -> list[dict[str, Any]]:
        return [self._entry(slug) for slug in self.engine.slugs]

    def get_model(self, slug: str) -> dict[str, Any]:
        return self._entry(slug)

    # ----------------------------------------------------------------- idempotency

    def _remembered(self, key: str | None) -> Any:
        if key is None:
            return None
        with self._idem_lock:
            hit = self._idempotent.get(key)
            if hit is not None:
                self._idempotent.move_to_end(key)
            return hit

    def _remember(self, key: str | None, value: Any) -> None:
        if key is None:
            return
        with self._idem_lock:
            self._idempotent[key] = value
            while len(self._idempotent) > _IDEMPOTENCY_CACHE_SIZE:
                self._idempotent.popitem(last=False)

    # ----------------------------------------------------------------- rollouts

    def _finish(self, result: EngineResult, request_id: str) -> list[bytes]:
        self._latency.add(result.wall_ms)
        logger.info(
            "request_id=%s spec=%s k=%d frames=%d engine_wall_ms=%.1f",
            request_id, result.spec.slug, result.k, result.num_frames, result.wall_ms,
        )
        return [self.engine.encode_mp4(result.frames[k], result.spec.slug) for k in range(result.k)]

    def rollout(self, req: RolloutRequest) -> Rollout:
        hit = self._remembered(req.idempotency_key)
        if hit is not None:
            return hit
        if req.webhook_url:
            warnings.warn("webhook_url is ignored by the embedded engine (the rollout returns when done)", UserWarning, stacklevel=4)
        if req.score:
            warnings.warn(
                "score=True: a plain rollout has no ground truth to score against; psnr_db/ssim/lpips stay None",
                UserWarning,
                stacklevel=4,
            )
        result = self.engine.predict(
            req.frame, req.actions, spec=req.spec.slug, num_steps=req.num_steps, guidance=req.guidance, seed=req.seed
        )
        rollout_id = new_id("rollout")
        (mp4,) = self._finish(result, rollout_id)
        spec = result.spec
        rollout = Rollout(
            id=rollout_id,
            model=spec.slug,
            created=int(time.time()),
            num_frames=result.num_frames,
            resolution=spec.resolution,
            engine_wall_ms=result.wall_ms,
            cost_usd=result.cost_usd(),
            seed=req.seed,
            customer_id=LOCAL_CUSTOMER_ID,
            _mp4_cache=mp4,
        )
        self._remember(req.idempotency_key, rollout)
        return rollout

    def rollout_batch(self, req: BatchRequest) -> BatchRollout:
        hit = self._remembered(req.idempotency_key)
        if hit is not None:
            return hit
        result = self.engine.predict_batch(
            req.frame, req.actions, spec=req.spec.slug, num_steps=req.num_steps, guidance=req.guidance, seed=req.seed
        )
        request_id = new_id("batch")
        mp4s = self._finish(result, request_id)
        spec = result.spec
        children = [
            Rollout._from_batch_mp4(
                mp4,
                request_id=request_id,
                engine_wall_ms=result.wall_ms,
                model=spec.slug,
                num_frames=result.num_frames,
                resolution=spec.resolution,
                seed=req.seed,
                customer_id=LOCAL_CUSTOMER_ID,
            )
            for mp4 in mp4s
        ]
        batch = BatchRollout(
            rollouts=children,
            request_id=request_id,
            batch_size=result.k,
            engine_wall_ms=result.wall_ms,
            estimated_charge_usd=result.cost_usd(),
            customer_id=LOCAL_CUSTOMER_ID,
        )
        self._remember(req.idempotency_key, batch)
        return batch

    def predict_bytes(
        self,
        *,
        frame_bytes: bytes,
        actions_bytes: bytes,
        seed: int = 0,
        num_steps: int | None = None,
        guidance: float | None = None,
        spec: str | None = None,
        idempotency_key: str | None = None,
    ) -> PredictResponse:
        hit = self._remembered(idempotency_key)
        if hit is not None:
            return hit
        s = self.engine.spec(spec)
        frame = decode_image_bytes(frame_bytes, what="frame")
        actions = actions_to_array(actions_bytes, action_dim=s.action_dim, chunk_size=s.chunk_size)
        result = self.engine.predict(frame, actions, spec=s.slug, num_steps=num_steps, guidance=guidance, seed=seed)
        request_id = new_id("req")
        (mp4,) = self._finish(result, request_id)
        response = PredictResponse(
            frames=result.frames[0],
            request_id=request_id,
            engine_wall_ms=result.wall_ms,
            estimated_charge_usd=result.cost_usd(),
            customer_id=LOCAL_CUSTOMER_ID,
            mp4_bytes=mp4,
        )
        self._remember(idempotency_key, response)
        return response

    def predict_batch_bytes(
        self,
        *,
        frame_bytes: bytes,
        actions_bytes_list: list[bytes],
        seed: int = 0,
        num_steps: int | None = None,
        guidance: float | None = None,
        spec: str | None = None,
        idempotency_key: str | None = None,
    ) -> BatchResponse:
        import numpy as np

        hit = self._remembered(idempotency_key)
        if hit is not None:
            return hit
        s = self.engine.spec(spec)
        frame = decode_image_bytes(frame_bytes, what="frame")
        if not actions_bytes_list:
            raise InputValidationError("actions list is empty; need at least one entry.")
        arrays = [
            actions_to_array(b, action_dim=s.action_dim, chunk_size=s.chunk_size, what=f"actions[{i}]")
            for i, b in enumerate(actions_bytes_list)
        ]
        if len({a.shape[0] for a in arrays}) > 1:
            raise InputValidationError(
                f"actions for predict_batch must all have the same length T; got {[a.shape[0] for a in arrays]}"
            )
        result = self.engine.predict_batch(
            frame, np.stack(arrays), spec=s.slug, num_steps=num_steps, guidance=guidance, seed=seed
        )
        request_id = new_id("batch")
        mp4s = self._finish(result, request_id)
        children = [
            PredictResponse(
                frames=result.frames[k],
                request_id=request_id,
                engine_wall_ms=result.wall_ms,
                estimated_charge_usd=0.0,
                customer_id=LOCAL_CUSTOMER_ID,
                mp4_bytes=mp4,
            )
            for k, mp4 in enumerate(mp4s)
        ]
        response = BatchResponse(
            rollouts=children,
            request_id=request_id,
            batch_size=result.k,
            engine_wall_ms=result.wall_ms,
            estimated_charge_usd=result.cost_usd(),
            customer_id=LOCAL_CUSTOMER_ID,
        )
        self._remember(idempotency_key, response)
        return response

    # ----------------------------------------------------------------- info

    def specs(self) -> dict[str, Any]:
        return {
            "object": "list",
            "specs": [self._entry(slug) for slug in self.engine.slugs],
            "default_spec": self.engine.default_slug,
            "default_price_usd_per_frame": self.engine.spec().price_per_frame_usd,
        }

    def status(self) -> dict[str, Any]:
        return {
            "object": "status",
            "transport": "local",
            "uptime_s": round(time.time() - self._started, 3),
            "default_model": self.engine.default_slug,
            "models": [
                {"slug": slug, "active": self.engine.is_active(slug), "loaded": self.engine.is_loaded(slug)}
                for slug in self.engine.slugs
            ],
            "latency_24h": self._latency.summary(),
        }

    def healthz(self) -> dict[str, Any]:
        return {"ok": True, "transport": "local"}

    def rollout_wall_s(self, spec: str | None) -> float | None:
        return self.engine.rollout_wall_s(spec)

    # ----------------------------------------------------------------- billing

    def _no_ledger(self) -> ServerError:
        return ServerError(
            "the embedded engine has no credits ledger; billing needs a server (dream serve) "
            "and a Client(base_url=...)",
            status_code=503,
        )

    def billing_balance(self) -> dict[str, Any]:
        raise self._no_ledger()

    def billing_transactions(self, limit: int) -> dict[str, Any]:
        raise self._no_ledger()

    def billing_topup(self, amount_cents: int) -> dict[str, Any]:
        raise self._no_ledger()
