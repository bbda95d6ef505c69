"""pusht-96's block raster: J blocks in one vectorised call vs one `block_labels_at` call each, in one run.

    python bench/pusht_raster.py [--blocks 400] [--repeats 5]

Random block poses in the workspace (any angle), each rasterised over the samples of its
bounding box as `SceneRenderer.block_labels` does, (a) one pose at a time by
`block_labels_at` and (b) J poses per `_block_labels_many` call (J = 1, 2, 8, 32). The
edges' line shapes are cached beforehand for both (a rollout meets the same few edge
shapes again and again). Prints medians of alternating repeats, ms per block, and the
ratios to (a). The labels are the same (tests/pusht/test_render_batched.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _machine import describe_machine  # bench/ is on sys.path when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from dream.engine.models.pusht import render as R

    renderer = R.SceneRenderer()
    rng = np.random.default_rng(0)
    cogs = [(rng.uniform(100, 412), rng.uniform(100, 412), rng.uniform(-np.pi, np.pi)) for _ in range(args.blocks)]
    polys = [[R._rounded(p) for p in R.body_polygons(*renderer.cog_to_origin(c))] for c in cogs]
    verts = np.array(polys, np.int64)
    coords = renderer.coords
    windows = []
    for block in polys:
        xs = [x for poly in block for x, _ in poly]
        ys = [y for poly in block for _, y in poly]
        r0, r1 = np.searchsorted(coords, min(ys) - 4), np.searchsorted(coords, max(ys) + 4, side="right")
        c0, c1 = np.searchsorted(coords, min(xs) - 4), np.searchsorted(coords, max(xs) + 4, side="right")
        windows.append((coords[r0:r1], coords[c0:c1]))

    def one_by_one() -> float:
        t0 = time.perf_counter()
        for block, (rows, cols) in zip(polys, windows, strict=True):
            R.block_labels_at(block, rows, cols)
        return (time.perf_counter() - t0) / len(polys)

    def batched(j: int) -> float:
        t0 = time.perf_counter()
        for lo in range(0, len(verts), j):
            R._block_labels_many(verts[lo : lo + j], coords)
        return (time.perf_counter() - t0) / len(verts)

    one_by_one()
    batched(8)  # warm the edge caches
    sizes = (1, 2, 8, 32)
    times: dict[str, list[float]] = {"one": [], **{str(j): [] for j in sizes}}
    for _ in range(args.repeats):
        times["one"].append(one_by_one())
        for j in sizes:
            times[str(j)].append(batched(j))
    base = statistics.median(times["one"])
    print(f"machine: {describe_machine()}")
    print(f"{args.blocks} block poses, median of {args.repeats} alternating repeats")
    print(f"  block_labels_at, one block per call: {base * 1e3:.3f} ms per block")
    for j in sizes:
        t = statistics.median(times[str(j)])
        print(f"  _block_labels_many, J = {j:2d} per call: {t * 1e3:.3f} ms per block = {base / t:.2f}x faster")


if __name__ == "__main__":
    main()
