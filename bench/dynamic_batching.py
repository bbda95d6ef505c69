"""Dynamic batching: 8 concurrent single rollouts with batching on vs off.

Starts the same server twice (``--batch-window-ms 0``, then a window), fires rounds of 8
concurrent ``/v1/predict`` requests (same spec and parameters, distinct actions), and
prints rollouts/s for each and their ratio, plus the mean fused batch size the server
reports in /metrics.

    python bench/dynamic_batching.py                 # pusht-96, 6 rounds of 8
    python bench/dynamic_batching.py --window-ms 20 --rounds 10
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO)]

from _machine import describe_machine  # noqa: E402


def run(window_ms: float, spec, key: str, db: str, tmp: str, serve_module: str) -> tuple[float, float]:
    import httpx

    import dream
    from dream.inputs import encode_npy, encode_png
    from dream.server.process import ServerProcess

    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    serve_args = ["--spec", spec.slug, "--db", db, "--threads", str(args.threads), "--batch-window-ms", str(window_ms),
                  "--max-batch", str(args.concurrency), "--rate-limit", "0", "--max-concurrent", "0",
                  "--data-dir", f"{tmp}/data", "--log-level", "warning"]
    h, w = spec.resolution
    frame = encode_png(np.full((h, w, 3), 235, np.uint8))

    with ServerProcess(serve_args, module=serve_module, env=env, cwd=REPO, log_path=f"{tmp}/serve-{window_ms}.log") as server:
        client = dream.Client(base_url=server.url, api_key=key)

        def one(i: int) -> None:
            acts = np.random.default_rng(i + int(window_ms * 1000)).uniform(100, 400, (args.T, spec.action_dim))
            client.predict(frame_bytes=frame, actions_bytes=encode_npy(acts.astype(np.float32)))

        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, range(10**6, 10**6 + args.concurrency)))  # warm-up round
            t0 = time.perf_counter()
            for r in range(args.rounds):
                list(pool.map(one, range(r * args.concurrency, (r + 1) * args.concurrency)))
            wall = time.perf_counter() - t0
        metrics = httpx.get(server.url + "/metrics").text
        client.close()
    total = float(re.search(r"^dream_fused_batch_size_sum (\S+)", metrics, re.M).group(1))
    count = float(re.search(r"^dream_fused_batch_size_count (\S+)", metrics, re.M).group(1))
    return args.rounds * args.concurrency / wall, total / max(count, 1)


def main() -> int:
    from dream.engine.engine import Engine
    from dream.server.services.db import Database
    from dream.server.services.ledger import Ledger

    serve_module = "dream.server.commands"
    if args.test_specs:
        from tests.server import standin, tiny

        tiny.install()
        standin.install()
        serve_module = "tests.server.serve_main"
    from dream.server.services.readiness import weights_status

    engine = Engine([args.spec])
    status = weights_status(engine, args.spec)
    if not status.available:
        print(f"skipped: {args.spec} cannot run here ({status.message})")
        return 0
    spec = engine.spec(args.spec)
    with tempfile.TemporaryDirectory(prefix="dream-bench-") as tmp:
        db = f"sqlite:///{tmp}/ledger.sqlite3"
        key = Ledger(Database(db)).create_key("bench", credits_mils=10**12).key
        off, off_k = run(0, spec, key, db, tmp, serve_module)
        on, on_k = run(args.window_ms, spec, key, db, tmp, serve_module)
    print(f"machine: {describe_machine()}; server torch threads {args.threads}; {args.spec}, T={args.T}")
    print(f"{args.concurrency} concurrent single rollouts x {args.rounds} rounds:")
    print(f"  batching off (window 0 ms):       {off:7.2f} rollouts/s  (mean engine batch {off_k:.2f})")
    print(f"  batching on  (window {args.window_ms:g} ms): {on:7.2f} rollouts/s  (mean engine batch {on_k:.2f})")
    print(f"  throughput ratio on/off: {on / off:.2f}x")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="pusht-96")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--window-ms", type=float, default=10.0)
    parser.add_argument("--T", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--test-specs", action="store_true",
                        help="also register the test suite's specs (tiny-16, pusht-96-standin: the built-in architecture with "
                        "random weights) for measuring before the trained weights ship")
    args = parser.parse_args()
    sys.exit(main())
