"""Simulate Push-T episodes keeping only the state (poses), for learning the block's dynamics.

Same episodes as `dream.sim.pusht.generate_episode` (reset(seed), then the seed's
scripted policy in closed loop) but the simulator is built with state observations, so
nothing is drawn: ~10× faster than with pixels. Cached per split as
``training/data/states-<split>-<count>x<steps>.npz`` with float64 arrays

    agent   (N, T+1, 2)  the agent's position at each frame (workspace px)
    block   (N, T+1, 3)  the block's centre of gravity x, y and angle at each frame
    actions (N, T, 2)    agent targets (float32 values, as the policy emits them)
    seeds   (N,)

Written in chunks to a temp name and renamed, so an interrupted run resumes.

    python training/pusht_states.py --split train --count 2000 --steps 64
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dream.sim.pusht import TRAIN_SEED_OFFSET, VAL_SEED_OFFSET, PushTState, _import_gym_pusht, policy_for_seed

DATA = Path(__file__).resolve().parent / "data"
OFFSETS = {"train": TRAIN_SEED_OFFSET, "val": VAL_SEED_OFFSET}
CHUNK = 250


def _state(env) -> tuple[np.ndarray, np.ndarray]:
    block = env.block
    cog = block.local_to_world(block.center_of_gravity)
    return np.array(env.agent.position, np.float64), np.array([cog.x, cog.y, block.angle], np.float64)


def simulate(seeds: range, steps: int) -> dict[str, np.ndarray]:
    """Run the episodes of `seeds` for `steps` actions each; arrays as in the module docstring."""
    gym = _import_gym_pusht()
    wrapped = gym.make("gym_pusht/PushT-v0", obs_type="state")
    env = wrapped.unwrapped
    agent = np.empty((len(seeds), steps + 1, 2))
    block = np.empty((len(seeds), steps + 1, 3))
    actions = np.empty((len(seeds), steps, 2), np.float32)
    for i, seed in enumerate(tqdm(seeds, desc="simulating", unit="episode", leave=False)):
        driver = policy_for_seed(seed)
        env.reset(seed=int(seed))
        for t in range(steps + 1):
            agent[i, t], block[i, t] = _state(env)
            if t == steps:
                break
            actions[i, t] = driver(PushTState(agent[i, t].copy(), block[i, t, :2].copy(), float(block[i, t, 2])))
            env.step(actions[i, t])
    wrapped.close()
    return {"agent": agent, "block": block, "actions": actions, "seeds": np.asarray(seeds, np.int64)}


def load_split(split: str, count: int, steps: int) -> dict[str, np.ndarray]:
    """The cached episodes of `split` (simulating the missing chunks first)."""
    path = DATA / f"states-{split}-{count}x{steps}.npz"
    if path.exists():
        return dict(np.load(path))
    DATA.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in tqdm(range(0, count, CHUNK), desc=f"{split} chunks", unit="chunk"):
        chunk = DATA / f"states-{split}-{start}-{min(start + CHUNK, count)}x{steps}.npz"
        if not chunk.exists():
            data = simulate(range(OFFSETS[split] + start, OFFSETS[split] + min(start + CHUNK, count)), steps)
            np.savez(chunk.with_suffix(".tmp.npz"), **data)
            chunk.with_suffix(".tmp.npz").rename(chunk)
        parts.append(dict(np.load(chunk)))
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    np.savez(path.with_suffix(".tmp.npz"), **data)
    path.with_suffix(".tmp.npz").rename(path)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=sorted(OFFSETS), required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--steps", type=int, default=64)
    args = parser.parse_args()
    data = load_split(args.split, args.count, args.steps)
    moved = np.abs(np.diff(data["block"], axis=1)).max(axis=2) > 1e-6
    print(f"{args.split}: {len(data['seeds'])} episodes × {args.steps} steps; block moved in {moved.mean():.1%} of steps")


if __name__ == "__main__":
    main()
