"""dream.envs speed: one imagined Push-T step vs one gym-pusht step, and N fused envs vs N single ones.

    python bench/envs.py [--episodes 4] [--steps 150] [--envs 8] [--repeats 3] [--policies pusher,random-walk]
                         [--profile]

The actions are those a policy took in the simulator on test-split start states (seeds
2 000 000 …), replayed open loop in both worlds so both step the same actions: ``pusher``'s
(the block moves in most steps: the model redraws it and the reward reads it) and
``random-walk``'s (it rarely moves: the agent's crops are redrawn, the reward carries
over). Only ``env.step`` is timed (the policy's own frame reading is not).

* single: `WorldModelEnv` on pusht-96 (model step + frame drawn + gym-pusht's reward read
  off the frame) vs gym-pusht's ``env.step`` (physics + 96×96 render + shapely coverage),
  median ms per step over alternating repeats; also the imagined step without its reward
  (``reward=`` a constant), to show what the frame reading costs;
* fused: `WorldModelVectorEnv` with N rows vs N `WorldModelEnv`s stepped one after the
  other, as env-steps per second (their ratio: the fused speed-up).

``--profile`` also prints where the time of a step goes (the drawing, the dynamics and the
reward timed in place; the block crops include their batched rasterising), for one env and
for N fused.

Ratios are measured in one run; absolute figures are printed with the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script


def policy_actions(policy: str, episodes: int, steps: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Start frames and the actions (E, steps, 2) `policy` took from them in the simulator."""
    from dream.eval.policies import make_policy
    from dream.sim.pusht import TEST_SEED_OFFSET, PushTSim

    sim = PushTSim()
    starts, actions = [], np.zeros((episodes, steps, 2), np.float32)
    for e in range(episodes):
        seed = TEST_SEED_OFFSET + e
        frame = sim.reset(seed)
        starts.append(frame)
        driver = make_policy(policy)
        driver.start([seed])
        for t in range(steps):
            actions[e, t] = driver.act(frame[None])[0]
            frame = sim.step(actions[e, t])
    sim.close()
    return starts, actions


def time_sim(starts: list[np.ndarray], actions: np.ndarray) -> float:
    """Seconds per gym-pusht env.step (its own reward and observation included)."""
    from dream.sim.pusht import TEST_SEED_OFFSET, PushTSim

    sim = PushTSim()
    total, n = 0.0, 0
    for e in range(len(starts)):
        sim.env.reset(seed=TEST_SEED_OFFSET + e)
        for a in actions[e]:
            t0 = time.perf_counter()
            sim.env.step(a)
            total += time.perf_counter() - t0
            n += 1
    sim.close()
    return total / n


def time_single(model, starts: list[np.ndarray], actions: np.ndarray, reward=None) -> float:
    """Seconds per WorldModelEnv.step (max_episode_steps off, so every action is stepped)."""
    from dream.envs import WorldModelEnv

    env = WorldModelEnv(model, reward=reward, max_episode_steps=None)
    total, n = 0.0, 0
    for start, acts in zip(starts, actions, strict=True):
        env.reset(options={"start_frame": start})
        for a in acts:
            t0 = time.perf_counter()
            _, _, terminated, _, _ = env.step(a)
            total += time.perf_counter() - t0
            n += 1
            if terminated:
                env.reset(options={"start_frame": start})
    env.close()
    return total / n


def time_fused(model, starts: list[np.ndarray], actions: np.ndarray, n_envs: int) -> float:
    """Seconds per env-step of one WorldModelVectorEnv of n_envs rows (each row a start state, cycled)."""
    from dream.envs import WorldModelVectorEnv

    rows = [i % len(starts) for i in range(n_envs)]
    # an episode that ends restarts from one of the same start states (whose scene is read once,
    # as the single env's resets to its start frame are)
    vec = WorldModelVectorEnv(model, n_envs, max_episode_steps=None, start_frames=starts)
    vec.reset(options={"start_frames": [starts[r] for r in rows]})
    total = 0.0
    for t in range(actions.shape[1]):
        step = np.stack([actions[r, t] for r in rows])
        t0 = time.perf_counter()
        vec.step(step)
        total += time.perf_counter() - t0
    vec.close()
    return total / (actions.shape[1] * n_envs)


def profile_steps(model, starts: list[np.ndarray], actions: np.ndarray, n_envs: int) -> None:
    """Print the share of env.step time spent drawing the block's and the agent's crops, in the
    block dynamics and in the reward (those functions timed in place: a few calls a step)."""
    import dream.engine.models.pusht.dynamics as dynamics
    import dream.engine.models.pusht.render as render
    from dream.envs import WorldModelEnv, WorldModelVectorEnv
    from dream.envs.env import _Core

    spent = {"block crops (render_layers)": 0.0, "agent crops (render_windows)": 0.0,
             "block dynamics (step_poses)": 0.0, "reward": 0.0}
    patched = [(render.SceneRenderer, "render_layers", "block crops (render_layers)"),
               (render.SceneRenderer, "block_rasters", "block crops (render_layers)"),
               (render, "render_windows", "agent crops (render_windows)"),
               (dynamics, "step_poses", "block dynamics (step_poses)"), (_Core, "score", "reward")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patched if hasattr(owner, name)]
    depth = [0]  # a call timed inside another timed call counts for the outer one only

    def timed(fn, part):
        def wrapper(*a, **k):
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[part] += time.perf_counter() - t0
        return wrapper

    rows = [i % len(starts) for i in range(n_envs)]
    if n_envs == 1:
        env = WorldModelEnv(model, max_episode_steps=None)
        env.reset(options={"start_frame": starts[0]})
        steps = list(actions[0])
    else:
        env = WorldModelVectorEnv(model, n_envs, max_episode_steps=None, start_frames=starts)
        env.reset(options={"start_frames": [starts[r] for r in rows]})
        steps = [np.stack([actions[r, t] for r in rows]) for t in range(actions.shape[1])]
    for owner, name, part in patched:
        if hasattr(owner, name):  # block_rasters: absent before the batched block raster
            setattr(owner, name, timed(getattr(owner, name), part))
    try:
        total = 0.0
        for a in steps:
            t0 = time.perf_counter()
            out = env.step(a)
            total += time.perf_counter() - t0
            if n_envs == 1 and out[2]:  # terminated: start again, as time_single does
                env.reset(options={"start_frame": starts[0]})
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
        env.close()
    print(f"  where a step's time goes, {'one env' if n_envs == 1 else f'N={n_envs} fused'} "
          f"({total / len(steps) / n_envs * 1e3:.3f} ms per env-step): "
          + ", ".join(f"{part} {t / total:.0%}" for part, t in spent.items())
          + f", the rest {1 - sum(spent.values()) / total:.0%}")


def measure(model, policy: str, args: argparse.Namespace) -> None:
    starts, actions = policy_actions(policy, args.episodes, args.steps)

    def no_reward(frame):
        return 0.0

    sim, single, bare, fused, alone = [], [], [], [], []
    for _ in range(args.repeats):  # alternate, so a noisy neighbour hits all alike
        sim.append(time_sim(starts, actions))
        single.append(time_single(model, starts, actions))
        bare.append(time_single(model, starts, actions, reward=no_reward))
        fused.append(time_fused(model, starts, actions, args.envs))
        alone.append(time_single(model, starts * (args.envs // len(starts) or 1), np.concatenate(
            [actions] * (args.envs // len(starts) or 1))[: args.envs]))
    med = {k: statistics.median(v) for k, v in
           {"sim": sim, "single": single, "bare": bare, "fused": fused, "alone": alone}.items()}
    print(f"actions: {policy}'s, {args.episodes} test-split episodes x {args.steps} steps, replayed open loop; "
          f"median of {args.repeats} alternating repeats")
    print(f"  gym-pusht env.step:                    {med['sim'] * 1e3:7.3f} ms  ({1 / med['sim']:7.0f} steps/s)")
    print(f"  WorldModelEnv.step (coverage reward):  {med['single'] * 1e3:7.3f} ms  ({1 / med['single']:7.0f} steps/s)"
          f"  = {med['sim'] / med['single']:.2f}x gym-pusht's steps/s")
    print(f"  WorldModelEnv.step (no reward):        {med['bare'] * 1e3:7.3f} ms  ({1 / med['bare']:7.0f} steps/s)"
          f"  = {med['sim'] / med['bare']:.2f}x gym-pusht's steps/s")
    print(f"  WorldModelVectorEnv, N={args.envs} fused:        {med['fused'] * 1e3:7.3f} ms per env-step  "
          f"({1 / med['fused']:7.0f} env-steps/s) = {med['alone'] / med['fused']:.2f}x the env-steps/s of one "
          f"WorldModelEnv ({1 / med['alone']:.0f}/s)")
    if args.profile:
        profile_steps(model, starts, actions, 1)
        profile_steps(model, starts, actions, args.envs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--policies", default="pusher,random-walk",
                   help="whose actions to replay (pusher: the block moves most steps; random-walk: it rarely does)")
    p.add_argument("--profile", action="store_true", help="also print where a step's time goes")
    args = p.parse_args()
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import dream

    client = dream.Client()
    model = client.models.get("pusht-96")
    starts, actions = policy_actions("random-walk", 1, 10)
    time_single(model, starts, actions)  # load the model, warm caches
    print(f"machine: {describe_machine()}")
    for policy in args.policies.split(","):
        measure(model, policy, args)
    client.close()


if __name__ == "__main__":
    main()
