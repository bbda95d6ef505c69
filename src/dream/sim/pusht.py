"""A thin wrapper around gym-pusht: episodes from a seed, and the policies that drive them.

The built-in ``pusht-96`` world model was trained on, and is evaluated against, episodes
made here, so training (``training/generate.py``) and evaluation (``dream.eval``) share
one definition of "an episode":

* ``env.reset(seed=seed)``: gym-pusht draws the agent position and the block pose from
  the seed; the goal zone is fixed. ``reset(seed)`` plus the same actions give
  bit-identical frames.
* a policy chosen and seeded from the same ``seed`` (`policy_for_seed`) drives the
  agent in closed loop for ``num_steps`` actions. An action is the agent's target
  position in the 512×512 workspace (x right, y down, as ``env.step`` takes it); a PD
  controller (k_p=100, k_v=20, 10 substeps of 10 ms) pulls the agent towards it at
  10 Hz.
* frames are the 96×96 RGB observations: frame 0 after the reset, frame t+1 after
  action t.

Seed ranges keep the splits apart (the seed alone decides the episode):

==========  =====================================  ===========================
split       seeds                                  used by
==========  =====================================  ===========================
train       ``TRAIN_SEED_OFFSET + i``  (0 …)       training/generate.py
validation  ``VAL_SEED_OFFSET + i``    (1 000 000 …) choosing knobs in training
test        ``TEST_SEED_OFFSET + i``   (2 000 000 …) ``dream eval`` only
examples    ``EXAMPLE_SEED_OFFSET + i`` (3 000 000 …) ``dream.examples.pusht``
==========  =====================================  ===========================

gym-pusht is imported lazily, when a `PushTSim` is made; without it an ImportError
names ``pip install 'dream-engine[sim]'``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "EXAMPLE_SEED_OFFSET",
    "OBS_SIZE",
    "POLICIES",
    "TEST_SEED_OFFSET",
    "TRAIN_SEED_OFFSET",
    "VAL_SEED_OFFSET",
    "WORKSPACE_SIZE",
    "PushTEpisodeData",
    "PushTSim",
    "RandomWalkPolicy",
    "SeekPushPolicy",
    "generate_episode",
    "policy_for_seed",
    "replay_actions",
]

WORKSPACE_SIZE = 512.0  # actions and positions live in [0, 512]²
OBS_SIZE = 96  # observations are OBS_SIZE × OBS_SIZE RGB

TRAIN_SEED_OFFSET = 0
VAL_SEED_OFFSET = 1_000_000
TEST_SEED_OFFSET = 2_000_000
EXAMPLE_SEED_OFFSET = 3_000_000

# Share of episodes driven by SeekPushPolicy; the rest are RandomWalkPolicy.
SEEK_PUSH_SHARE = 2 / 3
_POLICY_SALT = 0x5EED  # keeps the policy's random stream apart from the env's


@dataclass(frozen=True)
class PushTState:
    """What a scripted policy may look at (simulator state, not pixels)."""

    agent_pos: np.ndarray  # (2,) float64, workspace px
    block_pos: np.ndarray  # (2,) float64, the block's centre of gravity, workspace px
    block_angle: float  # rad


@dataclass
class PushTEpisodeData:
    """One simulated episode.

    frames:     uint8 (T+1, 96, 96, 3); frame 0 is the observation after the reset.
    actions:    float32 (T, 2), agent targets in workspace px.
    agent_pos:  float32 (T+1, 2), the agent's position at each frame.
    block_pose: float32 (T+1, 3), the block's (x, y, angle) at each frame.
    seed:       the reset seed (it also seeded the policy).
    policy:     the policy's name ("seek_push", "random_walk" or "replay").
    """

    frames: np.ndarray
    actions: np.ndarray
    agent_pos: np.ndarray
    block_pose: np.ndarray
    seed: int
    policy: str


def _import_gym_pusht() -> Any:
    # pygame (imported by gym_pusht) prints a banner on import unless told not to.
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
        import gymnasium as gym
    except ImportError as exc:
        raise ImportError(
            f"the Push-T simulator needs gym-pusht ({exc}); install it with: pip install 'dream-engine[sim]'"
        ) from exc
    return gym


class PushTSim:
    """One gym-pusht environment with pixel observations.

    Steps the unwrapped env, so gym's 300-step time limit and its "stepped after
    termination" checks do not apply: an episode is exactly as long as its actions.
    """

    def __init__(self) -> None:
        gym = _import_gym_pusht()
        env = gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", render_mode="rgb_array")
        self._wrapped = env
        self.env = env.unwrapped

    def reset(self, seed: int) -> np.ndarray:
        """Reset to the start state drawn from `seed`; returns frame 0, uint8 (96, 96, 3)."""
        obs, _ = self.env.reset(seed=int(seed))
        return np.ascontiguousarray(obs["pixels"], dtype=np.uint8)

    def step(self, action: np.ndarray) -> np.ndarray:
        """Apply one action (agent target, workspace px); returns the next frame."""
        obs, *_ = self.env.step(np.asarray(action, dtype=np.float32))
        return np.ascontiguousarray(obs["pixels"], dtype=np.uint8)

    def state(self) -> PushTState:
        block = self.env.block
        cog = block.local_to_world(block.center_of_gravity)
        return PushTState(
            agent_pos=np.array(self.env.agent.position, dtype=np.float64),
            block_pos=np.array([cog.x, cog.y], dtype=np.float64),
            block_angle=float(block.angle),
        )

    def block_pose(self) -> np.ndarray:
        block = self.env.block
        return np.array([block.position.x, block.position.y, block.angle], dtype=np.float32)

    def close(self) -> None:
        self._wrapped.close()


class Policy(Protocol):
    name: str

    def __call__(self, state: PushTState) -> np.ndarray: ...


def _clip_norm(v: np.ndarray, max_norm: float) -> np.ndarray:
    n = float(np.hypot(v[0], v[1]))
    return v * (max_norm / n) if n > max_norm else v


class SeekPushPolicy:
    """Walk the target towards the block and through it, so the agent pushes the block.

    Every few steps a goal is drawn around the block's centre (N(0, noise²) per axis);
    the target moves towards it by at most `max_step` px per action. Goals inside the
    block make the agent push it until the goal is clear. Per-episode parameters are
    drawn from `rng`: max_step ~ U(15, 45) px, noise ~ U(30, 70) px, a new goal every
    3–11 steps.
    """

    name = "seek_push"

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.max_step = rng.uniform(15.0, 45.0)
        self.noise = rng.uniform(30.0, 70.0)
        self.target: np.ndarray | None = None
        self.goal = np.zeros(2)
        self.steps_to_new_goal = 0

    def __call__(self, state: PushTState) -> np.ndarray:
        if self.target is None:
            self.target = state.agent_pos.copy()
        if self.steps_to_new_goal <= 0:
            self.goal = state.block_pos + self.rng.normal(0.0, self.noise, 2)
            self.steps_to_new_goal = int(self.rng.integers(3, 12))
        self.steps_to_new_goal -= 1
        self.target = np.clip(
            self.target + _clip_norm(self.goal - self.target, self.max_step), 0.0, WORKSPACE_SIZE
        )
        return self.target.astype(np.float32)


class RandomWalkPolicy:
    """A smooth random walk of the target over the whole workspace, with pauses.

    velocity ← momentum·velocity + N(0, (max_step/2)²), capped at `max_step` px per
    action; the target reflects off [15, 497]. With probability 5% per step the target
    pauses for 2–8 steps. Per episode: max_step ~ U(8, 45) px, momentum ~ U(0.5, 0.9).
    """

    name = "random_walk"
    _LOW, _HIGH = 15.0, WORKSPACE_SIZE - 15.0

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.max_step = rng.uniform(8.0, 45.0)
        self.momentum = rng.uniform(0.5, 0.9)
        self.target: np.ndarray | None = None
        self.velocity = np.zeros(2)
        self.pause_left = 0

    def __call__(self, state: PushTState) -> np.ndarray:
        if self.target is None:
            self.target = state.agent_pos.copy()
        if self.pause_left > 0:
            self.pause_left -= 1
            return self.target.astype(np.float32)
        if self.rng.random() < 0.05:
            self.pause_left = int(self.rng.integers(2, 9))
            self.velocity[:] = 0.0
        noise = self.rng.normal(0.0, self.max_step / 2.0, 2)
        self.velocity = _clip_norm(self.momentum * self.velocity + noise, self.max_step)
        target = self.target + self.velocity
        for axis in range(2):  # reflect off the walls
            if target[axis] < self._LOW:
                target[axis] = 2 * self._LOW - target[axis]
                self.velocity[axis] = -self.velocity[axis]
            elif target[axis] > self._HIGH:
                target[axis] = 2 * self._HIGH - target[axis]
                self.velocity[axis] = -self.velocity[axis]
        self.target = np.clip(target, self._LOW, self._HIGH)
        return self.target.astype(np.float32)


POLICIES = {"seek_push": SeekPushPolicy, "random_walk": RandomWalkPolicy}


def policy_for_seed(seed: int, kind: str | None = None) -> Policy:
    """The policy of episode `seed`: its kind (unless given) and its randomness come from the seed."""
    rng = np.random.default_rng([_POLICY_SALT, int(seed)])
    draw = rng.random()  # always drawn, so `kind=` does not shift the policy's stream
    if kind is None:
        kind = "seek_push" if draw < SEEK_PUSH_SHARE else "random_walk"
    try:
        return POLICIES[kind](rng)
    except KeyError:
        raise ValueError(f"unknown policy {kind!r}; known: {', '.join(POLICIES)}") from None


def generate_episode(
    seed: int, num_steps: int, *, policy: str | None = None, sim: PushTSim | None = None
) -> PushTEpisodeData:
    """Reset to `seed` and run the seed's policy (or `policy`) for `num_steps` actions."""
    sim = sim or PushTSim()
    driver = policy_for_seed(seed, policy)
    frames = np.empty((num_steps + 1, OBS_SIZE, OBS_SIZE, 3), np.uint8)
    actions = np.empty((num_steps, 2), np.float32)
    agent_pos = np.empty((num_steps + 1, 2), np.float32)
    block_pose = np.empty((num_steps + 1, 3), np.float32)
    frames[0] = sim.reset(seed)
    for t in range(num_steps + 1):
        state = sim.state()
        agent_pos[t] = state.agent_pos
        block_pose[t] = sim.block_pose()
        if t == num_steps:
            break
        actions[t] = driver(state)
        frames[t + 1] = sim.step(actions[t])
    return PushTEpisodeData(frames, actions, agent_pos, block_pose, int(seed), driver.name)


def replay_actions(
    seed: int, actions: Sequence[Sequence[float]] | np.ndarray, *, sim: PushTSim | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reset to `seed` and apply `actions` (T, 2) open loop.

    Returns (frames uint8 (T+1, 96, 96, 3), actions float32 (T, 2)).
    """
    sim = sim or PushTSim()
    actions = np.asarray(actions, dtype=np.float32).reshape(-1, 2)
    frames = np.empty((len(actions) + 1, OBS_SIZE, OBS_SIZE, 3), np.uint8)
    frames[0] = sim.reset(seed)
    for t, action in enumerate(actions):
        frames[t + 1] = sim.step(action)
    return frames, actions
