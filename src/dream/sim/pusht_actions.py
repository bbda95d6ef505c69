"""Action distributions for Push-T: the behaviours a world model of the scene is asked about.

`pusht-96` was first trained and scored only on the two scripted policies of
`dream.sim.pusht` (seek-and-push, random walks). Planners and policies under evaluation
send other actions; each distribution here makes simulator episodes of one kind of them,
so that training data can cover them and ``dream eval`` can score the model on each.

A distribution is a policy over the simulator's state (`PushTState`: the agent's position,
the block's pose), made from a distribution name and a seed. Each reads the true state
(they exist to generate data, not to be evaluated); actions are agent targets in the
512×512 workspace. `DISTRIBUTIONS`:

* ``scripted``: the training policies of `dream.sim.pusht.policy_for_seed` (2/3
  seek-and-push, 1/3 random walks), unchanged;
* ``uniform``: uniform random targets in a square around the block (half side
  U(60, 200) px), each held for 1–5 actions, like a sampling planner's first candidates:
  fast moves and fast first contacts from rest;
* ``correlated``: targets around the block's current centre plus AR(1) noise
  (σ ~ U(40, 150) px, correlation U(0.8, 0.97) per action), a planner's smooth candidates;
* ``aimed``: pushes aimed at the block from a random side: walk to a point 105 px out,
  then push through a point up to 45 px off the centre, U(0, 60) px deep, at
  U(4, 40) px per action (a quarter of pushes jab: the target jumps to the push's end at
  once, a fast first contact from rest); then the next side;
* ``sweep``: straight sweeps through the block's neighbourhood (lateral offset up to
  60 px from its centre, 300 px long, U(10, 50) px per action), one after another;
* ``perturbed``: ``scripted`` with N(0, σ²) px added to every action (σ ~ U(4, 16)), as
  `dream augment` perturbs demonstrations;
* ``pusher``: `dream.eval.policies.Pusher` reading the true state, with a random gain,
  push length, angle weight and action noise (the family `dream eval --task policies`
  ranks: off-centre pushes, pushes against walls);
* ``near-goal``: the block placed near the goal pose (N(0, 15²) px, N(0, 12²)°), gentle
  pushes by a cautious `Pusher` (gain U(0.15, 0.5), pushes ≤ U(4, 15) px): shallow pushes.

Seeds keep the splits apart: distribution k's episode i of a split uses the seed
``split_offset + 100 000·k + i`` (`episode_seed`), so the train / validation / test
ranges of `dream.sim.pusht` still never meet, and the distributions use different reset
states. A policy's randomness comes from (distribution, seed) alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dream.sim.pusht import (
    OBS_SIZE,
    TEST_SEED_OFFSET,
    TRAIN_SEED_OFFSET,
    VAL_SEED_OFFSET,
    WORKSPACE_SIZE,
    PushTSim,
    PushTState,
    policy_for_seed,
)

__all__ = [
    "DISTRIBUTIONS",
    "SPLIT_OFFSETS",
    "episode_seed",
    "make_driver",
    "reset_state",
    "simulate_distribution",
]

DISTRIBUTIONS = ("scripted", "uniform", "correlated", "aimed", "sweep", "perturbed", "pusher", "near-goal")
SPLIT_OFFSETS = {"train": TRAIN_SEED_OFFSET, "val": VAL_SEED_OFFSET, "test": TEST_SEED_OFFSET}
SEEDS_PER_DISTRIBUTION = 100_000
_SALT = 0xAC71
_LOW, _HIGH = 10.0, WORKSPACE_SIZE - 10.0
_AGENT_RADIUS = 15.0


def _check(distribution: str) -> int:
    try:
        return DISTRIBUTIONS.index(distribution)
    except ValueError:
        raise ValueError(f"unknown action distribution {distribution!r}; known: {', '.join(DISTRIBUTIONS)}") from None


def episode_seed(distribution: str, split: str, index: int) -> int:
    """The reset seed of episode `index` (0 … 99 999) of `distribution` in `split` (train / val / test)."""
    k = _check(distribution)
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLIT_OFFSETS)}")
    if not 0 <= int(index) < SEEDS_PER_DISTRIBUTION:
        raise ValueError(f"episode index {index} outside 0..{SEEDS_PER_DISTRIBUTION - 1}")
    return SPLIT_OFFSETS[split] + SEEDS_PER_DISTRIBUTION * k + int(index)


def _rng(distribution: str, seed: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([_SALT, _check(distribution), int(seed), stream])


def _toward(current: np.ndarray, goal: np.ndarray, step: float) -> np.ndarray:
    d = goal - current
    n = float(np.hypot(d[0], d[1]))
    return goal.copy() if n <= step else current + d * (step / n)


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(p, _LOW, _HIGH)


class _Uniform:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.half = rng, rng.uniform(60.0, 200.0)
        self.target: np.ndarray | None = None
        self.hold = 0

    def __call__(self, s: PushTState) -> np.ndarray:
        if self.target is None or self.hold <= 0:
            self.target = _clip(s.block_pos + self.rng.uniform(-self.half, self.half, 2))
            self.hold = int(self.rng.integers(1, 6))
        self.hold -= 1
        return self.target


class _Correlated:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.sigma, self.rho = rng.uniform(40.0, 150.0), rng.uniform(0.8, 0.97)
        self.noise: np.ndarray | None = None

    def __call__(self, s: PushTState) -> np.ndarray:
        if self.noise is None:
            self.noise = s.agent_pos - s.block_pos
        fresh = self.rng.normal(0.0, self.sigma, 2) * math.sqrt(1.0 - self.rho**2)
        self.noise = self.rho * self.noise + fresh
        return _clip(s.block_pos + self.noise)


class _Aimed:
    """Walk to a side of the block, push through it, then pick the next side."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.target: np.ndarray | None = None
        self.phase, self.left = "new", 0

    def _new_push(self, s: PushTState) -> None:
        r = self.rng
        side = r.uniform(0.0, 2 * math.pi)
        u = np.array([math.cos(side), math.sin(side)])
        self.start = _clip(s.block_pos + 105.0 * u)
        normal = np.array([-u[1], u[0]])
        aim = s.block_pos + r.uniform(-45.0, 45.0) * normal
        direction = aim - self.start
        direction /= max(float(np.hypot(*direction)), 1e-9)
        # the push ends `depth` px past where the agent's disc would first touch the block's centre line
        length = float(np.hypot(*(aim - self.start))) - 45.0 + r.uniform(0.0, 60.0)
        self.end = _clip(self.start + direction * max(length, 5.0))
        self.speed = r.uniform(4.0, 40.0)
        self.jab = r.random() < 0.25
        self.walk_speed = r.uniform(20.0, 60.0)
        self.phase, self.left = "approach", 25

    def __call__(self, s: PushTState) -> np.ndarray:
        if self.target is None:
            self.target = s.agent_pos.copy()
        if self.phase == "new":
            self._new_push(s)
        if self.phase == "approach":
            self.target = _toward(self.target, self.start, self.walk_speed)
            self.left -= 1
            if (np.hypot(*(s.agent_pos - self.start)) < 6.0 and np.allclose(self.target, self.start)) or self.left <= 0:
                self.phase, self.left = "push", 30
        elif self.phase == "push":
            self.target = self.end.copy() if self.jab else _toward(self.target, self.end, self.speed)
            self.left -= 1
            if np.allclose(self.target, self.end):
                self.phase, self.left = "hold", int(self.rng.integers(1, 5))
        else:
            self.left -= 1
            if self.left <= 0:
                self.phase = "new"
        return self.target.copy()


class _Sweep:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.target: np.ndarray | None = None
        self.line: tuple[np.ndarray, np.ndarray] | None = None
        self.at_start = False

    def __call__(self, s: PushTState) -> np.ndarray:
        r = self.rng
        if self.target is None:
            self.target = s.agent_pos.copy()
        if self.line is None:
            a = r.uniform(0.0, 2 * math.pi)
            u, n = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
            centre = s.block_pos + r.uniform(-60.0, 60.0) * n
            self.line = (_clip(centre - 150.0 * u), _clip(centre + 150.0 * u))
            self.speed = r.uniform(10.0, 50.0)
            self.at_start = False
        start, end = self.line
        if not self.at_start:
            self.target = _toward(self.target, start, 60.0)
            if np.allclose(self.target, start):
                self.at_start = True
        else:
            self.target = _toward(self.target, end, self.speed)
            if np.allclose(self.target, end):
                self.line = None
        return self.target.copy()


class _Perturbed:
    def __init__(self, rng: np.random.Generator, seed: int) -> None:
        self.inner = policy_for_seed(seed)
        self.rng, self.sigma = rng, rng.uniform(4.0, 16.0)

    def __call__(self, s: PushTState) -> np.ndarray:
        a = np.asarray(self.inner(s), np.float64)
        return a + self.rng.normal(0.0, self.sigma, 2)


class _Pusher:
    def __init__(self, rng: np.random.Generator, gentle: bool) -> None:
        from dream.eval.policies import Pusher

        self.rng = rng
        if gentle:
            self.pusher = Pusher(gain=rng.uniform(0.15, 0.5), max_push=rng.uniform(4.0, 15.0))
            self.noise = rng.uniform(0.0, 3.0)
        else:
            self.pusher = Pusher(gain=rng.uniform(0.35, 1.6), max_push=rng.uniform(15.0, 80.0),
                                 angle_weight=rng.uniform(0.3, 1.0))
            self.noise = rng.uniform(0.0, 20.0)

    def __call__(self, s: PushTState) -> np.ndarray:
        a = self.pusher(s.agent_pos, s.block_pos, s.block_angle)
        return a + self.rng.normal(0.0, self.noise, 2)


def make_driver(distribution: str, seed: int) -> Callable[[PushTState], np.ndarray]:
    """The policy of `distribution`'s episode with reset seed `seed` (its randomness comes from both)."""
    rng = _rng(distribution, seed)
    makers: dict[str, Callable[[], Any]] = {
        "scripted": lambda: policy_for_seed(seed),
        "uniform": lambda: _Uniform(rng),
        "correlated": lambda: _Correlated(rng),
        "aimed": lambda: _Aimed(rng),
        "sweep": lambda: _Sweep(rng),
        "perturbed": lambda: _Perturbed(rng, seed),
        "pusher": lambda: _Pusher(rng, gentle=False),
        "near-goal": lambda: _Pusher(rng, gentle=True),
    }
    _check(distribution)
    return makers[distribution]()


def reset_state(distribution: str, seed: int) -> np.ndarray | None:
    """gym-pusht's ``reset_to_state`` for the episode (agent x, y, block origin x, y, angle), or
    None to reset from the seed as usual. Only ``near-goal`` places the block itself."""
    if _check(distribution) != DISTRIBUTIONS.index("near-goal"):
        return None
    from dream.eval.policies import GOAL_ANGLE, GOAL_COG, _t_clearance

    rng = _rng(distribution, seed, stream=1)
    angle = GOAL_ANGLE + rng.normal(0.0, math.radians(12.0))
    cog = GOAL_COG + rng.normal(0.0, 15.0, 2)
    for _ in range(100):
        agent = cog + rng.uniform(-130.0, 130.0, 2)
        if np.all((agent > 30.0) & (agent < WORKSPACE_SIZE - 30.0)) and _t_clearance(agent, cog, angle) > 5.0:
            break
    # gym-pusht sets the block's origin at angle 0, then turns the body about its centre of gravity (0, 45)
    return np.array([agent[0], agent[1], cog[0], cog[1] - 45.0, angle])


def _reset(env: Any, distribution: str, seed: int) -> Any:
    state = reset_state(distribution, seed)
    options = None if state is None else {"reset_to_state": state}
    obs, _ = env.reset(seed=int(seed), options=options)
    return obs


def _sim_state(env: Any) -> tuple[np.ndarray, np.ndarray]:
    block = env.block
    cog = block.local_to_world(block.center_of_gravity)
    return np.array(env.agent.position, np.float64), np.array([cog.x, cog.y, block.angle], np.float64)


def simulate_distribution(
    distribution: str, seeds: range | list[int], steps: int, *, env: Any = None, pixels: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Run `distribution`'s episodes for `seeds`, `steps` actions each, in gym-pusht.

    env: an unwrapped gym-pusht env (made here when None: state observations, or pixel
    ones with `pixels`). Returns float64 ``agent`` (N, T+1, 2) and ``block`` (N, T+1, 3:
    centre of gravity x, y, angle), float32 ``actions`` (N, T, 2), int64 ``seeds``, and with
    `pixels` uint8 ``frames`` (N, T+1, 96, 96, 3).
    """
    _check(distribution)
    seeds = [int(s) for s in seeds]
    own = env is None
    if own:
        sim = PushTSim() if pixels else None
        if sim is None:
            from dream.sim.pusht import _import_gym_pusht

            wrapped = _import_gym_pusht().make("gym_pusht/PushT-v0", obs_type="state")
            env = wrapped.unwrapped
        else:
            env = sim.env
    n = len(seeds)
    out = {"agent": np.empty((n, steps + 1, 2)), "block": np.empty((n, steps + 1, 3)),
           "actions": np.empty((n, steps, 2), np.float32), "seeds": np.asarray(seeds, np.int64)}
    if pixels:
        out["frames"] = np.empty((n, steps + 1, OBS_SIZE, OBS_SIZE, 3), np.uint8)
    for i, seed in enumerate(seeds):
        driver = make_driver(distribution, seed)
        obs = _reset(env, distribution, seed)
        if pixels:
            out["frames"][i, 0] = obs["pixels"]
        for t in range(steps + 1):
            out["agent"][i, t], out["block"][i, t] = _sim_state(env)
            if t == steps:
                break
            state = PushTState(out["agent"][i, t].copy(), out["block"][i, t, :2].copy(), float(out["block"][i, t, 2]))
            out["actions"][i, t] = np.clip(np.asarray(driver(state), np.float64), 0.0, WORKSPACE_SIZE)
            obs, *_ = env.step(out["actions"][i, t])
            if pixels:
                out["frames"][i, t + 1] = obs["pixels"]
        if progress is not None:
            progress(1)
    if own:
        (sim._wrapped if pixels else wrapped).close()
    return out

