"""Push-T policies that see frames only: the family `dream eval --task policies` ranks.

Every policy reads the agent's position and the block's pose off each 96×96 frame
(`dream.engine.models.pusht.posefit.read_scene` at an episode's first frame, then
`track_scene` from its own previous reading) and returns the agent's next target in the 512×512 workspace, so the same
policy runs unchanged in gym-pusht and in a world model. A policy object drives N
episodes at once (`start(seeds)`, then `act(frames)` with N frames); each episode's
randomness comes from its own seed, so an episode's actions depend only on its seed
and on the frames it saw.

The family (`POLICIES`):

* ``pusher``: picks, every step, the point of the T's outline whose push best moves
  the block towards the goal pose (a free body pushed at a point: translation along the
  contact normal, rotation by its torque), walks around the block to it and pushes as
  far as the wanted motion projects on that push (× 0.7, at most 40 px);
* ``quick-pusher`` / ``cautious-pusher``: the same pushing 1.6× (up to 80 px) / 0.35× (up
  to 15 px) of the wanted motion at a time;
* ``sloppy-pusher``: weighs the block's angle at a third (fixes its position first, its
  rotation late);
* ``pusher-noise10`` / ``-noise20`` / ``-noise30``: ``pusher`` with N(0, σ²) px added to each action;
* ``translator``: ignores the angle altogether (pushes the block's centre home);
* ``learned``: an MLP behaviour-cloned from ``pusher`` on train-split episodes picks where
  to push and how far (``training/train_pusht_policy.py``, DAgger; weights ship in the
  package, numpy only); walking there is ``pusher``'s;
* ``seek-push``: the scripted walk-into-the-block policy the model's training data used;
* ``random-walk``: a smooth random walk over the workspace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["GOAL_ANGLE", "GOAL_COG", "POLICIES", "FramePolicy", "Pusher", "make_policy", "policy_names"]

WORKSPACE = 512.0
AGENT_RADIUS = 15.0
GOAL_ANGLE = math.pi / 4
GOAL_COG = np.array([256.0 - math.sin(GOAL_ANGLE) * 45.0, 256.0 + math.cos(GOAL_ANGLE) * 45.0])
_BLOCK_INERTIA = 3000.0  # gym-pusht's T: mass 1, moment 2 × moment_for_poly(1, bar) about the body origin
_SALT = 0x9E71


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _contacts(step: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Points of the T's outline a disc can push (block cog frame) and their inward normals."""
    points: list[tuple[float, float]] = []
    normals: list[tuple[float, float]] = []

    def edge(x0: float, y0: float, x1: float, y1: float, n: tuple[float, float]) -> None:
        k = max(2, int(math.hypot(x1 - x0, y1 - y0) // step) + 1)
        for t in np.linspace(0.0, 1.0, k):
            points.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
            normals.append(n)

    corner = AGENT_RADIUS + 8.0  # the disc cannot reach into the T's two inner corners
    edge(-60, -45, 60, -45, (0, 1))  # the bar's top
    edge(-60, -45, -60, -15, (1, 0))  # the bar's ends
    edge(60, -45, 60, -15, (-1, 0))
    edge(-60, -15, -15 - corner, -15, (0, -1))  # under the bar, beside the stem
    edge(15 + corner, -15, 60, -15, (0, -1))
    edge(-15, -15 + corner, -15, 75, (1, 0))  # the stem's sides
    edge(15, -15 + corner, 15, 75, (-1, 0))
    edge(-15, 75, 15, 75, (0, -1))  # the stem's end
    return np.array(points), np.array(normals, np.float64)


_POINTS, _NORMALS = _contacts()
_TORQUES = _POINTS[:, 0] * _NORMALS[:, 1] - _POINTS[:, 1] * _NORMALS[:, 0]


def _t_clearance(points: np.ndarray, cog: np.ndarray, angle: float) -> np.ndarray:
    """The agent disc's clearance (px) from the T at workspace points (..., 2)."""
    from dream.engine.models.pusht.dynamics import t_distance

    d = np.asarray(points) - cog
    c, s = math.cos(angle), math.sin(angle)
    return t_distance(np, c * d[..., 0] + s * d[..., 1], c * d[..., 1] - s * d[..., 0]) - AGENT_RADIUS


@dataclass
class Pusher:
    """The pushing controller on poses (one episode): where to send the agent next.

    length: px per radian when weighing the angle error against the position error;
    gain: the share of the wanted motion one push makes; max_push: the longest push
    (px); angle_weight: 1 for the angle as much as the position, 0 to ignore it.
    """

    length: float = 60.0
    gain: float = 0.7
    max_push: float = 40.0
    angle_weight: float = 1.0
    gap: float = 4.0
    orbit: float = 100.0
    contact: int | None = None

    def __call__(self, agent: np.ndarray, cog: np.ndarray, angle: float) -> np.ndarray:
        plan = self.plan(cog, angle)
        if plan is None:
            return agent.copy()
        self.contact = plan[0]
        return self.execute(agent, cog, angle, *plan)

    def plan(self, cog: np.ndarray, angle: float) -> tuple[int, float] | None:
        """Where to push next: (index into the outline's contact points, push length in px), or
        None when the block is home."""
        dp = GOAL_COG - cog
        d_angle = _wrap(GOAL_ANGLE - angle) * self.angle_weight
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        want = np.array([*(rot.T @ dp), self.length * d_angle])
        size = float(np.linalg.norm(want))
        if size < 1e-6:
            return None
        # a push along normal n at r moves the free block by (n, L·τ/I) / (1 + τ²/I) per px of the pusher
        motion = np.stack([_NORMALS[:, 0], _NORMALS[:, 1], self.length * _TORQUES / _BLOCK_INERTIA], 1)
        motion /= (1.0 + _TORQUES**2 / _BLOCK_INERTIA)[:, None]
        score = (motion @ want) / (np.linalg.norm(motion, axis=1) * size)
        pre = cog + (_POINTS - _NORMALS * (AGENT_RADIUS + self.gap)) @ rot.T
        score = np.where(np.all((pre > 20.0) & (pre < WORKSPACE - 20.0), 1), score, -9.0)
        if self.contact is not None:
            score[self.contact] += 0.05  # keep pushing where it pushes unless another point is clearly better
        i = int(np.argmax(score))
        push = float(np.clip(self.gain * (motion[i] @ want) / (motion[i] @ motion[i]), 1.0, self.max_push))
        return i, push

    def execute(self, agent: np.ndarray, cog: np.ndarray, angle: float, contact: int, push: float) -> np.ndarray:
        """The target that pushes at outline point `contact` by `push` px: push when the agent is in
        place behind it, else walk there (around the block when it is in the way)."""
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        point = cog + rot @ _POINTS[contact]
        normal = rot @ _NORMALS[contact]
        rel = agent - point
        along = float(rel @ normal)
        lateral = float(np.linalg.norm(rel - along * normal))
        if lateral < 4.0 and -(AGENT_RADIUS + self.gap + 6.0) < along < 2.0:
            return point + normal * (push - AGENT_RADIUS)  # in place: push
        target = point - normal * (AGENT_RADIUS + self.gap)
        path = agent + np.linspace(0.0, 1.0, 12)[:, None] * (target - agent)
        if _t_clearance(path, cog, angle).min() > 2.0:
            return target
        # the block is in the way: walk around it, at a safe distance, towards the pre-contact point
        a0 = math.atan2(agent[1] - cog[1], agent[0] - cog[0])
        turn = _wrap(math.atan2(target[1] - cog[1], target[0] - cog[0]) - a0)
        step = math.copysign(min(abs(turn), math.radians(35)), turn)
        radius = min(max(self.orbit, float(np.linalg.norm(agent - cog))), self.orbit + 10.0)
        if abs(step) < math.radians(5):
            radius += 20.0  # straight in is blocked: step out first
        way = cog + radius * np.array([math.cos(a0 + step), math.sin(a0 + step)])
        return np.clip(way, 15.0, WORKSPACE - 15.0)


class FramePolicy:
    """A policy over frames alone, driving N episodes at once.

    ``start(seeds)`` begins N episodes; ``act(frames, rows)`` takes the current uint8
    frames (n, 96, 96, 3) of episodes `rows` (default: all N) and returns float32 targets
    (n, 2). Each episode's reading is warm-started from its own previous one, and its
    actions depend only on its seed and its frames (not on which other rows are asked).
    Subclasses decide per episode from the poses read off its frame (`decide`).
    """

    name = "policy"
    description = ""

    def __init__(self) -> None:
        self.seeds: list[int] = []
        self.rngs: list[np.random.Generator] = []
        self.targets: np.ndarray = np.zeros((0, 2))
        self._agent = np.zeros((0, 2))
        self._block = np.zeros((0, 3))

    def start(self, seeds: Sequence[int]) -> None:
        self.seeds = [int(s) for s in seeds]
        tag = sum(ord(ch) * 31**i for i, ch in enumerate(self.name)) % (2**31)
        self.rngs = [np.random.default_rng([_SALT, tag, s]) for s in self.seeds]
        n = len(self.seeds)
        self.targets = np.full((n, 2), np.nan)
        self._agent = np.full((n, 2), np.nan)
        self._block = np.full((n, 3), np.nan)
        self.reset_episodes()

    def reset_episodes(self) -> None:
        """Per-episode state of a subclass (called by `start`)."""

    def act(self, frames: np.ndarray, rows: Sequence[int] | None = None) -> np.ndarray:
        from dream.engine.models.pusht.posefit import track_scene

        rows = list(range(len(self.seeds))) if rows is None else [int(r) for r in rows]
        if len(frames) != len(rows):
            raise ValueError(f"act got {len(frames)} frames for {len(rows)} rows")
        # from each episode's last reading (read whole at its first frame, or when the block is lost)
        reading = track_scene(frames, (self._agent[rows], self._block[rows]))
        self._agent[rows], self._block[rows] = reading.agent, reading.block
        out = np.empty((len(rows), 2), np.float32)
        for i, row in enumerate(rows):
            agent, block = reading.agent[i], reading.block[i]
            if not np.isfinite(agent).all():  # the agent is hidden: keep the last target (or the centre)
                last = self.targets[row]
                out[i] = last if np.isfinite(last).all() else (WORKSPACE / 2, WORKSPACE / 2)
                continue
            target = np.clip(np.asarray(self.decide(row, agent, block), np.float64), 0.0, WORKSPACE)
            self.targets[row] = target
            out[i] = target
        return out

    def decide(self, row: int, agent: np.ndarray, block: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class PusherPolicy(FramePolicy):
    """`Pusher` on the poses read off each frame, plus optional Gaussian action noise."""

    def __init__(self, name: str, description: str, noise: float = 0.0, **pusher: float) -> None:
        super().__init__()
        self.name, self.description, self.noise, self.pusher_args = name, description, noise, pusher
        self.controllers: list[Pusher] = []

    def reset_episodes(self) -> None:
        self.controllers = [Pusher(**self.pusher_args) for _ in self.seeds]

    def decide(self, row: int, agent: np.ndarray, block: np.ndarray) -> np.ndarray:
        if not np.isfinite(block).all():
            return np.array([WORKSPACE / 2, WORKSPACE / 2])
        target = self.controllers[row](agent, block[:2], float(block[2]))
        if self.noise:
            target = target + self.rngs[row].normal(0.0, self.noise, 2)
        return target


class SeekPushPolicy(FramePolicy):
    """Walk the target towards a noisy goal around the block's centre (the model's training policy)."""

    name = "seek-push"
    description = "walks the agent into the block towards noisy goals around its centre (the training data's policy)"

    def reset_episodes(self) -> None:
        self.state = [dict(step=r.uniform(15.0, 45.0), noise=r.uniform(30.0, 70.0), goal=None, left=0) for r in self.rngs]
        self.walk = [None] * len(self.seeds)

    def decide(self, row: int, agent: np.ndarray, block: np.ndarray) -> np.ndarray:
        st, rng = self.state[row], self.rngs[row]
        if self.walk[row] is None:
            self.walk[row] = agent.copy()
        centre = block[:2] if np.isfinite(block).all() else agent
        if st["left"] <= 0 or st["goal"] is None:
            st["goal"] = centre + rng.normal(0.0, st["noise"], 2)
            st["left"] = int(rng.integers(3, 12))
        st["left"] -= 1
        move = st["goal"] - self.walk[row]
        norm = float(np.hypot(*move))
        if norm > st["step"]:
            move *= st["step"] / norm
        self.walk[row] = np.clip(self.walk[row] + move, 0.0, WORKSPACE)
        return self.walk[row]


class RandomWalkPolicy(FramePolicy):
    """A smooth random walk of the target over the workspace (momentum, reflecting walls)."""

    name = "random-walk"
    description = "a smooth random walk of the agent over the workspace"

    def reset_episodes(self) -> None:
        self.state = [dict(step=r.uniform(8.0, 45.0), momentum=r.uniform(0.5, 0.9), v=np.zeros(2), at=None) for r in self.rngs]

    def decide(self, row: int, agent: np.ndarray, block: np.ndarray) -> np.ndarray:
        st, rng = self.state[row], self.rngs[row]
        if st["at"] is None:
            st["at"] = agent.copy()
        v = st["momentum"] * st["v"] + rng.normal(0.0, st["step"] / 2, 2)
        norm = float(np.hypot(*v))
        if norm > st["step"]:
            v *= st["step"] / norm
        at = st["at"] + v
        low, high = 15.0, WORKSPACE - 15.0
        for axis in range(2):
            if at[axis] < low or at[axis] > high:
                at[axis] = 2 * (low if at[axis] < low else high) - at[axis]
                v[axis] = -v[axis]
        st["v"], st["at"] = v, np.clip(at, low, high)
        return st["at"]


class LearnedPolicy(FramePolicy):
    """A small MLP, behaviour-cloned from ``pusher`` (`training/train_pusht_policy.py`, DAgger), decides
    where to push (which outline point, how far) from the poses read off the frame; getting the
    agent there is ``pusher``'s walk. Numpy only."""

    name = "learned"
    description = "an MLP, behaviour-cloned from pusher on train-split episodes, picks where to push and how far"
    WEIGHTS = "pusht_bc.npz"

    def __init__(self) -> None:
        super().__init__()
        ref = resources.files("dream.eval") / "_policies" / self.WEIGHTS
        with ref.open("rb") as f, np.load(f) as z:
            self.layers = [(z[f"w{i}"], z[f"b{i}"]) for i in range(len(z.files) // 2)]

    def reset_episodes(self) -> None:
        self.walkers = [Pusher() for _ in self.seeds]
        self.last = [None] * len(self.seeds)

    def decide(self, row: int, agent: np.ndarray, block: np.ndarray) -> np.ndarray:
        if not np.isfinite(block).all():
            return np.array([WORKSPACE / 2, WORKSPACE / 2])
        contact, push = choose_push(self.layers, block, self.last[row])
        self.last[row] = contact
        return self.walkers[row].execute(agent, block[:2], float(block[2]), contact, push)


N_CONTACTS = len(_POINTS)


def bc_features(block: np.ndarray, last: int | None) -> np.ndarray:
    """What the learned policy sees (1, 10): the goal's offset from the block in the block's frame,
    the angle error, and the outline point it pushed last (zeros at first)."""
    a = float(block[2])
    err = _wrap(GOAL_ANGLE - a)
    c, s = math.cos(a), math.sin(a)
    gx, gy = GOAL_COG[0] - block[0], GOAL_COG[1] - block[1]
    prev = np.zeros(4) if last is None else np.array([*(_POINTS[last] / 60.0), *_NORMALS[last]])
    return np.array([[(c * gx + s * gy) / 100.0, (c * gy - s * gx) / 100.0, math.cos(err), math.sin(err), err / math.pi,
                      float(last is not None), *prev]])


def choose_push(layers: list[tuple[np.ndarray, np.ndarray]], block: np.ndarray, last: int | None) -> tuple[int, float]:
    """The learned policy's choice: (outline point index, push length px) from its network's output
    (N_CONTACTS logits, then the push length / 40)."""
    out = mlp(layers, bc_features(block, last))[0]
    return int(np.argmax(out[:N_CONTACTS])), float(np.clip(out[N_CONTACTS] * 40.0, 1.0, 40.0))


def mlp(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """The learned policy's network: tanh hidden layers, linear output."""
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.tanh(h)
    return h


POLICIES: dict[str, Any] = {
    "pusher": lambda: PusherPolicy("pusher", "pushes the T's best outline point towards the goal pose"),
    "quick-pusher": lambda: PusherPolicy(
        "quick-pusher", "pusher that pushes 2.3x as far, up to 80 px at a time", gain=1.6, max_push=80.0),
    "cautious-pusher": lambda: PusherPolicy(
        "cautious-pusher", "pusher that pushes half as far, at most 15 px at a time", gain=0.35, max_push=15.0),
    "sloppy-pusher": lambda: PusherPolicy("sloppy-pusher", "pusher that weighs the angle at a third", angle_weight=0.3),
    "pusher-noise10": lambda: PusherPolicy("pusher-noise10", "pusher + N(0, 10²) px action noise", noise=10.0),
    "pusher-noise20": lambda: PusherPolicy("pusher-noise20", "pusher + N(0, 20²) px action noise", noise=20.0),
    "pusher-noise30": lambda: PusherPolicy("pusher-noise30", "pusher + N(0, 30²) px action noise", noise=30.0),
    "translator": lambda: PusherPolicy("translator", "pushes the block's centre home, ignoring its angle", angle_weight=0.0),
    "learned": LearnedPolicy,
    "seek-push": SeekPushPolicy,
    "random-walk": RandomWalkPolicy,
}


def policy_names() -> list[str]:
    return list(POLICIES)


def make_policy(name: str) -> FramePolicy:
    """A fresh policy of the family by name; ValueError naming the known ones otherwise."""
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}") from None
