"""Memory before money: what hostile start frames add to a `dream serve`'s peak RSS (target < 400 MB).

    python bench/abuse.py [--spec pusht-96] [--concurrency 6]

Starts a real server on a free loopback port and, for each attack, resets the server
process's peak-RSS mark (/proc/PID/clear_refs), fires `--concurrency` requests at once,
and reports the peak minus the resident size before the attack:

1. the issue's attack: a key with zero credits sends 6300x6300 16-bit greyscale PNGs
   (~77 KB each) with invalid actions;
2. the same frames from a funded key with valid actions;
3. the largest frame the server decodes (16-bit greyscale at the `max_frame_pixels`
   budget) from a funded key: the decodes that do happen, a few at a time;
4. WebSocket session messages of 14 MB (a `submit_actions` whose actions are a long JSON
   list), one per open session, from a funded key.

Linux only (reads /proc). Prints the machine it ran on.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script
from _server import bench_server, funded_key

TARGET_MB = 400.0


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def grey16_png(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("I;16", (width, height), 1234).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def attack(url: str, pid: int, key: str, frame: bytes, actions: bytes, concurrency: int) -> tuple[float, list[int]]:
    """Peak RSS added (MB) while `concurrency` identical-shaped requests run at once; their statuses."""
    import httpx

    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS mark := current RSS
    time.sleep(0.2)
    before = _status_kb(pid, "VmRSS")

    def post(i: int) -> int:
        files = {"frame": ("f.png", frame, "image/png"), "actions": ("a.npy", actions, "application/octet-stream")}
        r = httpx.post(f"{url}/v1/predict", files=files, data={"seed": str(i)},
                       headers={"Authorization": f"Bearer {key}"}, timeout=300)
        return r.status_code

    with ThreadPoolExecutor(concurrency) as pool:
        codes = list(pool.map(post, range(concurrency)))
    peak = _status_kb(pid, "VmHWM")
    return (peak - before) / 1024, codes


def ws_attack(url: str, pid: int, key: str, concurrency: int, size: int = 14_000_000) -> tuple[float, list[str]]:
    """Peak RSS added (MB) while `concurrency` sessions each send one `size`-byte message; what each got back."""
    import json

    import httpx
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    def one(i: int) -> str:
        files = {"initial_frame": ("f.png", _small_png(), "image/png")}
        r = httpx.post(f"{url}/v1/sessions", data={"model": "pusht-96"}, files=files,
                       headers={"Authorization": f"Bearer {key}"}, timeout=60)
        r.raise_for_status()
        ws_url = r.json()["ws_url"]
        row = "[123.456789, 234.567891]"  # one action; 26 bytes with its separator
        message = '{"type": "submit_actions", "actions": [' + ", ".join([row] * (size // 26)) + "]}"
        with connect(ws_url, additional_headers=[("Authorization", f"Bearer {key}")], max_size=2**20) as ws:
            json.loads(ws.recv())  # session_started
            try:
                ws.send(message)
                reply = json.loads(ws.recv(timeout=120))
                return f"{reply['type']}:{reply.get('error', {}).get('code', '')}"
            except ConnectionClosed as exc:
                return f"closed {exc.rcvd.code if exc.rcvd else '?'}"

    Path(f"/proc/{pid}/clear_refs").write_text("5")
    time.sleep(0.2)
    before = _status_kb(pid, "VmRSS")
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(one, range(concurrency)))
    peak = _status_kb(pid, "VmHWM")
    return (peak - before) / 1024, outcomes


def _small_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (235, 235, 235)).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="pusht-96")
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--ws-sessions", type=int, default=1, help="sessions sending a 14 MB message at once")
    args = parser.parse_args()
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("skipped: needs Linux /proc (clear_refs) to read the server's peak RSS")

    from dream.engine import specs
    from dream.server.settings import Settings

    spec = specs.get(args.spec)
    h, w = spec.resolution
    budget = Settings().max_frame_pixels or max(36 * h * w, 1920 * 1080)
    side = int((budget * 3 / 2) ** 0.5)  # 16-bit grey: 2 bytes per pixel of the 3-byte budget
    huge, at_cap = grey16_png(6300, 6300), grey16_png(side, side)
    bad_actions = npy(np.full((4, spec.action_dim + 1), 1.0, np.float32))
    good_actions = npy(np.full((spec.chunk_size, spec.action_dim), 200.0, np.float32))
    print(f"machine: {describe_machine()}")
    print(f"frames: 6300x6300 16-bit PNG {len(huge) / 1024:.0f} KB; {side}x{side} 16-bit PNG {len(at_cap) / 1024:.0f} KB "
          f"(the {budget}-pixel budget of {args.spec})")
    with tempfile.TemporaryDirectory(prefix="dream-bench-abuse-") as tmp:
        db_url = f"sqlite:///{tmp}/ledger.sqlite3"
        broke, _ = funded_key(db_url, "broke", 0)
        rich, _ = funded_key(db_url, "rich", 100_000_000)
        with bench_server(tmp, db_url, args.spec, threads=1, batch_window_ms=0) as server:
            rss = _status_kb(server.pid, "VmRSS") / 1024
            print(f"server RSS at rest: {rss:.0f} MB")
            rows = [
                ("zero-credit key, 6300x6300 16-bit, invalid actions", broke, huge, bad_actions),
                ("funded key, 6300x6300 16-bit, valid actions", rich, huge, good_actions),
                (f"funded key, {side}x{side} 16-bit (decoded), valid actions", rich, at_cap, good_actions),
            ]
            worst = 0.0
            for name, key, frame, actions in rows:
                added, codes = attack(server.url, server.pid, key, frame, actions, args.concurrency)
                worst = max(worst, added)
                print(f"  {name}: x{args.concurrency} -> statuses {sorted(set(codes))}, peak RSS {added:+.0f} MB")
            added, outcomes = ws_attack(server.url, server.pid, rich, args.ws_sessions)
            worst = max(worst, added)
            print(f"  funded key, 14 MB WebSocket message: x{args.ws_sessions} sessions -> {sorted(set(outcomes))}, "
                  f"peak RSS {added:+.0f} MB")
    verdict = "ok" if worst < TARGET_MB else "OVER TARGET"
    print(f"worst peak RSS added: {worst:+.0f} MB (target < {TARGET_MB:.0f} MB: {verdict})")


if __name__ == "__main__":
    main()
