"""One paid request must not take the server: its memory, and another customer's latency during it.

    python bench/fair_share.py [--spec pusht-96] [--small-T 8] [--big-K 4] [--big-T 1024]

Starts a real `dream serve` on a free loopback port (one torch thread) and measures, in
this one run:

1. memory: the server's peak RSS added (reset through /proc/PID/clear_refs) by the
   largest requests the default budget allows: one rollout of T = 4096 and a batch of
   K x (T + 1) = 8192 frames (target < 500 MB);
2. fairness: customer B's small predict (T = `--small-T`), median of several, alone and
   while customer A's batch (K = `--big-K`, T = `--big-T`) runs; prints the ratio
   (target <= 3x).

Linux only (reads /proc). Prints the machine it ran on; on a shared machine the figures
move with the neighbours' load.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script
from _server import bench_server, funded_key

MEMORY_TARGET_MB = 500.0
LATENCY_TARGET = 3.0


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


class Caller:
    def __init__(self, url: str, key: str, frame: bytes) -> None:
        import httpx

        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=900)
        self.frame = frame

    def predict(self, actions: np.ndarray, seed: int) -> float:
        t0 = time.perf_counter()
        r = self.http.post("/v1/predict", files={"frame": ("f.png", self.frame, "image/png"),
                                                 "actions": ("a.npy", _npy(actions), "application/octet-stream")},
                           data={"seed": str(seed)})
        r.raise_for_status()
        return time.perf_counter() - t0

    def batch(self, actions: np.ndarray, seed: int) -> float:
        t0 = time.perf_counter()
        files = [("frame", ("f.png", self.frame, "image/png"))] + [
            ("actions", (f"a{k}.npy", _npy(a), "application/octet-stream")) for k, a in enumerate(actions)
        ]
        r = self.http.post("/v1/predict/batch", files=files, data={"seed": str(seed)})
        r.raise_for_status()
        return time.perf_counter() - t0


def peak_added_mb(pid: int, fn) -> tuple[float, float]:
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    time.sleep(0.2)
    before = _status_kb(pid, "VmRSS")
    wall = fn()
    return (_status_kb(pid, "VmHWM") - before) / 1024, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="pusht-96")
    parser.add_argument("--small-T", type=int, default=8)
    parser.add_argument("--big-K", type=int, default=4)
    parser.add_argument("--big-T", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-memory", action="store_true", help="only the fairness measurement")
    parser.add_argument("--chunk-frames", type=int, default=None, help="the server's --stream-chunk-frames")
    args = parser.parse_args()
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("skipped: needs Linux /proc (clear_refs) to read the server's peak RSS")
    from dream.engine import specs

    spec = specs.get(args.spec)
    h, w = spec.resolution
    rng = np.random.default_rng(0)
    frame = _png(np.full((h, w, 3), 200, np.uint8))

    def acts(T: int) -> np.ndarray:
        return rng.uniform(100, 400, (T, spec.action_dim)).astype(np.float32)

    print(f"machine: {describe_machine()}")
    with tempfile.TemporaryDirectory(prefix="dream-bench-fair-") as tmp:
        db_url = f"sqlite:///{tmp}/ledger.sqlite3"
        key_a, _ = funded_key(db_url, "big", 10**9)
        key_b, _ = funded_key(db_url, "small", 10**9)
        extra = ("--stream-chunk-frames", str(args.chunk_frames)) if args.chunk_frames else ()
        with bench_server(tmp, db_url, args.spec, threads=1, batch_window_ms=5, extra_args=extra) as server:
            a, b = Caller(server.url, key_a, frame), Caller(server.url, key_b, frame)
            b.predict(acts(args.small_T), 0)  # warm
            print(f"server RSS at rest: {_status_kb(server.pid, 'VmRSS') / 1024:.0f} MB")
            worst = 0.0
            for name, fn in [] if args.skip_memory else [
                ("one rollout, T = 4096 (4097 frames)", lambda: a.predict(acts(4096), 1)),
                ("batch K = 2 x T = 4095 (8192 frames)", lambda: a.batch(np.stack([acts(4095), acts(4095)]), 2)),
            ]:
                added, wall = peak_added_mb(server.pid, fn)
                worst = max(worst, added)
                print(f"  {name}: peak RSS {added:+.0f} MB, {wall:.1f} s")
            verdict = "ok" if worst < MEMORY_TARGET_MB else "OVER TARGET"
            if not args.skip_memory:
                print(f"largest allowed request: peak RSS {worst:+.0f} MB (target < {MEMORY_TARGET_MB:.0f} MB: {verdict})")

            idle = statistics.median(b.predict(acts(args.small_T), 100 + i) for i in range(args.repeats))
            done = threading.Event()
            big_wall: list[float] = []

            def run_big() -> None:
                big_wall.append(a.batch(np.stack([acts(args.big_T) for _ in range(args.big_K)]), 3))
                done.set()

            threading.Thread(target=run_big, daemon=True).start()
            time.sleep(1.0)  # the batch is running
            busy = []
            i = 0
            while not done.is_set() and len(busy) < args.repeats:
                busy.append(b.predict(acts(args.small_T), 200 + i))
                i += 1
            done.wait()
    if not busy:
        sys.exit("the big batch finished before any small request ran: raise --big-T")
    during = statistics.median(busy)
    ratio = during / idle
    verdict = "ok" if ratio <= LATENCY_TARGET else "OVER TARGET"
    print(f"small predict (T={args.small_T}) of customer B: idle {idle * 1000:.0f} ms, during A's K={args.big_K} x "
          f"T={args.big_T} batch ({big_wall[0]:.1f} s) {during * 1000:.0f} ms (median of {len(busy)}): "
          f"{ratio:.2f}x (target <= {LATENCY_TARGET:.0f}x: {verdict})")


if __name__ == "__main__":
    main()
