"""predict_many overhead: a dir source into a dir sink vs the engine in a bare loop.

    python bench/bulk_overhead.py [--rows 32] [--repeats 3] [--spec SLUG]
    python bench/bulk_overhead.py --stand-in-ms 30     # no model: a fixed-cost stand-in engine
    python bench/bulk_overhead.py --fusion [--rows 32] [--concurrency 8]

--fusion compares predict_many with fused rows (`Engine(coalesce=True)`: the engine
runs the concurrent rows as one call) against the same run with fusion off
(`Engine(coalesce=False)`), same rows, same concurrency, alternating runs,
and checks every fused row's mp4 is byte-identical to the unfused one. Target: >= 1.5x
rows/s.

The bare loop reads each row's two files, calls `Client.predict` and writes the mp4 — the
least a hand-written script does. predict_many does the same rows through the dream.io
machinery (validation, idempotency keys, retries, metadata journal with fsync, Parquet at
finalize). Both use `dream.Client()`'s embedded engine (without it the script says so and
exits). Targets on a 2-core machine: ratio <= 1.05 at concurrency 1, and no slower than
the bare loop at concurrency 2. Runs alternate (bare, c=1, c=2) `--repeats` times; the
medians and their ratios, measured in this one run, are printed with the machine.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script

Predict = Callable[[bytes, bytes], bytes]  # (frame_bytes, actions_bytes) -> mp4 bytes




def write_rows(
    folder: Path, rows: int, hw: tuple[int, int], t: int, action_dim: int, lo: float, hi: float
) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(rows):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(buf, format="PNG")
        (folder / f"ep_{i:04d}.png").write_bytes(buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, rng.uniform(lo, hi, (t, action_dim)).astype(np.float32))
        (folder / f"ep_{i:04d}.npy").write_bytes(buf.getvalue())


def bare_loop(predict: Predict, src: Path, out: Path) -> float:
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    for frame_path in sorted(src.glob("*.png")):
        mp4 = predict(frame_path.read_bytes(), frame_path.with_suffix(".npy").read_bytes())
        (out / f"{frame_path.stem}.mp4").write_bytes(mp4)
    return time.perf_counter() - t0


def bulk(run_many: Callable[..., Any], src: Path, out: Path, concurrency: int, rows: int) -> float:
    from dream.io import RolloutSink, frames_from_dir

    t0 = time.perf_counter()
    result = run_many(frames_from_dir(src), RolloutSink.dir(out), concurrency=concurrency)
    wall = time.perf_counter() - t0
    if result.ok != rows:
        raise SystemExit(f"predict_many finished {result.ok}/{rows} rows: {result.failures[:3]}")
    return wall


def engine_setup(spec_slug: str | None) -> tuple[Predict, Callable[..., Any], dict] | str:
    """The embedded client's predict / predict_many, or why they are not usable here."""
    try:
        import dream
        from dream.engine import specs
    except ImportError as exc:
        return f"dream is not importable: {exc}"
    if not hasattr(dream, "Client"):
        return "dream.Client is not available yet"
    slug = spec_slug or specs.DEFAULT_SPEC
    spec = specs.get(slug)
    client = dream.Client()

    def predict(frame: bytes, actions: bytes) -> bytes:
        return client.predict(frame_bytes=frame, actions_bytes=actions).mp4_bytes

    def run_many(src: Any, sink: Any, *, concurrency: int) -> Any:
        # A fresh client over the same loaded engine: a client remembers results by
        # idempotency key, and every repeat sends the same rows.
        fresh = dream.Client(engine=client.engine)
        return fresh.predict_many(src, sink, spec=spec_slug, concurrency=concurrency, progress=False)

    info = {
        "engine": f"embedded {slug}",
        "hw": spec.resolution,
        "t": spec.canonical_T,
        "action_dim": spec.action_dim,
        "range": (100.0, 400.0) if spec.runner == "pusht" else (-0.05, 0.05),
    }
    try:  # warm up: load weights, first-call costs
        rng = np.random.default_rng(1)
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.zeros((*spec.resolution, 3), np.uint8)).save(buf, format="PNG")
        act = io.BytesIO()
        np.save(act, rng.uniform(*info["range"], (spec.canonical_T, spec.action_dim)).astype(np.float32))
        predict(buf.getvalue(), act.getvalue())
    except Exception as exc:
        return f"the embedded engine cannot run {slug} here: {type(exc).__name__}: {exc}"
    return predict, run_many, info


def stand_in_setup(cost_ms: float) -> tuple[Predict, Callable[..., Any], dict]:
    """A fixed-cost engine without a model: sleeps (like waiting on a GPU) and returns an mp4."""
    import av

    from dream.bulk.rows import RowOutcome
    from dream.bulk.threads import run_predict_many

    buf = io.BytesIO()  # a realistic output: 49 noisy 96x96 frames as H.264
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 96
        stream.pix_fmt = "yuv420p"
        for image in np.random.default_rng(0).integers(0, 255, (49, 96, 96, 3), dtype=np.uint8):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    mp4 = buf.getvalue()

    def predict(frame: bytes, actions: bytes) -> bytes:
        time.sleep(cost_ms / 1000)
        return mp4

    def row_predict(frame: bytes, actions: bytes, key: str) -> RowOutcome:
        return RowOutcome(predict(frame, actions), key[-8:], cost_ms, 0.0049, 49, 0, None)

    def run_many(src: Any, sink: Any, *, concurrency: int) -> Any:
        return run_predict_many(src, sink, predict=row_predict, concurrency=concurrency, progress=False)

    info = {
        "engine": f"stand-in ({cost_ms:g} ms sleep per row)",
        "hw": (96, 96),
        "t": 48,
        "action_dim": 2,
        "range": (100.0, 400.0),
    }
    return predict, run_many, info


def fusion(rows: int, repeats: int, concurrency: int, spec_slug: str | None) -> None:
    import dream
    from dream.engine import specs
    from dream.engine.engine import Engine
    from dream.io import RolloutSink, frames_from_dir

    slug = spec_slug or specs.DEFAULT_SPEC
    spec = specs.get(slug)
    engines = {"fused": Engine([slug], coalesce=True), "unfused": Engine([slug], coalesce=False)}
    default = Engine([slug])
    print(f"machine: {describe_machine()}")
    print(f"spec {slug}: {rows} rows, T={spec.canonical_T}, predict_many concurrency={concurrency}; "
          f"batch-invariant: {default.batch_invariant(slug)}; fusion by default here ({default.device}): "
          f"{'on' if default.coalesces(slug) else 'off'}")
    rng = (100.0, 400.0) if spec.runner == "pusht" else (-0.05, 0.05)
    walls: dict[str, list[float]] = {k: [] for k in engines}
    with tempfile.TemporaryDirectory(prefix="dream-bench-fusion-") as tmp:
        root = Path(tmp)
        write_rows(root / "src", rows, spec.resolution, spec.canonical_T, spec.action_dim, *rng)
        for name, engine in engines.items():  # load + warm both, untimed
            engine.load(slug)
            dream.Client(engine=engine).predict_many(
                frames_from_dir(root / "src"), RolloutSink.dir(root / f"warm_{name}"), spec=slug,
                concurrency=concurrency, progress=False,
            )
        for r in range(repeats):
            for name, engine in engines.items():
                t0 = time.perf_counter()
                result = dream.Client(engine=engine).predict_many(
                    frames_from_dir(root / "src"), RolloutSink.dir(root / f"{name}{r}"), spec=slug,
                    concurrency=concurrency, progress=False,
                )
                walls[name].append(time.perf_counter() - t0)
                if result.ok != rows:
                    raise SystemExit(f"{name}: {result.ok}/{rows} rows ok: {result.failures[:3]}")
        same = all(
            (root / "fused0" / "videos" / p.name).read_bytes() == p.read_bytes()
            for p in (root / "unfused0" / "videos").glob("*.mp4")
        )
    med = {k: statistics.median(v) for k, v in walls.items()}
    for name in engines:
        print(f"  {name:<8} median {med[name]:7.3f} s  ({rows / med[name]:6.1f} rows/s; runs "
              f"{[round(w, 3) for w in walls[name]]})")
    ratio = med["unfused"] / med["fused"]
    print(f"fused / unfused rows/s: {ratio:.2f}x (target >= 1.5: {'met' if ratio >= 1.5 else 'NOT met'}); "
          f"every fused mp4 byte-identical to the unfused one: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spec", default=None, help="spec slug (default: the client's default spec)")
    parser.add_argument("--stand-in-ms", type=float, default=None, help="use a fixed-cost stand-in engine")
    parser.add_argument("--fusion", action="store_true", help="fused vs unfused predict_many (see above)")
    parser.add_argument("--concurrency", type=int, default=8, help="predict_many concurrency for --fusion")
    args = parser.parse_args()
    if args.fusion:
        fusion(args.rows, args.repeats, args.concurrency, args.spec)
        return

    setup = stand_in_setup(args.stand_in_ms) if args.stand_in_ms is not None else engine_setup(args.spec)
    if isinstance(setup, str):
        print(f"bulk_overhead: skipped — {setup}. (Try --stand-in-ms 30 to measure the harness alone.)")
        return
    predict, run_many, info = setup
    print(f"machine: {describe_machine()}")
    print(
        f"engine: {info['engine']}; {args.rows} rows of {info['hw'][0]}x{info['hw'][1]} frames, T={info['t']}"
    )

    walls: dict[str, list[float]] = {"bare": [], "c1": [], "c2": []}
    with tempfile.TemporaryDirectory(prefix="dream-bench-bulk-") as tmp:
        root = Path(tmp)
        write_rows(root / "src", args.rows, info["hw"], info["t"], info["action_dim"], *info["range"])
        # Untimed warm-up of both paths (imports such as pyarrow, first-call costs).
        write_rows(root / "warm", 2, info["hw"], info["t"], info["action_dim"], *info["range"])
        bare_loop(predict, root / "warm", root / "warm_bare")
        bulk(run_many, root / "warm", root / "warm_bulk", 1, 2)
        for r in range(args.repeats):
            walls["bare"].append(bare_loop(predict, root / "src", root / f"bare{r}"))
            walls["c1"].append(bulk(run_many, root / "src", root / f"c1_{r}", 1, args.rows))
            walls["c2"].append(bulk(run_many, root / "src", root / f"c2_{r}", 2, args.rows))
    med = {k: statistics.median(v) for k, v in walls.items()}
    for key, label in (("bare", "bare loop"), ("c1", "predict_many c=1"), ("c2", "predict_many c=2")):
        print(
            f"  {label:<17} median {med[key]:7.3f} s  ({args.rows / med[key]:6.1f} rows/s; runs {walls[key]})"
        )
    best = {k: min(v) for k, v in walls.items()}
    print(
        f"  best of {args.repeats}: bare {best['bare']:.3f} s, c=1 {best['c1']:.3f} s ({best['c1'] / best['bare']:.3f}), "
        f"c=2 {best['c2']:.3f} s ({best['c2'] / best['bare']:.3f})"
    )
    r1, r2 = med["c1"] / med["bare"], med["c2"] / med["bare"]
    print(f"overhead ratio c=1: {r1:.3f} (target <= 1.05: {'ok' if r1 <= 1.05 else 'OVER'})")
    print(f"ratio c=2 vs bare:  {r2:.3f} (target <= 1.00: {'ok' if r2 <= 1.0 else 'OVER'})")


if __name__ == "__main__":
    main()
