"""Models and their handles: the typed single-rollout and K-candidate surface.

`client.models.get(slug)` returns a `ModelHandle`; its `predict` and `predict_batch`
accept every input form of the product docs, validate them against the model's
contract (action_dim, chunk_size) with `dream.inputs`, and hand canonical arrays to
the client's transport. The same checks run whichever transport is underneath.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dream.client.transport import BatchRequest, RolloutRequest
from dream.errors import InputValidationError, ModelNotActiveError
from dream.inputs import MAX_FRAME_BYTES, actions_batch_to_array, actions_to_array, frame_to_array
from dream.types import ModelSpec

if TYPE_CHECKING:
    import numpy as np

    from dream.client.async_client import AsyncClient
    from dream.client.sync_client import Client
    from dream.rollout import BatchRollout, Rollout

__all__ = ["AsyncModelHandle", "AsyncModels", "ModelHandle", "ModelNotActiveError", "Models"]


def _frame_and_bytes(value: Any) -> tuple[np.ndarray, bytes | None]:
    """Validated uint8 (H, W, 3) plus the caller's original image bytes when it gave bytes or a path."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return frame_to_array(value), bytes(value)
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.is_file():
            raise InputValidationError(f"start_frame path does not exist: {str(path)!r}")
        if path.stat().st_size > MAX_FRAME_BYTES:
            raise InputValidationError(f"start_frame file {str(path)!r} is over the {MAX_FRAME_BYTES}-byte limit")
        data = path.read_bytes()
        return frame_to_array(data, what=f"start_frame {str(path)!r}"), data
    return frame_to_array(value), None


class _HandleBase:
    """What sync and async handles share: properties, checks and request building."""

    _kind = "ModelHandle"

    def __init__(self, *, spec: ModelSpec, client: Any) -> None:
        self._spec = spec
        self._client = client

    @property
    def slug(self) -> str:
        return self._spec.slug

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def active(self) -> bool:
        return self._spec.active

    @property
    def action_dim(self) -> int:
        return self._spec.action_dim

    @property
    def resolution(self) -> tuple[int, int]:
        return self._spec.resolution

    @property
    def chunk_size(self) -> int:
        return self._spec.chunk_size

    @property
    def model_size(self) -> str:
        return self._spec.model_size

    def __repr__(self) -> str:
        return f"{self._kind}(slug={self.slug!r}, active={self.active})"

    def _require_active(self) -> None:
        if self._spec.active:
            return
        where = self._client.base_url or "the embedded engine"
        reason = f" {self._spec.status_message}" if self._spec.status_message else ""
        raise ModelNotActiveError(
            f"model {self.slug!r} is not active on {where}.{reason} "
            "See client.models.list() for the models it serves."
        )

    def _checks(self) -> dict[str, int | None]:
        return {
            "action_dim": self._spec.action_dim if self._spec.action_dim > 0 else None,
            "chunk_size": self._spec.chunk_size if self._spec.chunk_size > 0 else None,
        }

    def _warn_absolute(self, actions: np.ndarray) -> None:
        if self._spec.arch.embodiment:
            from dream.actions import warn_if_absolute_gr1

            warn_if_absolute_gr1(self._spec.arch.embodiment, actions)

    def _rollout_request(
        self,
        start_frame: Any,
        actions: Any,
        *,
        seed: int,
        num_steps: int | None,
        guidance: float | None,
        score: bool,
        mode: str,
        idempotency_key: str | None,
        webhook_url: str | None,
        timeout_s: float | None,
        frame_bytes: bytes | None,
        actions_bytes: bytes | None,
        frame_path: str | Path | None,
        actions_path: str | Path | None,
    ) -> RolloutRequest:
        self._require_active()
        if start_frame is not None and (frame_bytes is not None or frame_path is not None):
            raise InputValidationError(
                "pass either start_frame= or the byte-level frame_bytes=/frame_path=, not both"
            )
        if actions is not None and (actions_bytes is not None or actions_path is not None):
            raise InputValidationError(
                "pass either actions= or the byte-level actions_bytes=/actions_path=, not both"
            )
        if frame_path is not None or actions_path is not None:
            # ⚠ sdk-surface §20.2: 0.5.0 says "removed in 0.5.0" yet keeps them; we keep them too.
            warnings.warn(
                "frame_path= and actions_path= are deprecated; pass the path as start_frame= / actions=",
                DeprecationWarning,
                stacklevel=3,
            )
        frame_value = start_frame if start_frame is not None else frame_bytes if frame_bytes is not None else frame_path
        if frame_value is None:
            raise InputValidationError(
                "start_frame is required. Pass an image array, PIL image, PNG/JPEG bytes or a path."
            )
        actions_value = actions if actions is not None else actions_bytes if actions_bytes is not None else actions_path
        if actions_value is None:
            raise InputValidationError(
                "actions is required. Pass a (T, action_dim) float32 array, nested list, .npy bytes or a path."
            )
        frame, original = _frame_and_bytes(frame_value)
        acts = actions_to_array(actions_value, **self._checks())
        self._warn_absolute(acts)
        return RolloutRequest(
            spec=self._spec,
            frame=frame,
            frame_bytes=original,
            actions=acts,
            seed=seed,
            num_steps=num_steps,
            guidance=guidance,
            score=score,
            mode=mode,
            idempotency_key=idempotency_key,
            webhook_url=webhook_url,
            timeout_s=timeout_s,
        )

    def _batch_request(
        self, start_frame: Any, actions: Any, *, seed: int, num_steps: int | None, guidance: float | None
    ) -> BatchRequest:
        self._require_active()
        if start_frame is None or actions is None:
            raise InputValidationError("predict_batch requires both start_frame= and actions=")
        frame, original = _frame_and_bytes(start_frame)
        acts = actions_batch_to_array(actions, **self._checks())
        self._warn_absolute(acts)
        return BatchRequest(
            spec=self._spec, frame=frame, frame_bytes=original, actions=acts, seed=seed, num_steps=num_steps,
            guidance=guidance,
        )


class ModelHandle(_HandleBase):
    """A model you can run: its contract as properties, plus predict and predict_batch."""

    def __init__(self, *, spec: ModelSpec, client: Client) -> None:
        super().__init__(spec=spec, client=client)

    def predict(
        self,
        start_frame: Any = None,
        actions: Any = None,
        *,
        seed: int = 0,
        num_steps: int | None = None,
        guidance: float | None = None,
        score: bool = False,
        mode: Literal["sync", "async"] = "sync",
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        timeout_s: float = 300.0,
        frame_bytes: bytes | None = None,
        actions_bytes: bytes | None = None,
        frame_path: str | Path | None = None,
        actions_path: str | Path | None = None,
    ) -> Rollout:
        """Run one rollout from `start_frame` driven by `actions` (T, action_dim).

        Raises:
            ModelNotActiveError: the model is not served here (nothing is run or sent).
            InputValidationError: a malformed frame or actions, or both input styles mixed.
            DreamError subclasses: engine or server failures (see dream.errors).
        """
        req = self._rollout_request(
            start_frame, actions, seed=seed, num_steps=num_steps, guidance=guidance, score=score, mode=mode,
            idempotency_key=idempotency_key, webhook_url=webhook_url, timeout_s=timeout_s, frame_bytes=frame_bytes,
            actions_bytes=actions_bytes, frame_path=frame_path, actions_path=actions_path,
        )
        return self._client._transport.rollout(req)

    def predict_batch(
        self,
        *,
        start_frame: Any = None,
        actions: Any = None,
        num_steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
    ) -> BatchRollout:
        """Run K candidate action sequences (K, T, action_dim) from one start frame, fused."""
        req = self._batch_request(start_frame, actions, seed=seed, num_steps=num_steps, guidance=guidance)
        return self._client._transport.rollout_batch(req)


class AsyncModelHandle(_HandleBase):
    """Async twin of `ModelHandle`."""

    _kind = "AsyncModelHandle"

    def __init__(self, *, spec: ModelSpec, client: AsyncClient) -> None:
        super().__init__(spec=spec, client=client)

    async def predict(
        self,
        start_frame: Any = None,
        actions: Any = None,
        *,
        seed: int = 0,
        num_steps: int | None = None,
        guidance: float | None = None,
        score: bool = False,
        mode: Literal["sync", "async"] = "sync",
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        timeout_s: float = 300.0,
        frame_bytes: bytes | None = None,
        actions_bytes: bytes | None = None,
        frame_path: str | Path | None = None,
        actions_path: str | Path | None = None,
    ) -> Rollout:
        """Async `ModelHandle.predict` (same inputs, checks and result)."""
        req = self._rollout_request(
            start_frame, actions, seed=seed, num_steps=num_steps, guidance=guidance, score=score, mode=mode,
            idempotency_key=idempotency_key, webhook_url=webhook_url, timeout_s=timeout_s, frame_bytes=frame_bytes,
            actions_bytes=actions_bytes, frame_path=frame_path, actions_path=actions_path,
        )
        return await self._client._transport.rollout(req)

    async def predict_batch(
        self,
        *,
        start_frame: Any = None,
        actions: Any = None,
        num_steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
    ) -> BatchRollout:
        """Async `ModelHandle.predict_batch`."""
        req = self._batch_request(start_frame, actions, seed=seed, num_steps=num_steps, guidance=guidance)
        return await self._client._transport.rollout_batch(req)


class Models:
    """The models a client can reach: `list()` and `get(slug)`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> list[ModelHandle]:
        return [ModelHandle(spec=ModelSpec.from_dict(e), client=self._client) for e in self._client._transport.list_models()]

    def get(self, slug: str) -> ModelHandle:
        """The handle of `slug`; `ModelNotFoundError` if this engine or server does not know it."""
        entry = self._client._transport.get_model(slug)
        return ModelHandle(spec=ModelSpec.from_dict(entry), client=self._client)


class AsyncModels:
    """Async twin of `Models`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> list[AsyncModelHandle]:
        entries = await self._client._transport.list_models()
        return [AsyncModelHandle(spec=ModelSpec.from_dict(e), client=self._client) for e in entries]

    async def get(self, slug: str) -> AsyncModelHandle:
        entry = await self._client._transport.get_model(slug)
        return AsyncModelHandle(spec=ModelSpec.from_dict(entry), client=self._client)
