"""Simulate gym-pusht episodes into compressed npz shards for training pusht-96.

Each episode is `dream.sim.pusht.generate_episode(seed, num_steps)`: reset(seed), then
the seed's scripted policy (2/3 seek-and-push the block, 1/3 random walk) in closed
loop. Seeds come from the split's range (see `dream.sim.pusht`):

    train:  TRAIN_SEED_OFFSET + i  = 0 + i          (i < num_episodes)
    val:    VAL_SEED_OFFSET + i    = 1_000_000 + i

Test seeds (2_000_000 + i) are never generated here: they belong to `dream eval`.

Shard k of a split holds episodes [k*shard_size, (k+1)*shard_size) as
`<out>/<split>/shard-<k:05d>.npz` with arrays
    frames     uint8   (N, T+1, 96, 96, 3)
    actions    float32 (N, T, 2)
    agent_pos  float32 (N, T+1, 2)
    block_pose float32 (N, T+1, 3)
    seeds      int64   (N,)
    policies   <U16    (N,)
Shards are written to a temp name and renamed, and existing shards are skipped, so an
interrupted run resumes where it stopped.

    python training/generate.py --split train --num-episodes 4000 --workers 2
    python training/generate.py --split val --num-episodes 256 --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

from dream.sim.pusht import TRAIN_SEED_OFFSET, VAL_SEED_OFFSET, PushTSim, generate_episode

SPLIT_OFFSETS = {"train": TRAIN_SEED_OFFSET, "val": VAL_SEED_OFFSET}
DEFAULT_OUT = Path(__file__).resolve().parent / "data"


def write_shard(args: tuple[Path, int, list[int], int]) -> tuple[str, float]:
    path, _, seeds, num_steps = args
    started = time.perf_counter()
    sim = PushTSim()
    episodes = [generate_episode(seed, num_steps, sim=sim) for seed in seeds]
    sim.close()
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        frames=np.stack([e.frames for e in episodes]),
        actions=np.stack([e.actions for e in episodes]),
        agent_pos=np.stack([e.agent_pos for e in episodes]),
        block_pose=np.stack([e.block_pose for e in episodes]),
        seeds=np.array([e.seed for e in episodes], np.int64),
        policies=np.array([e.policy for e in episodes], "<U16"),
    )
    os.replace(tmp, path)
    return path.name, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", choices=sorted(SPLIT_OFFSETS), required=True)
    parser.add_argument("--num-episodes", type=int, required=True)
    parser.add_argument("--num-steps", type=int, default=64, help="actions per episode (frames = steps + 1)")
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    out = args.out / args.split
    out.mkdir(parents=True, exist_ok=True)
    offset = SPLIT_OFFSETS[args.split]
    jobs = []
    for k, start in enumerate(range(0, args.num_episodes, args.shard_size)):
        path = out / f"shard-{k:05d}.npz"
        if path.exists():
            continue
        seeds = [offset + i for i in range(start, min(start + args.shard_size, args.num_episodes))]
        jobs.append((path, k, seeds, args.num_steps))
    print(f"{args.split}: {len(jobs)} shards to write under {out}", flush=True)
    started = time.perf_counter()
    steps = 0
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for (name, seconds), job in zip(pool.imap(write_shard, jobs), jobs, strict=True):
            steps += len(job[2]) * args.num_steps
            rate = steps / (time.perf_counter() - started)
            print(f"{name} in {seconds:.1f}s; {steps} steps, {rate:.0f} steps/s overall", flush=True)
    print(f"done in {time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
