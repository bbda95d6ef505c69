"""Runner for the built-in pusht-96 world model (deterministic, CPU-friendly)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dream.engine.runner import Runner, WeightsStatus
from dream.engine.specs import EngineSpec
from dream.errors import EngineError, WeightsNotFoundError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from dream.engine.models.pusht.model import PushTWorldModel

__all__ = ["WEIGHTS_DIR", "PushTRunner"]

# Shipped weights: <slug>.safetensors (pusht-96, and pusht-96-noaction used by `dream eval`).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class PushTRunner(Runner):
    """Rolls out `PushTWorldModel` open loop, one frame per action.

    Inputs (validated by the engine): start frames uint8 (1 or K, 96, 96, 3) and actions
    float32 (K, T, 2), each action being the agent's target (x, y) in gym-pusht's
    512×512 workspace. Actions outside [0, 512] are clipped to the workspace (the
    simulator's action space) before the model sees them.

    The model is deterministic: `seeds`, `num_steps` and `guidance` do not change its
    output (the spec says so, and the engine warns callers who pass them). The same
    inputs, batch size and torch thread count give bit-identical frames on one machine,
    across runs and processes: every op is a deterministic CPU kernel and each step is
    rounded to uint8 levels. `dtype` is ignored: the model runs in float32.

    Weights: an explicit ``weights`` file if given, else
    ``WEIGHTS_DIR / f"{spec.slug}.safetensors"``; loaded strictly
    (`dream.engine.models.pusht.loader`).
    """

    def __init__(
        self,
        spec: EngineSpec,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__(spec, device=device, dtype=dtype, weights=weights)
        self.model: PushTWorldModel | None = None

    @classmethod
    def weights_path(cls, spec: EngineSpec, weights: str | None = None) -> Path:
        return Path(weights) if weights else WEIGHTS_DIR / f"{spec.slug}.safetensors"

    @classmethod
    def weights_status(cls, spec: EngineSpec, weights: str | None = None) -> WeightsStatus:
        path = cls.weights_path(spec, weights)
        if path.is_file():
            return WeightsStatus(available=True, location=str(path))
        if weights:
            message = f"weights file {str(path)!r} given for {spec.slug!r} does not exist"
        else:
            message = (
                f"weights for {spec.slug!r} are missing: expected {path}, which ships inside the dream-engine "
                "package; reinstall it, or rebuild the file with training/export.py"
            )
        return WeightsStatus(available=False, message=message)

    def load(self) -> None:
        import torch

        from dream.engine.models.pusht.loader import load_pusht_model

        status = self.weights_status(self.spec, self.weights)
        if not status.available:
            raise WeightsNotFoundError(status.message)
        model = load_pusht_model(status.location, device=self.device)
        if model.config.image_size != self.spec.resolution[0] or self.spec.action_dim != 2:
            raise EngineError(
                f"{status.location} is a {model.config.image_size}² model; spec {self.spec.slug!r} expects "
                f"{self.spec.resolution} frames and 2-d actions"
            )
        if self.device == "cpu":
            # oneDNN's direct convolutions run ~1.5× faster on NHWC tensors here.
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    def rollout(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        *,
        seeds: Sequence[int],
        num_steps: int | None,
        guidance: float | None,
    ) -> np.ndarray:
        """Predict K rollouts in one batched computation; see `Runner.rollout`.

        Returns uint8 (K, T + 1, 96, 96, 3) whose frame 0 is the start frame, bit for bit.
        """
        import torch

        if self.model is None:
            raise EngineError(f"{self.spec.slug}: rollout() before load()")
        with torch.inference_mode():
            start, acts = self._tensors(frames, actions)
            out = self.model.rollout(start, acts)  # (K, T+1, 3, H, W) on uint8 levels
            out = _to_uint8(out)
        out[:, 0] = frames  # exact already (frame/255*255 rounds back); make it a guarantee
        return out

    def _tensors(self, frames: np.ndarray, actions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Start frames (K, 3, H, W) in [0, 1] and clipped actions (K, T, 2) on the device."""
        import numpy as np
        import torch

        k = actions.shape[0]
        # (1|K, H, W, 3) uint8, copied: the caller's array may be read-only.
        start = torch.from_numpy(np.array(frames, dtype=np.uint8)).to(self.device)
        start = start.permute(0, 3, 1, 2).float().div_(255.0)  # (1|K, 3, H, W)
        if start.shape[0] != k:
            start = start.expand(k, -1, -1, -1)
        if self.device == "cpu":
            start = start.contiguous(memory_format=torch.channels_last)
        limit = self.model.config.workspace_size
        acts = torch.from_numpy(np.clip(np.asarray(actions, np.float32), 0.0, limit)).to(self.device)
        return start, acts

    def rollout_chunks(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        *,
        seeds: Sequence[int],
        num_steps: int | None,
        guidance: float | None,
        chunk_actions: int,
    ) -> Iterator[np.ndarray]:
        """`rollout` stepped `chunk_actions` frames at a time: memory holds one chunk.

        The same steps and the same rounding as `rollout`, so the chunks concatenate to
        its frames bit for bit. Inference mode is entered per chunk, never held across a
        yield (other work runs on the model thread between chunks).
        """
        import numpy as np
        import torch

        if self.model is None:
            raise EngineError(f"{self.spec.slug}: rollout_chunks() before load()")
        k, T = actions.shape[0], actions.shape[1]
        with torch.inference_mode():
            start, acts = self._tensors(frames, actions)
            state = self.model.initial_state(start)
        yield np.array(np.broadcast_to(frames, (k, *frames.shape[1:]))[:, None], dtype=np.uint8)
        for t0 in range(0, T, max(1, chunk_actions)):
            with torch.inference_mode():
                steps = []
                for t in range(t0, min(T, t0 + chunk_actions)):
                    state, _ = self.model.step(state, acts[:, t])
                    steps.append(state.frame)
                chunk = _to_uint8(torch.stack(steps, dim=1))
            yield chunk


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(K, n, 3, H, W) floats on uint8 levels → uint8 (K, n, H, W, 3) numpy."""
    import torch

    return frames.mul(255.0).round_().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
