"""dream.plan speed: plan() wall at the defaults (engine vs optimiser), K scaling, and the paths.

    python bench/plan.py [--pairs 3] [--small-samples 32] [--no-http]

Start frames and goals are validation-split pairs (seeds 1 000 000 …; goal = 25 scripted
seek-push steps away, as `dream eval --task plan`), so the numbers are those of the
benchmark's workload. Printed, all measured in this one run:

* plan() at pusht-96's defaults (CEM, K = 300, 10 iterations, horizon 30): median wall,
  split into engine time (candidate rollouts and their poses) and optimiser time
  (sampling, refits, the cost), over `--pairs` pairs × 3 plans (cold, then warm-started);
* K scaling: plan() wall for K = 50 … 600 at 10 iterations;
* the paths at a small budget (K = `--small-samples`, 2 iterations), per plan:
  - embedded fast path (poses, no frame drawn; the runner's BLAS products),
  - the same with the runner's exact (einsum) products,
  - embedded through ``predict_batch`` (every frame drawn, mp4 encoded and decoded, poses
    read back off the frames),
  - HTTP: ``dream.Client(base_url=...)`` against a real ``dream serve`` on loopback;
  and their ratios to the fast path.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script


def pairs(n: int) -> list:
    from dream.eval.plan_eval import make_pair
    from dream.sim.pusht import VAL_SEED_OFFSET, PushTSim

    sim = PushTSim()
    return [make_pair(VAL_SEED_OFFSET + i, sim) for i in range(n)]


def timed_plans(model, ps, **options) -> tuple[list[float], list[float]]:
    """(wall, engine) seconds of 3 plans per pair (a cold one, then two warm-started ones)."""
    from dream.plan import CEM, goal_image_cost

    walls, engines = [], []
    for pair in ps:
        planner = CEM(model, goal_image_cost(pair.goal), **options)
        for _ in range(3):
            planner.plan(pair.start)
            planner.shift(5)
            walls.append(planner.last.wall_s)
            engines.append(planner.last.engine_s)
    return walls, engines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--small-samples", type=int, default=32)
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP path (no server started)")
    args = parser.parse_args()
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

    import dream
    from dream.engine.engine import Engine
    from dream.plan import CEM, goal_image_cost
    from dream.plan.models import EmbeddedImagination

    print(describe_machine())
    engine = Engine(["pusht-96"])
    engine.load("pusht-96")
    local = dream.Client(engine=engine).models.get("pusht-96")
    ps = pairs(args.pairs)
    timed_plans(local, ps[:1], samples=16, iterations=1)  # warm up (pose fits cached per frame)

    walls, engines = timed_plans(local, ps)
    med, eng = statistics.median(walls), statistics.median(engines)
    print(f"\nplan() at pusht-96's defaults (CEM, K=300, 10 iterations, horizon 30), {len(walls)} plans:")
    print(f"  median {med:.3f} s (p90 {np.percentile(walls, 90):.3f} s): engine {eng:.3f} s, optimiser "
          f"{med - eng:.3f} s; {300 * 10 / med:.0f} candidate rollouts of 30 actions per second")

    print("\nK scaling (10 iterations):")
    base = None
    for k in (50, 100, 300, 600):
        w, _ = timed_plans(local, ps[:1], samples=k, elites=max(2, k // 10))
        m = statistics.median(w)
        base = base or m
        print(f"  K={k:<4} median plan() {m:.3f} s  ({m / base:.2f}x K=50)")

    small = {"samples": args.small_samples, "iterations": 2, "elites": 4}
    print(f"\npaths at K={args.small_samples}, 2 iterations (median over {len(ps)} pairs x 3 plans):")
    rows = {}
    rows["embedded, fast path (poses, BLAS products)"] = statistics.median(timed_plans(local, ps, **small)[0])
    exact = EmbeddedImagination(engine, "pusht-96", exact=True)
    rows["embedded, fast path, exact einsum products"] = statistics.median(timed_plans(exact, ps, **small)[0])
    via_mp4 = dream.Client(engine=engine).models.get("pusht-96")

    def batch_plans(model) -> float:
        walls = []
        for pair in ps:
            planner = CEM(model, goal_image_cost(pair.goal), fast=False, **small)
            for _ in range(3):
                planner.plan(pair.start)
                planner.shift(5)
                walls.append(planner.last.wall_s)
        return statistics.median(walls)

    rows["embedded via predict_batch (mp4, poses read off frames)"] = batch_plans(via_mp4)
    if not args.no_http:
        from _server import bench_server, funded_key

        with tempfile.TemporaryDirectory(prefix="dream-bench-") as tmp:
            db = f"sqlite:///{tmp}/ledger.sqlite3"
            key, _ = funded_key(db, "bench", 10**12)
            with bench_server(tmp, db, "pusht-96", threads=1, batch_window_ms=0, max_concurrent=10_000) as server:
                remote = dream.Client(base_url=server.url, api_key=key).models.get("pusht-96")
                batch_plans(remote)  # warm up the server
                rows["HTTP: dream serve on loopback (predict_batch, 64 per request)"] = batch_plans(remote)
    fast = rows["embedded, fast path (poses, BLAS products)"]
    for label, wall in rows.items():
        print(f"  {label:<64} {wall:7.3f} s  ({wall / fast:6.1f}x the fast path)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
