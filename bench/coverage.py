"""How well `dream.envs.pusht_coverage` estimates gym-pusht's coverage from 96×96 frames.

    python bench/coverage.py [--episodes 12] [--steps 150]

Frames of the test split (seeds 2 000 000 …), with the simulator's own coverage
(``env._get_coverage()``, shapely on the true poses) as the truth:

* ``pusher`` episodes (the block is pushed from its start into the goal: coverage from
  0 to > 0.95),
* the simulator's scripted episodes (`dream.sim.pusht.generate_episode`, seek-and-push
  and random walks: mostly low coverage),
* start states placed near the goal (block pose = the goal's + N(0, σ²) px and N(0, σ_a²):
  σ = 4 px, σ_a = 3° for half of them, 12 px and 9° for the others; agent anywhere;
  drawn from each test seed), where success (> 0.95) is decided.

Reports the mean / max absolute error, the bias, errors by coverage band, how often the
estimate and the simulator agree on success (> 0.95), and the time per frame: read whole
(`read_scene`, batched and one at a time) and tracked from the previous frame's pose
(`PushTCoverage`, what the environments use).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script


def collect(episodes: int, steps: int) -> tuple[np.ndarray, np.ndarray, list[int], dict[str, slice]]:
    """Test-split frames, the simulator's coverage of each, and where each episode starts."""
    from dream.eval.policies import make_policy
    from dream.sim.pusht import TEST_SEED_OFFSET, PushTSim, generate_episode

    sim = PushTSim()
    frames: list[np.ndarray] = []
    cover: list[float] = []
    starts: list[int] = []
    kinds: dict[str, slice] = {}
    lo = 0
    for e in range(episodes):  # pusher episodes
        seed = TEST_SEED_OFFSET + 500 + e
        frame = sim.reset(seed)
        policy = make_policy("pusher")
        policy.start([seed])
        starts.append(len(frames))
        for _ in range(steps):
            frames.append(frame)
            cover.append(sim.env._get_coverage())
            obs, _, terminated, _, _ = sim.env.step(policy.act(frame[None])[0])
            frame = obs["pixels"]
            if terminated:
                frames.append(frame)
                cover.append(sim.env._get_coverage())
                break
    kinds["pusher episodes"] = slice(lo, len(frames))
    lo = len(frames)
    for e in range(episodes):  # the simulator's scripted episodes
        ep = generate_episode(TEST_SEED_OFFSET + 600 + e, min(steps, 64), sim=sim)
        starts.append(len(frames))
        sim.reset(TEST_SEED_OFFSET + 600 + e)
        cover.append(sim.env._get_coverage())
        for a in ep.actions:
            sim.env.step(a)
            cover.append(sim.env._get_coverage())
        frames += list(ep.frames)
    kinds["scripted episodes"] = slice(lo, len(frames))
    lo = len(frames)
    for e in range(episodes * 20):  # near the goal, one frame each
        seed = TEST_SEED_OFFSET + 700 + e
        rng = np.random.default_rng(seed)
        spread = 1.0 if e % 2 else 3.0  # half within a few px and degrees of the goal, where success is decided
        angle = math.pi / 4 + rng.normal(0, math.radians(3 * spread))
        # gym-pusht sets the block's origin at angle 0, then turns it about its centre of gravity (0, 45)
        cog = np.array([256.0 - math.sin(angle) * 45.0, 256.0 + math.cos(angle) * 45.0]) + rng.normal(0, 4 * spread, 2)
        state = np.array([*rng.uniform(50, 450, 2), cog[0], cog[1] - 45.0, angle])
        obs, _ = sim.env.reset(seed=seed, options={"reset_to_state": state})
        starts.append(len(frames))
        frames.append(obs["pixels"])
        cover.append(sim.env._get_coverage())
    kinds["near the goal"] = slice(lo, len(frames))
    sim.close()
    return np.stack(frames), np.array(cover), starts, kinds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=12)
    p.add_argument("--steps", type=int, default=150)
    args = p.parse_args()
    from dream.engine.models.pusht.posefit import read_scene
    from dream.envs.pusht import PushTCoverage, pusht_coverage

    frames, truth, starts, kinds = collect(args.episodes, args.steps)
    t0 = time.perf_counter()
    whole = pusht_coverage(frames)
    batched = (time.perf_counter() - t0) / len(frames)
    t0 = time.perf_counter()
    for f in frames[:200]:
        read_scene(f)
    single = (time.perf_counter() - t0) / min(200, len(frames))
    # as the environments score frames: one reward object, each episode's frames in order
    reward = PushTCoverage()
    tracked = np.zeros(len(frames))
    bounds = [*starts, len(frames)]
    t0 = time.perf_counter()
    for e in range(len(starts)):
        reward.forget([0])
        for i in range(bounds[e], bounds[e + 1]):
            tracked[i] = reward.env_reward(frames[i : i + 1], [0])[0][1]["coverage"]
    per_step = (time.perf_counter() - t0) / len(frames)
    print(f"machine: {describe_machine()}")
    print(f"{len(frames)} test-split frames: " + ", ".join(f"{k} {s.stop - s.start}" for k, s in kinds.items()))
    for name, est in (("read whole (pusht_coverage)", whole), ("as the envs score (PushTCoverage)", tracked)):
        err = est - truth
        print(f"{name}: mean abs error {np.abs(err).mean():.4f}, bias {err.mean():+.4f}, "
              f"p99 {np.quantile(np.abs(err), 0.99):.4f}, max {np.abs(err).max():.4f}")
        for label, band in (("coverage < 0.5", truth < 0.5), ("0.5 to 0.9", (truth >= 0.5) & (truth < 0.9)),
                            ("0.9 and over", truth >= 0.9)):
            if band.any():
                print(f"    {label:>15}: {band.sum():5d} frames, mean abs error {np.abs(err[band]).mean():.4f}")
        for kind, sl in kinds.items():
            print(f"    {kind:>17}: mean abs error {np.abs(err[sl]).mean():.4f}")
        agree = np.mean((est > 0.95) == (truth > 0.95))
        print(f"    success (> 0.95) decided as the simulator does on {agree:.4f} of frames "
              f"({int(((est > 0.95) & (truth <= 0.95)).sum())} false, {int(((est <= 0.95) & (truth > 0.95)).sum())} missed)")
    print(f"time per frame: read whole {batched * 1e3:.2f} ms batched, {single * 1e3:.2f} ms one at a time; "
          f"as the envs score (tracked / carried over) {per_step * 1e3:.2f} ms; "
          f"{reward.reads} of {len(frames)} frames fitted, the rest carried over")


if __name__ == "__main__":
    main()
