"""The transport contract: what a Client needs from "an engine somewhere".

`Client` picks one transport at construction (httpx-style): `LocalTransport` runs the
engine in this process, `HttpTransport` speaks wire-protocol.md to a server. Both take
the same requests and return the same result types and errors, so everything above
this layer (handles, bulk runs, sessions) is written once.

Inputs arrive already validated: the handle turns user forms into arrays with
`dream.inputs` (same checks and messages for both transports). A transport only moves
them: the local one hands arrays to the engine, the HTTP one encodes them (or forwards
the caller's original image bytes) and maps responses back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from dream.rollout import BatchRollout, Rollout
    from dream.types import BatchResponse, ModelSpec, PredictResponse


@dataclass(frozen=True)
class RolloutRequest:
    """One typed rollout (ModelHandle.predict), inputs validated against the spec."""

    spec: ModelSpec
    frame: np.ndarray  # uint8 (H, W, 3), not resized (the engine fits it)
    frame_bytes: bytes | None  # the caller's original, valid image bytes, sent as-is over HTTP
    actions: np.ndarray  # float32 (T, action_dim)
    seed: int = 0
    num_steps: int | None = None
    guidance: float | None = None
    score: bool = False
    mode: str = "sync"
    idempotency_key: str | None = None
    webhook_url: str | None = None
    timeout_s: float | None = None


@dataclass(frozen=True)
class BatchRequest:
    """K candidates from one start frame (ModelHandle.predict_batch)."""

    spec: ModelSpec
    frame: np.ndarray  # uint8 (H, W, 3)
    frame_bytes: bytes | None
    actions: np.ndarray  # float32 (K, T, action_dim)
    seed: int = 0
    num_steps: int | None = None
    guidance: float | None = None
    idempotency_key: str | None = None


class Transport(ABC):
    """How a Client reaches an engine. Methods raise `dream.errors` types only."""

    kind: str = ""  # "local" or "http"
    base_url: str = ""  # "" for the embedded engine

    # ----------------------------------------------------------------- catalog
    @abstractmethod
    def list_models(self) -> list[dict[str, Any]]:
        """Wire ModelEntry dicts (wire-protocol §6.3), one per servable model."""

    @abstractmethod
    def get_model(self, slug: str) -> dict[str, Any]:
        """One ModelEntry; `ModelNotFoundError` for an unknown slug."""

    # ----------------------------------------------------------------- rollouts
    @abstractmethod
    def rollout(self, req: RolloutRequest) -> Rollout:
        """Run one typed rollout."""

    @abstractmethod
    def rollout_batch(self, req: BatchRequest) -> BatchRollout:
        """Run K fused candidates from one start frame."""

    @abstractmethod
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
        """Byte-level rollout (legacy /v1/predict). `spec` None → the default model."""

    @abstractmethod
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
        """Byte-level K-candidate batch (legacy /v1/predict/batch)."""

    # ----------------------------------------------------------------- info
    @abstractmethod
    def specs(self) -> dict[str, Any]:
        """GET /v1/specs shape: {"specs": [...], "default_price_usd_per_frame": ...}."""

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """Models, uptime and rolling latency percentiles."""

    @abstractmethod
    def healthz(self) -> dict[str, Any]:
        """Liveness."""

    def rollout_wall_s(self, spec: str | None) -> float | None:
        """Measured wall of one canonical rollout of `spec`, when known (for estimates)."""
        return None

    # ----------------------------------------------------------------- billing
    @abstractmethod
    def billing_balance(self) -> dict[str, Any]: ...

    @abstractmethod
    def billing_transactions(self, limit: int) -> dict[str, Any]: ...

    @abstractmethod
    def billing_topup(self, amount_cents: int) -> dict[str, Any]: ...

    # ----------------------------------------------------------------- lifecycle
    def close(self) -> None:  # noqa: B027 - optional hook: most transports hold nothing to release
        """Release connections or engines held by this transport."""
