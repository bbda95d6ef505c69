"""A scripted Push-T expert: sampling-based MPC with the simulator itself as the lookahead model.

It makes the "real demonstrations" of the augmentation experiment (`augment_experiment.py`):
no human Push-T demonstrations can be downloaded here, so episodes are driven in
gym-pusht by a planner that sees the true state (privileged, as a teleoperator sees the
scene) and plans with a copy of the simulator.

Every `replan` steps it samples `candidates` action sequences of `horizon` steps (two
knots per sequence, the agent's target moving linearly to the first and then the second;
knots drawn around the block, around the agent, and the previous plan shifted), rolls
each out in a second gym-pusht physics space set to the true state (positions and
velocities; no rendering), and keeps the one with the lowest cost over the states at
every 4th step: the block's distance to the goal pose (position in workspace px plus 80
px per radian of angle error) plus a small pull of the agent towards the block.
"""

from __future__ import annotations

import math

import numpy as np

from dream.sim.pusht import _import_gym_pusht

GOAL = np.array([256.0, 256.0, math.pi / 4])
ANGLE_WEIGHT = 80.0  # px per radian


def _wrap(angle: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


class PushTExpert:
    """Plans agent targets for a gym-pusht env (`env` is the unwrapped PushTEnv)."""

    def __init__(self, env, *, rng: np.random.Generator, candidates: int = 64, horizon: int = 16, replan: int = 4):
        gym = _import_gym_pusht()
        self.env = env
        self.rng = rng
        self.candidates = candidates
        self.horizon = horizon
        self.replan = replan
        self._shadow_wrapped = gym.make("gym_pusht/PushT-v0", obs_type="state")
        self.shadow = self._shadow_wrapped.unwrapped
        self.shadow.reset(seed=0)
        self.plan: np.ndarray | None = None
        self.step_in_plan = 0

    def close(self) -> None:
        self._shadow_wrapped.close()

    def _copy_state(self) -> tuple:
        e = self.env
        return (tuple(e.agent.position), tuple(e.agent.velocity), float(e.block.angle), tuple(e.block.position),
                tuple(e.block.velocity), float(e.block.angular_velocity))

    def _set_shadow(self, state: tuple) -> None:
        s = self.shadow
        agent_pos, agent_vel, angle, block_pos, block_vel, block_w = state
        s.agent.position = agent_pos
        s.agent.velocity = agent_vel
        s.block.angle = angle  # angle first: it rotates about the centre of gravity
        s.block.position = block_pos
        s.block.velocity = block_vel
        s.block.angular_velocity = block_w
        s.space.reindex_shapes_for_body(s.block)
        s.space.reindex_shapes_for_body(s.agent)

    def _rollout_cost(self, actions: np.ndarray, state: tuple) -> float:
        s = self.shadow
        self._set_shadow(state)
        n_sub = int(1 / (s.dt * s.control_hz))
        cost = 0.0
        for t, action in enumerate(actions):
            ax, ay = float(action[0]), float(action[1])
            for _ in range(n_sub):
                px, py = s.agent.position
                vx, vy = s.agent.velocity
                s.agent.velocity = (vx + (s.k_p * (ax - px) - s.k_v * vx) * s.dt,
                                    vy + (s.k_p * (ay - py) - s.k_v * vy) * s.dt)
                s.space.step(s.dt)
            if (t + 1) % 4 == 0:
                bx, by = s.block.position
                err = math.hypot(bx - GOAL[0], by - GOAL[1]) + ANGLE_WEIGHT * abs(float(_wrap(s.block.angle - GOAL[2])))
                ax_, ay_ = s.agent.position
                reach = math.hypot(ax_ - bx, ay_ - by)
                cost += err + 0.05 * reach
        return cost

    def _sample(self) -> list[np.ndarray]:
        e = self.env
        agent = np.array(e.agent.position)
        block = np.array(e.block.position)
        h = self.horizon
        out = []
        if self.plan is not None:
            shifted = np.concatenate([self.plan[self.replan:], np.repeat(self.plan[-1:], self.replan, axis=0)])
            out.append(shifted)
        half = h // 2
        while len(out) < self.candidates:
            centre = block if self.rng.random() < 0.75 else agent
            k1 = centre + self.rng.normal(0, 70, 2)
            k2 = k1 + self.rng.normal(0, 50, 2)
            seg1 = agent + (k1 - agent) * (np.arange(1, half + 1)[:, None] / half)
            seg2 = k1 + (k2 - k1) * (np.arange(1, h - half + 1)[:, None] / (h - half))
            out.append(np.clip(np.concatenate([seg1, seg2]), 0, 512))
        return out

    def act(self) -> np.ndarray:
        if self.plan is None or self.step_in_plan >= self.replan:
            state = self._copy_state()
            cands = self._sample()
            costs = [self._rollout_cost(c, state) for c in cands]
            self.plan = cands[int(np.argmin(costs))]
            self.step_in_plan = 0
        action = self.plan[self.step_in_plan]
        self.step_in_plan += 1
        return action.astype(np.float32)


def _record(env, obs: dict, act, max_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step a gym-pusht env from its reset observation `obs` with `act(pixels) -> action`
    until it terminates or `max_steps`: frames (T+1, 96, 96, 3), actions (T, 2), coverage
    after each step (T,)."""
    frames, actions, coverage = [obs["pixels"].copy()], [], []
    for _ in range(max_steps):
        action = act(obs["pixels"])
        obs, _, terminated, _, info = env.step(action)
        frames.append(obs["pixels"].copy())
        actions.append(action)
        coverage.append(float(info["coverage"]))
        if terminated:
            break
    return np.stack(frames), np.stack(actions), np.array(coverage)


def run_expert(seed: int, *, max_steps: int = 300, candidates: int = 64) -> dict:
    """One demonstration from reset(seed): frames (T+1, 96, 96, 3), actions (T, 2), coverage per step."""
    gym = _import_gym_pusht()
    wrapped = gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", render_mode="rgb_array")
    env = wrapped.unwrapped
    obs, _ = env.reset(seed=int(seed))
    expert = PushTExpert(env, rng=np.random.default_rng([7, int(seed)]), candidates=candidates)
    try:
        frames, actions, coverage = _record(env, obs, lambda _pixels: expert.act(), max_steps)
    finally:
        expert.close()
        wrapped.close()
    return {"frames": frames, "actions": actions, "coverage": coverage, "seed": seed}


def run_frame_expert(seed: int, *, max_steps: int = 300, policy: str = "pusher") -> dict:
    """One demonstration from reset(seed) by a frame-only policy of `dream.eval.policies`
    (default `pusher`: it reads the agent and the block off each 96×96 frame and pushes the
    block home; 50 / 50 test-split successes in gym-pusht). Same result layout as `run_expert`."""
    from dream.eval.policies import make_policy

    gym = _import_gym_pusht()
    wrapped = gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", render_mode="rgb_array")
    env = wrapped.unwrapped
    obs, _ = env.reset(seed=int(seed))
    actor = make_policy(policy)
    actor.start([int(seed)])
    try:
        frames, actions, coverage = _record(env, obs, lambda pixels: actor.act(pixels[None])[0], max_steps)
    finally:
        wrapped.close()
    return {"frames": frames, "actions": actions, "coverage": coverage, "seed": seed}
