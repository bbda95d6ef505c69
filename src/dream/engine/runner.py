"""The contract between the engine and a model family.

A runner turns validated arrays into frames: it owns its modules, its weights and its
sampler, and knows nothing of HTTP, billing, files or mp4. The engine validates inputs
(shapes, dtype, resolution) before a runner ever sees them.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dream.engine.specs import EngineSpec

if TYPE_CHECKING:
    import numpy as np

# runner family -> "module:Class", imported only when a spec of that family is loaded.
RUNNERS: dict[str, str] = {
    "pusht": "dream.engine.models.pusht.runner:PushTRunner",
    "dreamdojo": "dream.engine.models.dreamdojo.runner:DreamDojoRunner",
}


@dataclass(frozen=True)
class WeightsStatus:
    """Whether a spec's weights can be loaded here, and if not, what to do about it."""

    available: bool
    message: str = ""  # for missing weights: exactly what to fetch and where to put it
    location: str = ""  # where the weights were found (file or folder)


class Runner(ABC):
    """One loaded model of one family.

    Lifecycle: ``weights_status`` (cheap, no loading) → ``__init__`` → ``load`` (weights
    onto the device) → ``warmup`` → ``rollout`` many times, possibly from several threads
    one at a time (the engine serialises calls).

    ``batch_invariant``: a runner sets it True when each rollout's output bytes do not
    depend on what else shares its `rollout` call (nor on the torch thread count). Only
    then do bulk runs and the server fuse independent requests into one call by default:
    fused, every row stays byte-identical to its own single predict.
    """

    batch_invariant: bool = False
    # False for a family that never touches torch: the engine then neither imports torch
    # nor sets its threads when loading it (a second of start-up in every fresh process).
    uses_torch: bool = True

    def __init__(
        self,
        spec: EngineSpec,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        weights: str | None = None,
    ) -> None:
        self.spec = spec
        self.device = device
        self.dtype = dtype  # None: the family's default for the device (e.g. bf16 on CUDA)
        self.weights = weights  # explicit weights file/folder; None: the family's search order

    @classmethod
    @abstractmethod
    def weights_status(cls, spec: EngineSpec, weights: str | None = None) -> WeightsStatus:
        """Say whether weights for `spec` are present (at `weights`, if given), without loading them."""

    @abstractmethod
    def load(self) -> None:
        """Load weights; raise `dream.errors.WeightsNotFoundError` naming what is missing."""

    def warmup(self) -> None:
        """Run a small rollout so the first real request pays no one-time costs."""
        import numpy as np

        h, w = self.spec.resolution
        frame = np.zeros((1, h, w, 3), np.uint8)
        actions = np.zeros((1, self.spec.chunk_size, self.spec.action_dim), np.float32)
        self.rollout(frame, actions, seeds=[0], num_steps=self.spec.default_num_steps or None, guidance=None)

    @abstractmethod
    def rollout(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        *,
        seeds: Sequence[int],
        num_steps: int | None,
        guidance: float | None,
    ) -> np.ndarray:
        """Predict K rollouts in one fused computation.

        frames:  uint8 (1 or K, H, W, 3) at the spec's resolution; a leading 1 means all K
                 rollouts share one start frame (encode it once).
        actions: float32 (K, T, action_dim), T a positive multiple of chunk_size, finite.
        seeds:   K ints; rollout k's noise comes from its own generator seeded by seeds[k],
                 so its output does not depend on what else shares the batch.
        num_steps / guidance: None means the spec's default.
        Returns uint8 (K, T + 1, H, W, 3); frame 0 of each rollout is its start frame.
        """

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
        """`rollout`, yielded as it is computed: uint8 (K, n, H, W, 3) chunks whose
        concatenation along axis 1 equals what `rollout` returns.

        The first chunk is frame 0 alone; each later one covers up to `chunk_actions`
        actions (a multiple of the spec's chunk_size). The engine runs every ``next`` on
        its model thread and may run other work between two of them. This default
        computes the whole rollout before yielding it; families that can step override it
        so that memory holds one chunk, not the rollout.
        """
        out = self.rollout(frames, actions, seeds=seeds, num_steps=num_steps, guidance=guidance)
        yield out[:, :1]
        yield out[:, 1:]

    # ------------------------------------------------------------------ stepping
    # K rollouts carried forward a few actions at a time (closed loops: sessions, a policy
    # acting on what it sees, a planner that reads only some frames). A family that can
    # carry its scene from one call to the next overrides `begin` / `advance` (and sets
    # ``steps_incrementally``); the default below conditions each call on the last frame.

    steps_incrementally: bool = False

    def begin(
        self, frames: np.ndarray, k: int, *, seeds: Sequence[int], num_steps: int | None, guidance: float | None
    ) -> Any:
        """Start K rollouts from uint8 start frames (1 or K, H, W, 3) at the spec's resolution.

        Returns an opaque state for `advance`; nothing is drawn yet (frame 0 of each
        rollout is its start frame).
        """
        import numpy as np

        starts = np.broadcast_to(frames, (k, *frames.shape[1:])).copy()
        return _LastFrames(starts, list(seeds), num_steps, guidance)

    def advance(self, state: Any, actions: np.ndarray, *, draw: bool | Sequence[int] = True) -> np.ndarray | None:
        """Apply the next n actions (K, n, action_dim) to every rollout of `state`.

        draw: True for all n new frames, a sequence of indices in 0..n-1 for those frames
        only, False for none. Returns uint8 (K, len(drawn), H, W, 3), or None when nothing
        is drawn. Whatever is drawn or not, the frames equal `rollout`'s for the same
        actions concatenated from the start (for the families that step incrementally;
        this default conditions each call on the last frame instead, which for a
        generative model is a new rollout from that frame).
        """
        out = self.rollout(state.frames, actions, seeds=state.seeds, num_steps=state.num_steps, guidance=state.guidance)
        state.frames = out[:, -1]
        new = out[:, 1:]
        if draw is True:
            return new
        if draw is False:
            return None
        return new[:, list(draw)]

    def restart(self, state: Any, rows: Sequence[int], frames: np.ndarray) -> None:
        """Start rollouts `rows` of `state` again from uint8 start frames (len(rows), H, W, 3)
        at the spec's resolution; the other rollouts carry on untouched. Afterwards a
        restarted rollout steps exactly as a fresh `begin` from its frame would."""
        state.frames[list(rows)] = frames

    def readout(self, state: Any) -> dict[str, np.ndarray] | None:
        """What the model believes of each rollout's scene now, as named arrays with a leading K
        (e.g. object poses), for callers that can use it instead of frames; None when the
        family has no such readout."""
        return None


class _LastFrames:
    """`Runner.begin`'s default state: the last frame of each rollout and its sampling parameters."""

    def __init__(self, frames: np.ndarray, seeds: list[int], num_steps: int | None, guidance: float | None) -> None:
        self.frames, self.seeds, self.num_steps, self.guidance = frames, seeds, num_steps, guidance



def runner_class(family: str) -> type[Runner]:
    """Import and return the runner class of a model family."""
    try:
        target = RUNNERS[family]
    except KeyError:
        raise KeyError(f"unknown runner family {family!r}; known: {', '.join(sorted(RUNNERS))}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
