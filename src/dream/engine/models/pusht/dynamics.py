"""The block's response to the agent and the walls: a small network learned from simulated episodes.

Per action, the agent's path is known (the PD law, `physics.agent_path`); what the
block does is predicted by an MLP from geometry in the block's frame (origin at its
centre of gravity, axes along the T):

* the agent's centre at the start of the action and after each substep (11 points),
* the T's signed distance at those points minus the agent's radius (< 0: overlap),
* the block's own motion during the previous action,
* how far the T's corners are from each of the four walls, and the block's angle
  (which way the walls face in its frame).

The output is the block's pose change over the action (centre of gravity in the
block's frame, angle). The network is consulted only when the agent's disc overlaps the
T during the action (clearance below `CONTACT_MARGIN`) or the block still moved in the
previous one (after a push the simulator's position correction lets it settle over a
few actions); otherwise the block stays put, and a predicted change under `STILL`
px is none: the block has come to rest.

An action without contact is such a settling step, and its change is capped at `SETTLE`
times the previous action's (`settle`): gym-pusht's block keeps no momentum (the space's
damping is 0), and on validation episodes its motion after the agent leaves shrinks by
about half per action (99th percentiles 6.8, 3.7, 2.0, 1.0, 0.35 px over the first five
actions after a fast push). Left to itself, the network moved a block the agent had left
by 0.15–0.3 px in every later action, never coming to rest (8 px over 30 actions), and a
planner aiming at a precise pose would send the agent away and rely on that drift.

`features` is written once for numpy and torch (the `xp` argument): training
(`training/learn_pusht.py`) unrolls the same code in torch that inference runs in
float64 numpy, one rollout at a time, with sums in a fixed order (`np.einsum`, no
BLAS), so a rollout's bytes depend neither on its batch neighbours nor on threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dream.engine.models.pusht.physics import AGENT_RADIUS, PhysicsParams
from dream.errors import EngineError

__all__ = ["FORMAT", "N_FEATURES", "BlockDynamics", "PoseState", "features", "rollout_poses", "rules_tag", "settle", "step_poses"]

FORMAT = "pusht-blocknet-1"
N_FEATURES = 42
# The network is asked when the agent's disc overlaps the T somewhere on its path (clearance
# below this, px). From rest, gym-pusht never moved the block (by more than 0.1 px, in 750
# validation actions of four action distributions) when the path's clearance was >= 0;
# the network, asked from 3 px on, moved it 0.3-1.5 px there, and a planner steered
# through those near misses.
CONTACT_MARGIN = 0.0
STILL = 0.01  # px: a predicted change smaller than this is no change (the block has come to rest)
SETTLE = 0.55  # without contact, a change is at most this share of the previous action's
POS_SCALE, ANGLE_SCALE = 5.0, 0.05  # the network's outputs are pose changes in these units
_INNER_LOW, _INNER_HIGH = 7.0, 504.0  # the walls' inner faces (segments at 5 and 506, radius 2)
# the T's rectangles in the cog frame: (centre x, centre y, half width, half height)
_BOXES = ((0.0, -30.0, 60.0, 15.0), (0.0, 30.0, 15.0, 45.0))
_CORNERS = ((-60.0, -45.0), (60.0, -45.0), (60.0, -15.0), (-60.0, -15.0),
            (-15.0, -15.0), (15.0, -15.0), (15.0, 75.0), (-15.0, 75.0))


def rules_tag() -> str:
    """The inference rules around the network (when it is asked, when a change is none, how
    a block settles), for naming what a result was computed with beside the weights' digest."""
    return f"margin{CONTACT_MARGIN:g}-still{STILL:g}-settle{SETTLE:g}"


def t_distance(xp: Any, lx: Any, ly: Any) -> Any:
    """Signed distance (px) from points in the block's cog frame to the T (< 0 inside)."""
    out = None
    for cx, cy, hx, hy in _BOXES:
        qx = xp.abs(lx - cx) - hx
        qy = xp.abs(ly - cy) - hy
        outside = xp.sqrt(xp.clip(qx, 0.0, None) ** 2 + xp.clip(qy, 0.0, None) ** 2 + 1e-12)
        d = outside + xp.clip(xp.maximum(qx, qy), None, 0.0)
        out = d if out is None else xp.minimum(out, d)
    return out


def features(xp: Any, block: Any, last: Any, path: Any) -> tuple[Any, Any]:
    """(features (..., N_FEATURES), the agent's least clearance from the T (...,) in px).

    block: (..., 3) cog x, y, angle; last: (..., 3) the previous action's pose change in
    the block's frame; path: (..., S + 1, 2) the agent's centre at the action's start and
    after each substep, workspace px. `xp` is numpy or torch.
    """
    x, y, a = block[..., 0:1], block[..., 1:2], block[..., 2:3]
    c, s = xp.cos(a), xp.sin(a)
    dx, dy = path[..., 0] - x, path[..., 1] - y
    lx, ly = c * dx + s * dy, c * dy - s * dx
    clearance = t_distance(xp, lx, ly) - AGENT_RADIUS
    vx = xp.concatenate([x + c * px - s * py for px, py in _CORNERS], -1)
    vy = xp.concatenate([y + s * px + c * py for px, py in _CORNERS], -1)
    walls = xp.stack([xp.amin(vx, -1) - _INNER_LOW, _INNER_HIGH - xp.amax(vx, -1),
                      xp.amin(vy, -1) - _INNER_LOW, _INNER_HIGH - xp.amax(vy, -1)], -1)
    scaled_last = xp.concatenate([last[..., :2] / POS_SCALE, last[..., 2:] / ANGLE_SCALE], -1)
    feats = xp.concatenate(
        [lx / 60.0, ly / 60.0, xp.clip(clearance, -30.0, 45.0) / 15.0, scaled_last,
         xp.clip(walls, -5.0, 30.0) / 15.0, c, s], -1)
    return feats, xp.amin(clearance, -1)


def apply_change(xp: Any, block: Any, change: Any) -> Any:
    """`block` (..., 3) moved by `change` (..., 3) given in its own frame."""
    x, y, a = block[..., 0:1], block[..., 1:2], block[..., 2:3]
    c, s = xp.cos(a), xp.sin(a)
    dx, dy, da = change[..., 0:1], change[..., 1:2], change[..., 2:3]
    return xp.concatenate([x + c * dx - s * dy, y + s * dx + c * dy, a + da], -1)


def change_size(xp: Any, change: Any) -> Any:
    """How far (px) a pose change moves the T: the larger of the cog's shift and 60 px × the turn."""
    return xp.maximum(xp.sqrt(change[..., 0] ** 2 + change[..., 1] ** 2), 60.0 * xp.abs(change[..., 2]))


def settle(xp: Any, change: Any, last: Any, contact: Any) -> Any:
    """`change` (..., 3) where the agent is in `contact` (...,); elsewhere the same change
    shrunk, if need be, to `SETTLE` × the size of `last`, the previous action's change."""
    size = change_size(xp, change)
    cap = SETTLE * change_size(xp, last)
    scale = xp.where(contact | (size <= cap), 1.0 + 0.0 * size, cap / xp.where(size > 0, size, 1.0 + 0.0 * size))
    return change * scale[..., None]


class BlockDynamics:
    """The learned MLP (SiLU hidden layers) in float64 numpy; see the module docstring."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.layers = [(np.ascontiguousarray(w, np.float64), np.ascontiguousarray(b, np.float64)) for w, b in layers]

    # How many numbers the network carries from one action to the next, per rollout
    # (`PoseState.memory`): here the block's pose change during the previous action.
    memory_size = 3

    def change(self, feats: np.ndarray) -> np.ndarray:
        """The block's pose change (dx, dy in its frame, d angle) for feature vectors (..., N_FEATURES).

        Rows are independent: `np.einsum` runs numpy's own loops with a fixed summation
        order per output (no BLAS), so a row's result does not depend on the other rows.
        """
        h = np.ascontiguousarray(feats, np.float64)
        for i, (w, b) in enumerate(self.layers):
            h = np.einsum("...i,ij->...j", h, w) + b
            if i < len(self.layers) - 1:
                h = h / (1.0 + np.exp(-h))
        return h * np.array([POS_SCALE, POS_SCALE, ANGLE_SCALE])

    @classmethod
    def load(cls, path: str | Path) -> BlockDynamics:
        """Read a file written by `save`; names a wrong format, missing or unexpected entries and bad shapes."""
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise EngineError(f"{path}: not a pusht-96 dynamics file (format {meta.get('format')!r}, expected {FORMAT!r})")
            keys = set(f.keys())
            n = len(keys) // 2
            expected = {f"layers.{i}.{p}" for i in range(n) for p in ("weight", "bias")}
            if n == 0 or keys != expected:
                raise EngineError(f"{path}: missing entries {sorted(expected - keys)}, unexpected entries {sorted(keys - expected)}")
            layers = [(f.get_tensor(f"layers.{i}.weight"), f.get_tensor(f"layers.{i}.bias")) for i in range(n)]
        width = N_FEATURES
        for i, (w, b) in enumerate(layers):
            out = 3 if i == n - 1 else w.shape[-1]
            if w.shape != (width, out) or b.shape != (out,):
                raise EngineError(f"{path}: layer {i} has weight {w.shape} and bias {b.shape}, expected ({width}, {out}) and ({out},)")
            width = out
        return cls(layers)

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> None:
        """Write the weights as float64 safetensors, provenance in the metadata."""
        from safetensors.numpy import save_file

        tensors = {}
        for i, (w, b) in enumerate(self.layers):
            tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = w, b
        save_file(tensors, str(path), metadata={"format": FORMAT, **(metadata or {})})


class PoseState:
    """The scene of K rollouts between two actions: everything the next action's outcome depends on.

    agent (K, 2) and velocity (K, 2): the agent's centre (workspace px) and velocity (px/s);
    block (K, 3): the T's centre of gravity and angle; memory (K, M): what the dynamics
    network carries between actions (`BlockDynamics.memory_size` numbers; zeros at rest).
    All float64. `step_poses` returns a new state; states are never changed in place.
    """

    __slots__ = ("agent", "block", "memory", "velocity")

    def __init__(self, agent: np.ndarray, velocity: np.ndarray, block: np.ndarray, memory: np.ndarray) -> None:
        self.agent, self.velocity, self.block, self.memory = agent, velocity, block, memory

    @classmethod
    def at_rest(cls, agent: np.ndarray, block: np.ndarray, memory_size: int) -> PoseState:
        """K rollouts starting still: agents (K, 2) and blocks (K, 3) at these poses, nothing moving."""
        agent = np.array(agent, np.float64).reshape(-1, 2)
        block = np.array(block, np.float64).reshape(-1, 3)
        k = len(agent)
        return cls(agent, np.zeros((k, 2)), block, np.zeros((k, memory_size)))

    def take(self, rows: np.ndarray | slice) -> PoseState:
        """The state of a subset of the rollouts (a copy)."""
        return PoseState(self.agent[rows].copy(), self.velocity[rows].copy(), self.block[rows].copy(), self.memory[rows].copy())


def agent_paths(agent: np.ndarray, velocity: np.ndarray, target: np.ndarray, params: PhysicsParams) -> tuple[np.ndarray, np.ndarray]:
    """(the agents' centres after each substep (K, S, 2), their velocities at the end (K, 2)).

    `physics.agent_path` for K agents at once, with the same operations in the same
    order, so every row is bit-identical to the scalar law.
    """
    p, v = agent, velocity
    out = np.empty((len(agent), params.substeps, 2))
    for i in range(params.substeps):
        v = v + (params.k_p * (target - p) + params.k_v * (0.0 - v)) * params.dt
        p = p + v * params.dt
        out[:, i] = p
    return out, v


def step_poses(state: PoseState, target: np.ndarray, dynamics: BlockDynamics, params: PhysicsParams) -> PoseState:
    """The scene after one action: agent targets (K, 2), already clipped to the workspace.

    The agent follows the PD law; the network is asked only for the rollouts whose agent
    overlaps the T (clearance below `CONTACT_MARGIN`) or whose block still moved in the previous
    action (its change then capped by `settle`), and a change is applied only when it is
    at least `STILL`. Every operation
    is element-wise per rollout (or `BlockDynamics.change`, row-independent), so a
    rollout's result does not depend on the other rollouts of the state.
    """
    path_tail, velocity = agent_paths(state.agent, state.velocity, np.asarray(target, np.float64), params)
    path = np.concatenate([state.agent[:, None], path_tail], 1)
    feats, clearance = features(np, state.block, state.memory, path)
    block, memory = state.block.copy(), state.memory.copy()
    asked = np.nonzero((clearance < CONTACT_MARGIN) | (change_size(np, state.memory) >= STILL))[0]
    if len(asked):
        change = settle(np, dynamics.change(feats[asked]), state.memory[asked], clearance[asked] < CONTACT_MARGIN)
        moves = change_size(np, change) >= STILL
        block[asked[moves]] = apply_change(np, state.block[asked[moves]], change[moves])
        change[~moves] = 0.0
        memory[asked] = change
    return PoseState(np.ascontiguousarray(path_tail[:, -1]), velocity, block, memory)


def rollout_poses(
    agent: tuple[float, float],
    block: tuple[float, float, float],
    targets: list[list[float]] | np.ndarray,
    dynamics: BlockDynamics,
    params: PhysicsParams | None = None,
) -> tuple[list[tuple[float, float]], list[tuple[float, float, float]]]:
    """Agent positions and block poses (cog x, y, angle) at frames 0..T for T targets, from rest."""
    params = params or PhysicsParams()
    state = PoseState.at_rest(np.array([agent]), np.array([block]), dynamics.memory_size)
    agents = [(float(agent[0]), float(agent[1]))]
    blocks = [(float(block[0]), float(block[1]), float(block[2]))]
    for target in np.asarray(targets, np.float64).reshape(-1, 2):
        state = step_poses(state, target[None], dynamics, params)
        agents.append((float(state.agent[0, 0]), float(state.agent[0, 1])))
        blocks.append((float(state.block[0, 0]), float(state.block[0, 1]), float(state.block[0, 2])))
    return agents, blocks
