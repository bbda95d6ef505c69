"""Rows/s into RolloutSink.lerobot vs RolloutSink.dir, on the same rows in one run.

    python bench/lerobot_sink.py [--rows 48] [--repeats 3] [--concurrency 2]

Two measurements, runs alternating (dir, lerobot) `--repeats` times, medians printed:

1. end to end: `Client.predict_many` over the bundled Push-T episodes (`pusht-96`, the
   embedded engine; `--rows` rows, the episodes repeated) into each sink, finalize
   included. Target: lerobot rows/s >= 0.8x the dir sink's.
2. the sinks alone: the same rollouts, made once, written into each sink (`write` per row
   + `finalize`), which shows what the LeRobot sink's own work costs (parsing each mp4,
   image statistics, the data / video / episodes files) next to the dir sink's fsync'd
   mp4 + journal line.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _machine import describe_machine  # bench/ is on sys.path when run as a script

import dream
from dream.examples.pusht_files import write_pusht_dir
from dream.io import RolloutRecord, RolloutSink, frames_from_dir


def make_sink(kind: str, root: Path) -> RolloutSink:
    return RolloutSink.dir(root) if kind == "dir" else RolloutSink.lerobot(root, repo_id="bench/lerobot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    client = dream.Client()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        episodes = len(list(write_pusht_dir(base / "probe").glob("*.npy")))
        src_dir = write_pusht_dir(base / "src", repeat=max(1, -(-args.rows // episodes)))
        src = frames_from_dir(src_dir)
        # Distinct rows: each copy's start frame differs in one corner pixel and its actions by a
        # few px, so no start-pose fit or result is reused between rows.
        from dream.inputs import encode_png
        from dream.io import SourceRow

        rows = []
        for i, row in enumerate(list(src)[: args.rows]):
            import io

            import numpy as np
            from PIL import Image

            frame = np.array(Image.open(io.BytesIO(row.frame_bytes)).convert("RGB"))
            frame[0, 0] = (i * 37 % 256, i * 11 % 256, 200)
            shifted = np.load(io.BytesIO(row.actions_bytes)) + np.float32(i % 7)
            buf = io.BytesIO()
            np.save(buf, shifted)
            rows.append(SourceRow(row.row_id, encode_png(frame), buf.getvalue(), row.metadata))
        model = client.models.get("pusht-96")
        records = []
        for row in rows:
            import io

            import numpy as np

            actions = np.load(io.BytesIO(row.actions_bytes))
            rollout = model.predict(start_frame=row.frame_bytes, actions=actions)
            records.append(RolloutRecord(row.row_id, rollout.mp4_bytes, {"spec": "pusht-96", "sampling_seed": 0},
                                         actions_bytes=row.actions_bytes))

        warm_frame = rows[0].frame_bytes
        warm_actions = np.load(io.BytesIO(rows[0].actions_bytes)) + np.float32(0.5)  # not one of the rows

        class Rows(type(src).__mro__[1]):  # an IterableSource over the first --rows rows
            rows_hint = len(rows)

            def __iter__(self):
                return iter(rows)

        end_to_end: dict[str, list[float]] = {"dir": [], "lerobot": []}
        sink_only: dict[str, list[float]] = {"dir": [], "lerobot": []}
        for r in range(args.repeats):
            for kind in ("dir", "lerobot"):
                sink = make_sink(kind, base / f"e2e-{kind}-{r}")
                # A fresh client per run: the embedded client remembers results by idempotency
                # key, so a second run of the same rows on one client would replay them for free.
                run_client = dream.Client()
                run_client.models.get("pusht-96").predict(start_frame=warm_frame, actions=warm_actions)
                t0 = time.perf_counter()
                result = run_client.predict_many(Rows(), sink, spec="pusht-96", concurrency=args.concurrency,
                                                 progress=False)
                run_client.close()
                if result.ok != len(rows):
                    raise SystemExit(f"{kind}: only {result.ok} of {len(rows)} rows succeeded")
                end_to_end[kind].append(result.ok / (time.perf_counter() - t0))
            for kind in ("dir", "lerobot"):
                sink = make_sink(kind, base / f"sink-{kind}-{r}")
                t0 = time.perf_counter()
                for rec in records:
                    sink.write(rec)
                sink.finalize()
                sink_only[kind].append(len(records) / (time.perf_counter() - t0))
    print(describe_machine())
    print(f"{len(rows)} rows of {len(rows[0].actions_bytes) // 8 - 16} actions, pusht-96, "
          f"concurrency {args.concurrency}, {args.repeats} alternating repeats (medians)")
    for name, runs in (("predict_many end to end", end_to_end), ("sink alone (write + finalize)", sink_only)):
        d, lr = statistics.median(runs["dir"]), statistics.median(runs["lerobot"])
        print(f"{name:32s} dir {d:8.1f} rows/s   lerobot {lr:8.1f} rows/s   lerobot / dir = {lr / d:.2f}x")


if __name__ == "__main__":
    main()
