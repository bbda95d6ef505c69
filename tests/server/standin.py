"""A stand-in for the built-in model while its trained weights are not shipped yet.

``pusht-96-standin`` is the ``pusht-96`` spec on the real `PushTWorldModel` architecture
with seeded random weights: the same tensors, the same compute per frame, meaningless
pictures. Server benchmarks use it (``--tiny`` mode) so their latency and batching
figures reflect the built-in model's real cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from dream.engine import runner as runner_mod
from dream.engine import specs as spec_registry
from dream.engine.runner import Runner, WeightsStatus
from dream.engine.specs import EngineSpec

SLUG = "pusht-96-standin"


class PushTStandInRunner(Runner):
    @classmethod
    def weights_status(cls, spec: EngineSpec, weights: str | None = None) -> WeightsStatus:
        return WeightsStatus(True, location="random init (stand-in)")

    def load(self) -> None:
        import torch

        from dream.engine.models.pusht.model import PushTConfig, PushTWorldModel

        torch.manual_seed(0)
        model = PushTWorldModel(PushTConfig()).eval().to(self.device)
        if self.device == "cpu":
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    def rollout(
        self, frames: np.ndarray, actions: np.ndarray, *, seeds: Sequence[int], num_steps: int | None,
        guidance: float | None,
    ) -> np.ndarray:
        import torch

        k = actions.shape[0]
        with torch.inference_mode():
            start = torch.from_numpy(np.array(frames, copy=True)).permute(0, 3, 1, 2).float().div_(255.0)
            if start.shape[0] != k:
                start = start.expand(k, -1, -1, -1)
            start = start.contiguous(memory_format=torch.channels_last)
            acts = torch.from_numpy(np.clip(np.asarray(actions, np.float32), 0.0, 512.0))
            out = self.model.rollout(start, acts)
            out = out.mul(255.0).round_().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
        out[:, 0] = frames
        return out


def install() -> EngineSpec:
    spec = dataclasses.replace(spec_registry.get("pusht-96"), slug=SLUG, runner="pusht-standin")
    spec_registry.register(spec)
    runner_mod.RUNNERS["pusht-standin"] = "tests.server.standin:PushTStandInRunner"
    return spec
