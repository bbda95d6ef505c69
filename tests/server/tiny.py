"""A tiny deterministic spec and runner for server tests that need control over the engine.

``tiny-16``: 16×16 frames, 2-D actions, chunk 1, $0.0001/frame. Each step shifts the
previous frame by the action (in pixels, rounded) and brightens it by 1, so outputs are
cheap, deterministic and depend on every input. An action value of exactly 666 makes the
runner raise (engine-failure injection); `TinyRunner.load_gate`, when set, makes loading
wait on it (readiness tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from dream.engine import runner as runner_mod
from dream.engine import specs as spec_registry
from dream.engine.runner import Runner, WeightsStatus
from dream.engine.specs import EngineSpec

FAIL_VALUE = 666.0

TINY = EngineSpec(
    slug="tiny-16",
    name="Tiny 16 (tests)",
    runner="tiny-test",
    action_dim=2,
    chunk_size=1,
    canonical_T=8,
    resolution=(16, 16),
    fps=10,
    default_num_steps=0,
    default_guidance=0.0,
    price_per_frame_usd=0.0001,
    provider="tests",
    category="Test",
    summary="deterministic test spec",
)
# Variants: a chunked spec (T must be a multiple of 4) and a slug with a slash (wire-protocol §6.2).
TINY_C4 = dataclasses.replace(TINY, slug="tiny-16-c4", chunk_size=4)
TINY_SLASH = dataclasses.replace(TINY, slug="tests/tiny-16")


class TinyRunner(Runner):
    batch_invariant = True  # each rollout is computed on its own
    load_gate: threading.Event | None = None
    calls: list[int] = []  # K of every rollout call (engine work happened)
    on_chunk: Callable[[int], None] | None = None  # called (on the engine thread) before streamed chunk i

    @classmethod
    def weights_status(cls, spec: EngineSpec, weights: str | None = None) -> WeightsStatus:
        return WeightsStatus(True, location="(none needed)")

    def load(self) -> None:
        gate = type(self).load_gate
        if gate is not None:
            gate.wait(30)
        # A slow model in a server subprocess (the warm-up scenario of the differential test).
        time.sleep(float(os.environ.get("TINY_LOAD_DELAY_S", "0")))

    def rollout(
        self, frames: np.ndarray, actions: np.ndarray, *, seeds: Sequence[int], num_steps: int | None, guidance: float | None
    ) -> np.ndarray:
        TinyRunner.calls.append(int(actions.shape[0]))
        if np.any(actions == FAIL_VALUE):
            raise RuntimeError("injected engine failure")
        K, T, _ = actions.shape
        out = np.empty((K, T + 1, *frames.shape[1:]), np.uint8)
        for k in range(K):
            cur = frames[k if frames.shape[0] == K else 0].astype(np.int16)
            out[k, 0] = cur
            for t in range(T):
                dy, dx = (round(float(v)) % 16 for v in actions[k, t])
                cur = np.clip(np.roll(cur, (dy, dx), axis=(0, 1)) + 1, 0, 255)
                out[k, t + 1] = cur
        return out

    def rollout_chunks(
        self, frames: np.ndarray, actions: np.ndarray, *, seeds: Sequence[int], num_steps: int | None,
        guidance: float | None, chunk_actions: int,
    ) -> Iterator[np.ndarray]:
        out = self.rollout(frames, actions, seeds=seeds, num_steps=num_steps, guidance=guidance)
        yield out[:, :1]
        for i, t in enumerate(range(1, out.shape[1], chunk_actions)):
            if TinyRunner.on_chunk is not None:
                TinyRunner.on_chunk(i)
            yield out[:, t : t + chunk_actions]


def install() -> EngineSpec:
    """Register the tiny specs and their runner family (for a whole process: the test server)."""
    for spec in (TINY, TINY_C4, TINY_SLASH):
        spec_registry.register(spec)
    runner_mod.RUNNERS["tiny-test"] = "tests.server.tiny:TinyRunner"
    return TINY


def uninstall() -> None:
    """Take the tiny specs out of the catalog again, so other test folders never see them.

    The runner family stays mapped: engines built meanwhile keep their spec objects and
    load their runner through it.
    """
    for spec in (TINY, TINY_C4, TINY_SLASH):
        spec_registry._REGISTRY.pop(spec.slug, None)  # no public unregister; test-only


@contextlib.contextmanager
def installed() -> Iterator[EngineSpec]:
    install()
    try:
        yield TINY
    finally:
        uninstall()
