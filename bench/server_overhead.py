"""What serving costs: the same rollout in-process vs over HTTP on loopback.

Prints the latency HTTP adds (target ≤ 15 ms p50 with the built-in model). Each call's
time outside the engine is its wall minus the engine wall it reports, so the rollout's
own run-to-run noise (tens of ms on a shared CPU) cancels; the added latency is the
p50 / p99 of that outside time over HTTP minus the same in-process. It is printed for
the JSON-envelope path (POST /v1/rollouts, with and without the video download) and the
raw-mp4 path (POST /v1/predict), then requests/s at concurrency 1, 4 and 16. Dynamic
batching is off here (its window adds latency by design; bench/dynamic_batching.py
measures what it buys). Every request has distinct actions, so the server's
deduplication never answers from its cache.

The server runs with per-key limits on (a rate and a concurrency cap high enough never to
refuse), as a deployment does. What the limits cost is measured last on the same server,
calls alternating between that key and a key whose own limits exempt it (rate 0,
concurrency 0): an authenticated call that runs no engine
(GET /v1/billing/balance: authentication, the rate limit, one ledger read) and
POST /v1/predict's time outside the engine (the rate limit plus a rollout slot taken and
given back) for a short rollout (T = 8, so that decoding and encoding add little noise).

    python bench/server_overhead.py                 # pusht-96, 60 calls per path
    python bench/server_overhead.py --calls 20 --threads 1
    python bench/server_overhead.py --limits-only   # only what the per-key limits cost
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script
from _server import bench_server, funded_key, served_spec


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    from dream._stats import percentile

    return percentile(sorted(values), q)


def inputs(spec, i: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = spec.resolution
    frame = np.full((h, w, 3), 235, np.uint8)
    frame[h // 3 : h // 3 + 6, w // 2 : w // 2 + 6] = (30, 60, 200)
    rng = np.random.default_rng(i)
    acts = rng.uniform(100, 400, (args.T, spec.action_dim)).astype(np.float32)
    return frame, acts


def timed(fn, n: int, offset: int) -> list[tuple[float, float]]:
    """(wall ms, wall ms outside the engine) per call; `fn` returns the engine wall it reports."""
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        engine_ms = fn(offset + i)
        wall = (time.perf_counter() - t0) * 1000
        out.append((wall, wall - engine_ms))
    return out


def main() -> int:
    import dream
    from dream.inputs import encode_npy, encode_png

    served = served_spec(args.spec, threads=args.threads)
    if served is None:
        return 0
    engine, spec = served
    engine.load(args.spec)
    local = dream.Client(engine=engine)
    lm = local.models.get(args.spec)

    with tempfile.TemporaryDirectory(prefix="dream-bench-") as tmp:
        db = f"sqlite:///{tmp}/ledger.sqlite3"
        key, _ = funded_key(db, "bench", 10**12)
        with bench_server(tmp, db, args.spec, threads=args.threads, batch_window_ms=0, max_concurrent=10_000,
                          extra_args=LIMITS_ON) as server:
            if args.limits_only:
                limits_cost(server.url, db, key, spec)
                return 0
            remote = dream.Client(base_url=server.url, api_key=key)
            rm = remote.models.get(args.spec)

            def local_rollout(i: int) -> float:
                r = lm.predict(*inputs(spec, i))
                bytes(r.mp4_bytes)
                return r.engine_wall_ms

            def http_rollout(i: int) -> float:
                r = rm.predict(*inputs(spec, i))
                bytes(r.mp4_bytes)  # JSON envelope + signed video download
                return r.engine_wall_ms

            def http_envelope(i: int) -> float:
                return rm.predict(*inputs(spec, i)).engine_wall_ms  # the video stays on the server

            def local_bytes(i: int) -> float:
                f, a = inputs(spec, i)
                return local.predict(frame_bytes=encode_png(f), actions_bytes=encode_npy(a)).engine_wall_ms

            def http_bytes(i: int) -> float:
                f, a = inputs(spec, i)
                return remote.predict(frame_bytes=encode_png(f), actions_bytes=encode_npy(a)).engine_wall_ms

            for fn in (local_rollout, http_rollout, http_envelope, local_bytes, http_bytes):  # warm up
                timed(fn, 3, 10**6)
            # Interleave the sides in blocks, so background load hits them alike.
            results: dict[str, list[tuple[float, float]]] = {k: [] for k in ("lr", "hr", "he", "lb", "hb")}
            block = max(1, args.calls // 5)
            for b in range(0, args.calls, block):
                n = min(block, args.calls - b)
                results["lr"] += timed(local_rollout, n, b)
                results["hr"] += timed(http_rollout, n, 10**5 + b)
                results["he"] += timed(http_envelope, n, 5 * 10**5 + b)
                results["lb"] += timed(local_bytes, n, 2 * 10**5 + b)
                results["hb"] += timed(http_bytes, n, 3 * 10**5 + b)

            print(f"machine: {describe_machine()}; torch threads {args.threads}; {args.spec}, T={args.T} ({args.T + 1} frames)")
            print(f"{'path':<44}{'in-process p50':>15}{'HTTP p50':>10}{'added p50':>11}{'added p99':>11}")
            rows = (
                ("Client.predict (/v1/predict, raw mp4)", "lb", "hb"),
                ("ModelHandle.predict (/v1/rollouts, JSON)", "lr", "he"),
                ("  + Rollout.mp4_bytes (video_url download)", "lr", "hr"),
            )
            for label, lk, hk in rows:
                lo, hi = results[lk], results[hk]
                lo_out, hi_out = [o for _, o in lo], [o for _, o in hi]
                print(f"{label:<44}{statistics.median(w for w, _ in lo):>12.1f} ms{statistics.median(w for w, _ in hi):>7.1f} ms"
                      f"{pct(hi_out, 50) - pct(lo_out, 50):>8.1f} ms{pct(hi_out, 99) - pct(lo_out, 99):>8.1f} ms")
            print("(the video_url download opens a fresh httpx client per video, as the 0.5.0 SDK does: "
                  "most of that row is client construction)")

            print(f"requests/s over HTTP (/v1/predict, {args.rps_calls} requests per level):")
            base = None
            for conc in (1, 4, 16):
                t0 = time.perf_counter()
                with ThreadPoolExecutor(conc) as pool:
                    list(pool.map(http_bytes, range(4 * 10**5 + conc * 10**4, 4 * 10**5 + conc * 10**4 + args.rps_calls)))
                rps = args.rps_calls / (time.perf_counter() - t0)
                base = base or rps
                print(f"  concurrency {conc:>2}: {rps:7.1f} req/s  ({rps / base:.2f}x concurrency 1)")
            remote.close()
            limits_cost(server.url, db, key, spec)
    return 0


LIMITS_ON = ("--rate-limit", "100000", "--burst", "100000")  # on, but never refusing


def limits_cost(url: str, db_url: str, key_on: str, spec) -> None:
    """Latency the per-key limits add: the same calls, alternating, from a key whose own limits
    turn them off (rate 0, concurrency 0), on the same server."""
    import httpx

    from dream.inputs import encode_npy, encode_png
    from dream.server.services.db import Database
    from dream.server.services.ledger import KeyLimits, Ledger

    ledger = Ledger(Database(db_url))
    key_off = ledger.create_key("bench-unlimited", credits_mils=10**12,
                                limits=KeyLimits(rate_limit_rps=0, max_concurrent=0)).key
    ledger.db.dispose()
    clients = {k: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {kk}"}, timeout=60)
               for k, kk in (("on", key_on), ("off", key_off))}
    cheap: dict[str, list[float]] = {"on": [], "off": []}
    outside: dict[str, list[float]] = {"on": [], "off": []}

    def predict(http: httpx.Client, i: int) -> float:
        f, a = inputs(spec, 7 * 10**5 + i)
        a = a[:8]
        files = {"frame": ("f.png", encode_png(f), "image/png"), "actions": ("a.npy", encode_npy(a), "x")}
        t0 = time.perf_counter()
        r = http.post("/v1/predict", files=files)
        wall = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        return wall - float(r.headers["x-dreamengine-engine-wall-ms"])

    for side in ("on", "off"):  # warm up
        for _ in range(20):
            clients[side].get("/v1/billing/balance").raise_for_status()
        predict(clients[side], -1 if side == "on" else -2)
    for i in range(args.cheap_calls):
        for side in (("on", "off") if i % 2 else ("off", "on")):
            t0 = time.perf_counter()
            clients[side].get("/v1/billing/balance").raise_for_status()
            cheap[side].append((time.perf_counter() - t0) * 1000)
    for i in range(args.limits_calls):
        for side in (("on", "off") if i % 2 else ("off", "on")):
            outside[side].append(predict(clients[side], 2 * i + (side == "off")))
    for c in clients.values():
        c.close()
    print("what the per-key limits cost (one server; calls alternating between a key under them and one exempt):")
    print(f"{'call':<52}{'limits off p50':>15}{'on p50':>10}{'added p50':>11}{'added p99':>11}")
    for label, got in ((f"GET /v1/billing/balance ({args.cheap_calls} each)", cheap),
                       (f"POST /v1/predict T=8, outside the engine ({args.limits_calls} each)", outside)):
        on, off = got["on"], got["off"]
        print(f"{label:<52}{pct(off, 50):>12.2f} ms{pct(on, 50):>7.2f} ms{pct(on, 50) - pct(off, 50):>8.2f} ms"
              f"{pct(on, 99) - pct(off, 99):>8.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="pusht-96")
    parser.add_argument("--calls", type=int, default=60, help="timed calls per path and side")
    parser.add_argument("--rps-calls", type=int, default=48, help="requests per concurrency level")
    parser.add_argument("--T", type=int, default=48, help="actions per rollout (default 48: canonical)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, in-process and in the server")
    parser.add_argument("--cheap-calls", type=int, default=400, help="GET /v1/billing/balance calls per side")
    parser.add_argument("--limits-calls", type=int, default=200, help="POST /v1/predict calls per side, limits on/off")
    parser.add_argument("--limits-only", action="store_true", help="measure only what the per-key limits cost")
    args = parser.parse_args()
    sys.exit(main())
