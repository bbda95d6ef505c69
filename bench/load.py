"""Load: N clients send a fixed count of requests to one server; nothing may be lost or mis-billed.

Each client thread sends a mix of /v1/predict, /v1/rollouts (JSON) and /v1/predict/batch
calls through our `dream.Client` (retries and idempotency keys on), with the server's
dynamic batching on. Afterwards it prints lost requests (no answer at all), failed ones
(an error after retries), requests/s, and whether the ledger is consistent: balance ==
credits − the charges the successful calls reported == the sum of the transactions,
with no reservation left held.

    python bench/load.py                      # pusht-96, 8 clients, 96 requests
    python bench/load.py --clients 16 --requests 200
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script
from _server import bench_server, funded_key, served_spec

CREDITS_MILS = 10**9


def main() -> int:
    import dream
    from dream.errors import DreamError
    from dream.server.services.db import Database
    from dream.server.services.ledger import Ledger

    served = served_spec(args.spec)
    if served is None:
        return 0
    _, spec = served
    h, w = spec.resolution
    frame = np.full((h, w, 3), 235, np.uint8)
    frame[h // 3 : h // 3 + 6, w // 2 : w // 2 + 6] = (30, 60, 200)

    with tempfile.TemporaryDirectory(prefix="dream-bench-") as tmp:
        db = f"sqlite:///{tmp}/ledger.sqlite3"
        key, customer_id = funded_key(db, "load", CREDITS_MILS)
        outcomes: collections.Counter[str] = collections.Counter()
        charged_mils = 0
        lock = threading.Lock()
        server_process = bench_server(tmp, db, spec.slug, threads=args.threads, batch_window_ms=5,
                                      max_concurrent=args.clients)
        with server_process as server:
            client = dream.Client(base_url=server.url, api_key=key)
            model = client.models.get(spec.slug)

            def one(i: int) -> None:
                nonlocal charged_mils
                rng = np.random.default_rng(i)
                acts = rng.uniform(100, 400, (args.T, spec.action_dim)).astype(np.float32)
                kind = ("predict", "rollout", "predict", "batch")[i % 4]
                try:
                    if kind == "rollout":
                        cost = model.predict(frame, acts).cost_usd
                    elif kind == "batch":
                        cost = model.predict_batch(start_frame=frame, actions=np.stack([acts, acts[::-1]])).cost_usd
                    else:
                        from dream.inputs import encode_npy, encode_png

                        cost = client.predict(frame_bytes=encode_png(frame), actions_bytes=encode_npy(acts),
                                              ).estimated_charge_usd
                except DreamError as exc:
                    with lock:
                        outcomes[f"failed ({type(exc).__name__})"] += 1
                    return
                except Exception as exc:  # no answer at all
                    with lock:
                        outcomes[f"lost ({type(exc).__name__})"] += 1
                    return
                with lock:
                    outcomes["ok"] += 1
                    charged_mils += round(cost * 10_000)

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(one, range(args.requests)))
            wall = time.perf_counter() - t0
            client.close()
        audit = Ledger(Database(db)).audit(customer_id)

    lost = sum(v for k, v in outcomes.items() if k.startswith("lost"))
    failed = sum(v for k, v in outcomes.items() if k.startswith("failed"))
    consistent = (
        audit["balance_mils"] == CREDITS_MILS - charged_mils == audit["transactions_sum_mils"]
        and audit["settled_mils"] == charged_mils and audit["held_reservations"] == 0
    )
    print(f"machine: {describe_machine()}; server torch threads {args.threads}; {spec.slug}, T={args.T}")
    print(f"{args.clients} clients, {args.requests} requests in {wall:.1f} s ({args.requests / wall:.1f} req/s)")
    print(f"  ok {outcomes['ok']}, failed {failed}, lost {lost}   (target: 0 failed, 0 lost)")
    for k, v in sorted(outcomes.items()):
        if k != "ok":
            print(f"    {k}: {v}")
    print(f"  ledger: charged {charged_mils} mils by the responses; balance {audit['balance_mils']}, "
          f"transactions sum {audit['transactions_sum_mils']}, settled {audit['settled_mils']}, "
          f"held {audit['held_reservations']} → {'CONSISTENT' if consistent else 'INCONSISTENT'}")
    return 0 if consistent and not lost and not failed else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="pusht-96")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--T", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    args = parser.parse_args()
    sys.exit(main())
