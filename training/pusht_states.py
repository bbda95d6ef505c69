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
    python training/pusht_states.py --split train --count 1000 --distribution aimed

``--distribution`` picks one of `dream.sim.pusht_actions.DISTRIBUTIONS` (default
``scripted``, the seed's scripted policy; its seeds are those of the split's range
from its start, so its cache keeps the old name); the others are cached as
``states-<distribution>-<split>-<count>x<steps>.npz``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dream.sim.pusht_actions import DISTRIBUTIONS, episode_seed, simulate_distribution

DATA = Path(__file__).resolve().parent / "data"
SPLITS = ("train", "val")
CHUNK = 250


def simulate(seeds: list[int], steps: int, distribution: str = "scripted") -> dict[str, np.ndarray]:
    """Run `distribution`'s episodes of `seeds` for `steps` actions each; arrays as in the module docstring."""
    bar = tqdm(total=len(seeds), desc=f"simulating {distribution}", unit="episode", leave=False)
    data = simulate_distribution(distribution, seeds, steps, progress=bar.update)
    bar.close()
    return data


def load_split(split: str, count: int, steps: int, distribution: str = "scripted") -> dict[str, np.ndarray]:
    """The cached episodes of `distribution` in `split` (simulating the missing chunks first)."""
    tag = "" if distribution == "scripted" else f"{distribution}-"
    path = DATA / f"states-{tag}{split}-{count}x{steps}.npz"
    if path.exists():
        return dict(np.load(path))
    DATA.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in tqdm(range(0, count, CHUNK), desc=f"{split} chunks", unit="chunk"):
        chunk = DATA / f"states-{tag}{split}-{start}-{min(start + CHUNK, count)}x{steps}.npz"
        if not chunk.exists():
            seeds = [episode_seed(distribution, split, i) for i in range(start, min(start + CHUNK, count))]
            data = simulate(seeds, steps, distribution)
            np.savez(chunk.with_suffix(".tmp.npz"), **data)
            chunk.with_suffix(".tmp.npz").rename(chunk)
        parts.append(dict(np.load(chunk)))
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    np.savez(path.with_suffix(".tmp.npz"), **data)
    path.with_suffix(".tmp.npz").rename(path)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=SPLITS, required=True)
    parser.add_argument("--distribution", choices=DISTRIBUTIONS, default="scripted")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--steps", type=int, default=64)
    args = parser.parse_args()
    data = load_split(args.split, args.count, args.steps, args.distribution)
    moved = np.abs(np.diff(data["block"], axis=1)).max(axis=2) > 1e-6
    print(f"{args.distribution} {args.split}: {len(data['seeds'])} episodes × {args.steps} steps; block moved in {moved.mean():.1%} of steps")


if __name__ == "__main__":
    main()
