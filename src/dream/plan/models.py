"""How a planner imagines candidates: the model handle it was given, behind one interface.

* `EmbeddedImagination`: a handle of the embedded engine (``dream.Client()``) or an
  `Engine`. Candidates run through `Engine.begin` / `SteppedRollouts.advance`: raw
  frames, no mp4, and only the frames the cost reads are drawn; a cost of Push-T poses
  (`GoalImageCost.uses_poses`) reads the poses the runner holds and no frame is drawn
  at all (the frames would show exactly those poses; `dream.plan.costs`).
* `BatchImagination`: any handle with ``predict_batch`` (``dream.Client(base_url=...)``,
  a DreamDojo handle on a GPU): the wire protocol the official client speaks, frames
  decoded from the returned mp4s (they differ from the embedded engine's raw frames
  only by the codec's loss).
* `SimulatorModel`: gym-pusht itself as the model, for an oracle planner: each
  candidate is simulated from the simulator's true current state (in a fresh pymunk
  space, so nothing of another candidate's contacts carries over) and scored by the
  same cost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dream.errors import InputValidationError
from dream.plan.costs import check_costs, frames_needed

__all__ = ["BatchImagination", "EmbeddedImagination", "Imagination", "ModelInfo", "SimulatorModel", "imagination_for"]


@dataclass(frozen=True)
class ModelInfo:
    """What a planner needs of a model's contract."""

    slug: str
    runner: str
    action_dim: int
    chunk_size: int
    resolution: tuple[int, int]
    action_low: float | None
    action_high: float | None


class Imagination:
    """Scores K candidate action sequences from one frame with a cost (subclasses)."""

    info: ModelInfo
    engine_s: float = 0.0  # time spent imagining (model + frames), summed over calls

    def costs(self, frame: np.ndarray, actions: np.ndarray, cost: Any) -> np.ndarray:
        """float64 (K,) costs of actions (K, T, A) from start `frame` (already at the model's resolution)."""
        raise NotImplementedError

    def frames(self, frame: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """uint8 (T + 1, H, W, 3): the predicted frames of one action sequence (T, A)."""
        raise NotImplementedError


def _score_frames(cost: Any, frames: np.ndarray, k: int, full: bool) -> np.ndarray:
    """Run a cost on frames (all T + 1 when `full`, else the steps it asked for) and check its output."""
    if not full and hasattr(cost, "score_steps"):
        values = cost.score_steps(frames)
    else:
        values = cost(frames)
    return check_costs(values, k)


class EmbeddedImagination(Imagination):
    """Candidates on the in-process engine: raw frames, only those the cost reads (see the module docstring)."""

    def __init__(self, engine: Any, slug: str, *, exact: bool = False) -> None:
        self.engine = engine
        self.exact = exact  # False: candidates may use the runner's faster inexact path (`Engine.begin`)
        spec = engine.spec(slug)
        self.slug = spec.slug
        self.info = ModelInfo(spec.slug, spec.runner, spec.action_dim, spec.chunk_size, tuple(spec.resolution),
                              spec.action_low, spec.action_high)
        self.engine_s = 0.0

    def costs(self, frame: np.ndarray, actions: np.ndarray, cost: Any) -> np.ndarray:
        t0 = time.perf_counter()
        k, horizon = actions.shape[:2]
        rollouts = self.engine.begin(frame, k=k, spec=self.slug, exact=self.exact)
        try:
            if getattr(cost, "uses_poses", False) and rollouts.incremental:
                values = self._pose_costs(rollouts, actions, cost)
                if values is not None:
                    return check_costs(values, k)
                rollouts = self.engine.begin(frame, k=k, spec=self.slug, exact=self.exact)
            wanted = frames_needed(cost, horizon)
            if wanted is None:
                drawn = rollouts.advance(actions, draw=True)
                frames = np.concatenate([np.broadcast_to(frame, (k, 1, *frame.shape)), drawn], axis=1)
                return _score_frames(cost, frames, k, full=True)
            drawn = rollouts.advance(actions, draw=[i - 1 for i in wanted])
            return _score_frames(cost, drawn, k, full=False)
        finally:
            self.engine_s += time.perf_counter() - t0

    def _pose_costs(self, rollouts: Any, actions: np.ndarray, cost: Any) -> np.ndarray | None:
        steps = cost.steps(actions.shape[1])
        chunk = self.info.chunk_size
        agents, blocks = [], []
        done = 0
        for step in steps:
            if step % chunk:
                return None
            rollouts.advance(actions[:, done:step], draw=False)
            done = step
            scene = rollouts.readout()
            if scene is None or "agent" not in scene or "block" not in scene:
                return None
            agents.append(scene["agent"])
            blocks.append(scene["block"])
        return cost.score_poses(np.stack(agents, 1), np.stack(blocks, 1))

    def frames(self, frame: np.ndarray, actions: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            rollouts = self.engine.begin(frame, k=1, spec=self.slug)
            drawn = rollouts.advance(actions[None], draw=True)
            return np.concatenate([frame[None], drawn[0]], axis=0)
        finally:
            self.engine_s += time.perf_counter() - t0


class BatchImagination(Imagination):
    """Candidates through a handle's public ``predict_batch`` (HTTP, or any engine), `max_batch` at a time."""

    def __init__(self, handle: Any, max_batch: int = 64) -> None:
        self.handle = handle
        spec = handle.spec
        arch = spec.arch
        self.info = ModelInfo(spec.slug, arch.runner, arch.action_dim, arch.chunk_size, tuple(arch.resolution),
                              arch.action_low, arch.action_high)
        self.max_batch = max_batch
        self.engine_s = 0.0

    def _predict(self, frame: np.ndarray, actions: np.ndarray) -> np.ndarray:
        out = []
        for lo in range(0, len(actions), self.max_batch):
            batch = self.handle.predict_batch(start_frame=frame, actions=actions[lo : lo + self.max_batch])
            for rollout in batch:
                frames = rollout.frames
                if frames is None:
                    raise RuntimeError("planning over predict_batch decodes mp4s: pip install 'dream-engine[decode]'")
                out.append(frames)
        return np.stack(out)

    def costs(self, frame: np.ndarray, actions: np.ndarray, cost: Any) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            frames = self._predict(frame, actions)
        finally:
            self.engine_s += time.perf_counter() - t0
        return _score_frames(cost, frames, len(actions), full=True)

    def frames(self, frame: np.ndarray, actions: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self._predict(frame, actions[None])[0]
        finally:
            self.engine_s += time.perf_counter() - t0


class SimulatorModel(Imagination):
    """gym-pusht as the planner's model (an oracle): candidates simulated from `sim`'s true state.

    The frame a planner passes is ignored: every candidate starts from the simulator's
    current state (agent position and velocity, block pose and velocities), copied into
    a fresh pymunk space per candidate. Body attributes are copied, not the space
    (deep-copying gym-pusht's space restores the block's position before its centre of
    gravity and the block jumps ≈ 45 px); the angle is set before the position.
    `check_replay` measures that a copy replays the real environment.

    A cost of Push-T poses scores the poses the simulator's frames would show (as the
    embedded model's poses); any other cost gets rendered frames.
    """

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.info = ModelInfo("simulator", "pusht", 2, 1, (96, 96), 0.0, 512.0)
        self.engine_s = 0.0
        self._render_env: Any = None

    # ------------------------------------------------------------------ state copies

    def _state(self) -> tuple:
        env = self.sim.env
        a, b = env.agent, env.block
        return (tuple(a.position), tuple(a.velocity), float(b.angle), tuple(b.position), tuple(b.velocity),
                float(b.angular_velocity))

    def _simulate(self, state: tuple, actions: np.ndarray, record: Sequence[int], *, render: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, list, np.ndarray | None]:
        """Candidates actions (K, T, 2) from `state`: agent (K, n, 2) and block cog pose (K, n, 3) after
        each action index in `record` (1-based), the bodies' states there (per candidate, per index)
        and, with `render`, the simulator's frames there uint8 (K, n, 96, 96, 3), drawn from the
        candidate's own space (its contact points are drawn too, as in gym-pusht's frames).

        `_GROUP` candidates share a pymunk space, each colliding only with itself and the walls
        (collision categories). It is 1: each candidate in a space of its own replays the
        simulator exactly from a state at rest (`check_replay`: error 0); 10 to a space
        measured 2.7× faster, but the contact solver then visits a candidate's contacts in
        another order and pushes drift from the simulator's. A state copied mid-contact
        lacks pymunk's cached contact impulses (they cannot be copied), so from there a copy
        is close to the simulator, not exact. The agent is kinematic (collisions do not move
        it): its PD law is integrated for all candidates at once with numpy, in gym-pusht's
        order of operations, and handed to pymunk as velocities.
        """
        import pymunk
        from pymunk._chipmunk import lib as cp

        set_velocity = cp.cpBodySetVelocity
        env = self.sim.env
        dt, k_p, k_v = env.dt, float(env.k_p), float(env.k_v)
        n_sub = int(1 / (env.dt * env.control_hz))
        acts = np.clip(np.asarray(actions, np.float32), 0.0, 512.0).astype(np.float64)
        k, horizon = acts.shape[:2]
        slot = {t: j for j, t in enumerate(record)}
        agents = np.empty((k, len(slot), 2))
        blocks = np.empty((k, len(slot), 3))
        states: list[list[tuple]] = [[] for _ in range(k)]
        frames = np.empty((k, len(slot), 96, 96, 3), np.uint8) if render else None
        a_pos, a_vel, b_angle, b_pos, b_vel, b_ang_vel = state
        # the agents' velocities before each substep, all candidates at once (lists: pymunk takes tuples)
        p = np.tile(np.array(a_pos, np.float64), (k, 1))
        v = np.tile(np.array(a_vel, np.float64), (k, 1))
        vel = np.empty((k, horizon, n_sub, 2))
        for t in range(horizon):
            for sub in range(n_sub):
                v = v + (k_p * (acts[:, t] - p) + k_v * (0.0 - v)) * dt
                p = p + v * dt
                vel[:, t, sub] = v
        group = 1 if render else _GROUP  # a drawing shows one candidate only
        for lo in range(0, k, group):
            rows = range(lo, min(k, lo + group))
            space = pymunk.Space()
            space.gravity = 0, 0
            space.damping = env.space.damping
            walls = [env.add_segment(space, a, b, 2) for a, b in _WALLS]
            for w in walls:
                w.filter = pymunk.ShapeFilter(categories=_WALL_BIT, mask=pymunk.ShapeFilter.ALL_MASKS())
            space.add(*walls)
            bodies = []
            for j, _ in enumerate(rows):
                own = pymunk.ShapeFilter(categories=1 << j, mask=(1 << j) | _WALL_BIT)
                agent = env.add_circle(space, (256, 400), 15)
                block, shapes = env.add_tee(space, (256, 300), 0)
                if env.block_cog is not None:
                    block.center_of_gravity = env.block_cog
                for shape in (*agent.shapes, *shapes):
                    shape.filter = own
                agent.position, agent.velocity = a_pos, a_vel
                block.angle = b_angle
                block.position = b_pos
                block.velocity, block.angular_velocity = b_vel, b_ang_vel
                bodies.append((agent, block))
            # pymunk's C calls directly (what Space.step and Body.velocity do, minus the wrappers'
            # bookkeeping for objects added in callbacks, of which these spaces have none)
            step_space, handle = cp.cpSpaceStep, space._space
            agent_handles = [agent._body for agent, _ in bodies]
            velocities = vel[rows.start : rows.stop].transpose(1, 2, 0, 3).tolist()  # [t][substep][row] -> (vx, vy)
            for t in range(horizon):
                for per_row in velocities[t]:
                    for body, velocity in zip(agent_handles, per_row, strict=True):
                        set_velocity(body, velocity)
                    step_space(handle, dt)
                if t + 1 in slot:
                    col = slot[t + 1]
                    for j, (agent, block) in enumerate(bodies):
                        cog = block.local_to_world(block.center_of_gravity)
                        agents[rows.start + j, col] = agent.position
                        blocks[rows.start + j, col] = (cog.x, cog.y, block.angle)
                        states[rows.start + j].append((tuple(agent.position), tuple(agent.velocity), float(block.angle),
                                                       tuple(block.position), tuple(block.velocity),
                                                       float(block.angular_velocity)))
                        if frames is not None:
                            frames[rows.start + j, col] = self._draw(space, block)
        return agents, blocks, states, frames

    def _draw(self, space: Any, block: Any) -> np.ndarray:
        """gym-pusht's 96×96 observation of a candidate's space (drawn by the simulator's own code;
        only one candidate may be in it)."""
        if self._render_env is None:
            from dream.sim.pusht import PushTSim

            self._render_env = PushTSim()
            self._render_env.reset(0)
        env = self._render_env.env
        saved = env.space, env.block
        env.space, env.block = space, block
        try:
            return np.ascontiguousarray(env._render(), dtype=np.uint8)
        finally:
            env.space, env.block = saved

    def costs(self, frame: np.ndarray, actions: np.ndarray, cost: Any) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            state = self._state()
            k, horizon = actions.shape[:2]
            if getattr(cost, "uses_poses", False):
                agents, blocks, _, _ = self._simulate(state, actions, cost.steps(horizon))
                return check_costs(cost.score_poses(agents, blocks), k)
            wanted = frames_needed(cost, horizon)
            steps = list(range(1, horizon + 1)) if wanted is None else list(wanted)
            _, _, _, drawn = self._simulate(state, actions, steps, render=True)
            assert drawn is not None
            if wanted is None:
                start = np.broadcast_to(frame, (k, 1, *frame.shape))
                return _score_frames(cost, np.concatenate([start, drawn], 1), k, full=True)
            return _score_frames(cost, drawn, k, full=False)
        finally:
            self.engine_s += time.perf_counter() - t0

    def frames(self, frame: np.ndarray, actions: np.ndarray) -> np.ndarray:
        _, _, _, drawn = self._simulate(self._state(), actions[None], range(1, len(actions) + 1), render=True)
        assert drawn is not None
        return np.concatenate([np.ascontiguousarray(self.sim.env._render(), dtype=np.uint8)[None], drawn[0]])

    def check_replay(self, actions: np.ndarray) -> tuple[float, int]:
        """Run `actions` in a copy and in the real simulator; (max pose error, max pixel difference).

        Steps the real simulator: call it where that is wanted (tests, a bench)."""
        state = self._state()
        actions = np.asarray(actions, np.float32)
        agents, blocks, _, drawn = self._simulate(state, np.stack([actions] * 3), range(1, len(actions) + 1),
                                                  render=True)
        agents, blocks = agents[1], blocks[1]
        error, pixels = 0.0, 0
        for t, action in enumerate(actions):
            real = self.sim.step(action)
            st = self.sim.state()
            true = np.array([*st.agent_pos, *st.block_pos, st.block_angle])
            error = max(error, float(np.abs(true - np.array([*agents[t], *blocks[t]])).max()))
            if drawn is not None:
                pixels = max(pixels, int(np.abs(real.astype(int) - drawn[1, t].astype(int)).max()))
        return error, pixels


_GROUP = 1  # candidates per pymunk space: alone, a copy made at rest replays the simulator exactly (see `_simulate`)
_WALL_BIT = 1 << 30
_WALLS = (((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506)))


def imagination_for(model: Any, *, fast: bool = True) -> Imagination:
    """The `Imagination` behind a model handle, an `Engine` (its default spec) or a `SimulatorModel`.

    fast=False sends an embedded handle through ``predict_batch`` too (mp4 and all).
    """
    if isinstance(model, Imagination):
        return model
    from dream.engine.engine import Engine

    if isinstance(model, Engine):
        return EmbeddedImagination(model, model.spec().slug)
    client = getattr(model, "_client", None)
    engine = getattr(client, "engine", None) if client is not None else None
    if fast and engine is not None and hasattr(model, "slug"):
        return EmbeddedImagination(engine, model.slug)
    if hasattr(model, "predict_batch") and hasattr(model, "spec"):
        return BatchImagination(model)
    raise InputValidationError(
        f"a planner's model must be a model handle (client.models.get(slug)), an Engine or a SimulatorModel; "
        f"got {type(model).__name__}"
    )
