"""Built-in model on CPU: canonical rollout wall, real-time factor, and K=8 vs K=1.

    python bench/engine_cpu.py [--repeats 20] [--threads 2]
    python bench/engine_cpu.py --contended [--repeats 8]

--contended measures the CPU thread policy instead: the canonical rollout quiet, then
while a CPU hog of this script's own (one busy process per usable CPU but one) shares
the cores, for the engine's policy (threads = usable CPUs, OpenMP waits passively) and
for torch's defaults (busy-waiting OpenMP), each in a fresh process. Prints the
contended/quiet wall ratio of each (target for the policy: <= 2x).

Measures, in one run on this machine, through the Engine (validation + runner):
  * the canonical pusht-96 rollout (T=48 → 49 frames at 10 fps), engine only and with
    mp4 encoding, as median wall and as a multiple of real time (4.9 s of video);
  * K=8 candidates in one fused predict_batch vs K=1 (ratio of walls; 8.0 would mean no
    benefit from fusing).
Absolute figures are printed with the machine they came from.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _hog() -> None:
    while True:
        pass


def contended_child(repeats: int, hogs: int) -> None:
    """In this (fresh) process: median canonical wall quiet, then with `hogs` busy processes."""
    import multiprocessing as mp

    from dream.engine.engine import Engine
    from dream.examples import pusht_episode

    engine = Engine(["pusht-96"], device="cpu")
    spec = engine.spec("pusht-96")
    ep = pusht_episode(0)
    frame, actions = ep.start_frame, ep.actions[: spec.canonical_T]
    engine.predict(frame, actions)
    quiet = statistics.median(timed(lambda: engine.predict(frame, actions), repeats))
    procs = [mp.get_context("fork").Process(target=_hog, daemon=True) for _ in range(hogs)]
    for p in procs:
        p.start()
    try:
        time.sleep(0.5)
        busy = statistics.median(timed(lambda: engine.predict(frame, actions), repeats))
    finally:
        for p in procs:
            p.terminate()
            p.join()
    import torch

    print(f"{quiet} {busy} {torch.get_num_threads()}")


def contended(repeats: int) -> None:
    import os
    import subprocess
    import sys

    from dream.engine.threads import usable_cpus

    cpus = usable_cpus()
    hogs = max(1, cpus - 1)
    print(f"machine: {describe_machine()}")
    print(f"usable CPUs: {cpus}; CPU hog: {hogs} busy process(es); canonical pusht-96 rollout, median of {repeats}")
    base_env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    variants = [
        ("engine policy (passive wait, usable CPUs)", base_env),
        ("torch defaults (OpenMP spins)", {**base_env, "OMP_WAIT_POLICY": "ACTIVE"}),
    ]
    ratios = {}
    for label, env in variants:
        out = subprocess.run(
            [sys.executable, __file__, "--contended-child", str(repeats), str(hogs)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.split()
        quiet, busy, threads = float(out[-3]), float(out[-2]), int(out[-1])
        ratios[label] = busy / quiet
        print(f"  {label:<44} threads={threads}: quiet {quiet * 1000:7.1f} ms, contended {busy * 1000:7.1f} ms, "
              f"ratio {busy / quiet:5.2f}")
    r = ratios[variants[0][0]]
    print(f"contended/quiet ratio with the engine policy: {r:.2f} (target <= 2.00: {'met' if r <= 2.0 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=None, help="timed rollouts per figure (default 20; 8 contended)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--contended", action="store_true", help="measure the thread policy under a CPU hog")
    parser.add_argument("--contended-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contended_child:
        contended_child(*args.contended_child)
        return
    if args.contended:
        contended(args.repeats or 8)
        return
    args.repeats = args.repeats or 20

    from dream.engine.engine import Engine
    from dream.examples import pusht_episode

    engine = Engine(["pusht-96"], device="cpu", threads=args.threads)
    engine.load("pusht-96")
    spec = engine.spec("pusht-96")
    ep = pusht_episode(0)
    frame, actions = ep.start_frame, ep.actions[: spec.canonical_T]
    k8 = np.stack([actions + np.float32(5 * k) for k in range(8)])

    for _ in range(3):  # warm caches and allocator
        engine.predict(frame, actions)
        engine.predict_batch(frame, k8)

    single = timed(lambda: engine.predict(frame, actions), args.repeats)
    frames = engine.predict(frame, actions).frames[0]
    encode = timed(lambda: engine.encode_mp4(frames), args.repeats)
    batch = timed(lambda: engine.predict_batch(frame, k8), max(5, args.repeats // 2))

    video_s = spec.canonical_frames / spec.fps
    s1, enc, s8 = statistics.median(single), statistics.median(encode), statistics.median(batch)
    print(f"machine: {describe_machine()}")
    print(f"spec {spec.slug}: T={spec.canonical_T} → {spec.canonical_frames} frames ({video_s:.1f} s of video at {spec.fps} fps)")
    print(f"canonical rollout, engine only : median {s1 * 1000:7.1f} ms  (p90 {np.percentile(single, 90) * 1000:.1f} ms)"
          f"  → {video_s / s1:5.1f}x real time, {spec.canonical_frames / s1:.0f} frames/s")
    print(f"canonical rollout + mp4 encode : median {(s1 + enc) * 1000:7.1f} ms  → {video_s / (s1 + enc):5.1f}x real time")
    print(f"K=8 fused batch                : median {s8 * 1000:7.1f} ms")
    print(f"ratio K=8 / K=1 wall           : {s8 / s1:.2f}  (8.00 = no gain from fusing; "
          f"{8 * s1 / s8:.1f}x the throughput of 8 single calls)")
    target = 0.1 * video_s
    print(f"target canonical wall < {target:.2f} s (10x real time): {'met' if s1 < target else 'NOT met'}")


if __name__ == "__main__":
    main()
