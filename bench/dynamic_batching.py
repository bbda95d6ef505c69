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
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script
from _server import bench_server, funded_key, served_spec


def run(window_ms: float, spec, key: str, db: str, tmp: str) -> tuple[float, float]:
    import httpx

    import dream
    from dream.inputs import encode_npy, encode_png

    h, w = spec.resolution
    frame = encode_png(np.full((h, w, 3), 235, np.uint8))

    with bench_server(tmp, db, spec.slug, threads=args.threads, batch_window_ms=window_ms,
                      extra_args=("--max-batch", str(args.concurrency)), log_name=f"serve-{window_ms}.log") as server:
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
    served = served_spec(args.spec)
    if served is None:
        return 0
    _, spec = served
    with tempfile.TemporaryDirectory(prefix="dream-bench-") as tmp:
        db = f"sqlite:///{tmp}/ledger.sqlite3"
        key, _ = funded_key(db, "bench", 10**12)
        off, off_k = run(0, spec, key, db, tmp)
        on, on_k = run(args.window_ms, spec, key, db, tmp)
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
    args = parser.parse_args()
    sys.exit(main())
