"""Ray Data back-end vs predict_many: rows/s with 1 and 2 CPU actors vs concurrency 1 and 2.

    python bench/ray_scaling.py [--rows 256] [--t 48]

The same rows (pusht-96, T actions each, a folder source into folder sinks) run four
ways in one process: `Client.predict_many` at concurrency 1 and 2, and
`dream.ray.predict_many` with 1 and 2 actors of 1 CPU each on a local Ray started
before the timings (cluster start excluded). Every run starts from a fresh engine, so
each pays its model load once (the Ray actors load theirs in parallel). Target on a
2-core machine: Ray with 1 actor <= 1.15x the wall of predict_many c=1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script


def write_rows(folder: Path, rows: int, t: int) -> None:
    from dream.examples import pusht_episode
    from dream.inputs import encode_npy, encode_png

    folder.mkdir(parents=True)
    for i in range(rows):
        ep = pusht_episode(i % 8)
        (folder / f"row{i:04d}.png").write_bytes(encode_png(ep.start_frame))
        (folder / f"row{i:04d}.npy").write_bytes(encode_npy(ep.actions[:t] + np.float32(i % 17)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 256 rows: at 64, Ray's fixed start-up (~3.7 s here) is a third of a ~10 s run.
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--t", type=int, default=48, help="actions per row (default 48: the canonical rollout)")
    args = parser.parse_args()
    try:
        import ray

        import dream.ray
    except ImportError as exc:
        print(f"ray_scaling: skipped — {exc}")
        return
    import dream
    from dream.engine.threads import usable_cpus
    from dream.io import RolloutSink, frames_from_dir

    cpus = usable_cpus()
    print(f"machine: {describe_machine()}")
    print(f"{args.rows} rows of pusht-96, T={args.t}; local Ray with {cpus} CPUs (start excluded)")
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    walls: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dream-bench-ray-") as tmp:
        root = Path(tmp)
        write_rows(root / "src", args.rows, args.t)
        runs = {
            "predict_many c=1": lambda out: dream.Client(threads=1).predict_many(
                frames_from_dir(root / "src"), RolloutSink.dir(out), spec="pusht-96", concurrency=1, progress=False),
            "predict_many c=2": lambda out: dream.Client().predict_many(
                frames_from_dir(root / "src"), RolloutSink.dir(out), spec="pusht-96", concurrency=2, progress=False),
            "ray 1 actor": lambda out: dream.ray.predict_many(
                frames_from_dir(root / "src"), RolloutSink.dir(out), spec="pusht-96", num_actors=1, progress=False),
            "ray 2 actors": lambda out: dream.ray.predict_many(
                frames_from_dir(root / "src"), RolloutSink.dir(out), spec="pusht-96", num_actors=2, progress=False),
        }
        for i, (name, run) in enumerate(runs.items()):
            t0 = time.perf_counter()
            result = run(root / f"out{i}")
            walls[name] = time.perf_counter() - t0
            if result.ok != args.rows:
                raise SystemExit(f"{name}: {result.ok}/{args.rows} rows ok: {result.failures[:3]}")
    ray.shutdown()
    base = walls["predict_many c=1"]
    for name, wall in walls.items():
        print(f"  {name:<17} {wall:7.2f} s  {args.rows / wall:6.2f} rows/s  ({wall / base:.2f}x the wall of c=1)")
    r = walls["ray 1 actor"] / base
    print(f"ray 1 actor / predict_many c=1 wall: {r:.2f} (target <= 1.15: {'met' if r <= 1.15 else 'NOT met'})")


if __name__ == "__main__":
    main()
