"""predict_many memory: peak RSS at 1,000 and 20,000 rows (target: the larger run adds < 50 MB).

    python bench/bulk_memory.py [--rows 1000 20000] [--concurrency 4]

Each size runs in a fresh interpreter: it writes N frame/actions pairs to a temporary
folder, then streams them through `run_predict_many` into a `RolloutSink.dir` with a fast
stand-in engine (no model: it checks the inputs' sizes and returns a pre-encoded mp4),
and reports the process's peak RSS (the sink runs with fsync=False: durability does
not change memory, only time). Streaming means memory should not grow with N beyond
the per-row bookkeeping (seen / finished row ids, ~100 B per row). Prints the growth
between the smallest and the largest run, measured in this one invocation, and the
machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap

from _machine import describe_machine  # bench/ is on sys.path when run as a script

CHILD = textwrap.dedent(
    """
    import io, json, resource, sys, tempfile, time
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from dream.bulk.rows import RowOutcome
    from dream.bulk.threads import run_predict_many
    from dream.io import DirRolloutSink, frames_from_dir

    rows, concurrency, workdir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    src_dir, out_dir = workdir / "src", workdir / "out"
    src_dir.mkdir()
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buf, format="PNG")
    frame = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, np.zeros((8, 2), np.float32))
    actions = buf.getvalue()
    for i in range(rows):
        (src_dir / f"ep_{i:06d}.png").write_bytes(frame)
        (src_dir / f"ep_{i:06d}.npy").write_bytes(actions)

    # A fixed, real mp4 (a few KB): the stand-in engine's whole output.
    import av
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for _ in range(9):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    mp4 = out.getvalue()

    def stand_in(frame_bytes, actions_bytes, key):
        if not frame_bytes or not actions_bytes:
            raise ValueError("empty row")
        return RowOutcome(mp4_bytes=mp4, request_id=key[-12:], engine_wall_ms=0.1, cost_usd=0.0009,
                          frames=9, seed=0, num_steps=None)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    # fsync=False: this measures memory, which fsync does not change, and per-file fsyncs
    # (~4 ms each on a VM disk) would only make the 20,000-row run take minutes.
    result = run_predict_many(frames_from_dir(src_dir), DirRolloutSink(out_dir, fsync=False), predict=stand_in,
                              concurrency=concurrency, progress=False)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.ok == rows, result
    print(json.dumps({"rows": rows, "rss_before_run_kb": before, "peak_rss_kb": peak, "wall_s": wall}))
    """
)




def run_one(rows: int, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="dream-bench-mem-") as workdir:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(rows), str(concurrency), workdir],
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise SystemExit(f"the {rows}-row run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    print(f"machine: {describe_machine()}")
    results = [run_one(n, args.concurrency) for n in args.rows]
    for r in results:
        print(
            f"  {r['rows']:>7,} rows: peak RSS {r['peak_rss_kb'] / 1024:7.1f} MB "
            f"(before the run {r['rss_before_run_kb'] / 1024:6.1f} MB), {r['wall_s']:.1f} s, "
            f"{r['rows'] / r['wall_s']:,.0f} rows/s"
        )
    small, large = results[0], results[-1]
    growth_mb = (large["peak_rss_kb"] - small["peak_rss_kb"]) / 1024
    verdict = "ok" if growth_mb < 50 else "OVER TARGET"
    print(
        f"peak RSS growth {small['rows']:,} -> {large['rows']:,} rows: {growth_mb:+.1f} MB "
        f"(target < 50 MB: {verdict}), concurrency {args.concurrency}"
    )


if __name__ == "__main__":
    main()
