"""Held-out Push-T example episodes, shipped with the package (no simulator needed).

Eight episodes simulated with gym-pusht 0.1.8 from the example seed range
(`dream.sim.pusht.EXAMPLE_SEED_OFFSET` + i, never used for training, validation or
`dream eval`), each 48 actions long (the canonical rollout): six driven by the
seek-and-push policy (the block moves), then two random walks. Regenerate with
``python training/make_examples.py``.

    >>> from dream.examples.pusht import pusht_episode
    >>> ep = pusht_episode(0)
    >>> ep.start_frame.shape, ep.actions.shape, ep.frames.shape
    ((96, 96, 3), (48, 2), (49, 96, 96, 3))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["NUM_EPISODES", "PushTEpisode", "pusht_episode", "pusht_episodes"]

NUM_EPISODES = 8
_FIXTURE = "pusht_episodes.npz"


@dataclass(frozen=True)
class PushTEpisode:
    """One ground-truth episode.

    start_frame: uint8 (96, 96, 3), the observation after ``env.reset(seed)`` (= frames[0])
    actions:     float32 (48, 2), agent targets in the 512×512 workspace, 10 Hz
    frames:      uint8 (49, 96, 96, 3), the simulator's observations (ground truth)
    seed:        the gym-pusht reset seed (it also seeded the policy)
    index:       position in `pusht_episodes()`
    """

    start_frame: np.ndarray
    actions: np.ndarray
    frames: np.ndarray
    seed: int
    index: int


@lru_cache(maxsize=1)
def _load() -> dict[str, np.ndarray]:
    ref = resources.files("dream.examples") / "_fixtures" / _FIXTURE
    with ref.open("rb") as f, np.load(f) as z:
        return {name: z[name] for name in z.files}


def pusht_episode(i: int = 0) -> PushTEpisode:
    """Episode `i` (0 ≤ i < 8); IndexError outside that range."""
    if not 0 <= i < NUM_EPISODES:
        raise IndexError(
            f"pusht example episode {i} does not exist; there are {NUM_EPISODES} (0..{NUM_EPISODES - 1})"
        )
    arrays = _load()
    frames = arrays["frames"][i].copy()
    frames.setflags(write=False)
    actions = arrays["actions"][i].copy()
    actions.setflags(write=False)
    return PushTEpisode(
        start_frame=frames[0], actions=actions, frames=frames, seed=int(arrays["seeds"][i]), index=i
    )


def pusht_episodes() -> list[PushTEpisode]:
    """All eight example episodes, in order."""
    return [pusht_episode(i) for i in range(NUM_EPISODES)]
