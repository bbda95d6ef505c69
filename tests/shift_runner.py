"""A tiny runner family for engine tests: frames translate by the actions, noise from the seed.

Real arithmetic on the real Runner contract (no torch), so engine behaviour (validation,
seeding, fusing, warnings) is tested apart from any trained model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dream.engine.runner import Runner, WeightsStatus
from dream.engine.specs import EngineSpec


class ShiftRunner(Runner):
    batch_invariant = True  # each rollout is computed on its own
    calls: list[tuple[int, int]] = []

    @classmethod
    def weights_status(cls, spec: EngineSpec, weights: str | None = None) -> WeightsStatus:
        if spec.slug.endswith("-noweights"):
            return WeightsStatus(False, f"put {spec.slug}.bin in DREAM_WEIGHTS_DIR")
        return WeightsStatus(True, location="builtin")

    def load(self) -> None:
        self.loaded = True

    def rollout(self, frames, actions, *, seeds: Sequence[int], num_steps, guidance) -> np.ndarray:
        k, t, _ = actions.shape
        ShiftRunner.calls.append((k, t))
        frames = np.broadcast_to(frames, (k, *frames.shape[1:]))
        out = np.empty((k, t + 1, *frames.shape[1:]), np.uint8)
        for i in range(k):
            noise = np.random.default_rng(seeds[i]).integers(0, 3, frames.shape[1:], dtype=np.uint8)
            out[i, 0] = frames[i]
            for step in range(t):
                dy, dx = np.round(actions[i, step, :2]).astype(int)
                out[i, step + 1] = np.roll(out[i, step], (dy, dx), axis=(0, 1)) // 2 * 2 + (
                    noise if self.spec.uses_seed else 0)
        return out


def shift_spec(slug: str = "shift-test", *, uses_seed: bool = False, chunk_size: int = 1) -> EngineSpec:
    return EngineSpec(
        slug=slug, name="shift", runner="shift-test", action_dim=2, chunk_size=chunk_size, canonical_T=8,
        resolution=(16, 16), fps=10, default_num_steps=4 if uses_seed else 0, default_guidance=0.0,
        price_per_frame_usd=0.001, uses_num_steps=uses_seed, uses_guidance=uses_seed, uses_seed=uses_seed,
    )
