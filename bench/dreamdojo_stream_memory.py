"""DreamDojo streaming memory: peak RSS of a T = 48 and a T = 480 rollout, whole vs chunked.

    python bench/dreamdojo_stream_memory.py [--t 48 480] [--k 2] [--res 64x64] [--chunk-actions 12]

Runs the DreamDojo runner on the tiny test config (random weights, seeded; CPU) and
reads every rollout through `rollout_chunks`, as `Engine.stream` (the server's long
rollouts) does, discarding each piece:

* "before": `Runner.rollout_chunks`, the default a runner without its own gets (DreamDojo
  had none): it computes the whole rollout, then hands it out, so it holds K × (T + 1)
  frames;
* "after": `DreamDojoRunner.rollout_chunks`: each piece is computed when it is asked for.

Each (variant, T) runs in a fresh interpreter, which makes the inputs, warms up with a
12-action rollout (so every buffer one model chunk needs is already counted), then
reports how much its peak RSS grew during the measured rollout (with glibc's mmap
threshold fixed at 128 KiB, so that RSS follows the memory in use). The tiny config's VAE decode is slow
on CPU, so frames are small (64 × 64 by default, K = 2): the frames of a T = 480 rollout
take 2 × 481 × 64 × 64 × 3 B = 11.8 MB, which is what "before" should add and "after"
should not. Prints the figures and their T = 480 / T = 48 ratios from this one run, and
the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

from _machine import describe_machine  # bench/ is on sys.path when run as a script

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time

    import numpy as np
    import torch

    from dream.engine.models.dreamdojo.config import DREAMDOJO_TINY, register_config
    from dream.engine.models.dreamdojo.dit import DreamDojoDiT, init_random_weights
    from dream.engine.models.dreamdojo.runner import DreamDojoOptions, DreamDojoRunner
    from dream.engine.models.dreamdojo.vae import WanVAE
    from dream.engine.runner import Runner
    from dream.engine.specs import EngineSpec

    variant, t, k, h, w, chunk_actions, threads = sys.argv[1], *map(int, sys.argv[2:8])
    torch.set_num_threads(threads)
    spec = EngineSpec(
        slug="dreamdojo-tiny-bench", name="DreamDojo tiny (bench)", runner="dreamdojo", action_dim=384,
        chunk_size=12, canonical_T=48, resolution=(h, w), fps=10, default_num_steps=1, default_guidance=0.0,
        price_per_frame_usd=0.0, uses_num_steps=True, uses_guidance=True, uses_seed=True,
    )
    register_config(spec.slug, DREAMDOJO_TINY)
    dit = DreamDojoDiT(DREAMDOJO_TINY.dit)
    init_random_weights(dit, 0)
    vae = WanVAE.from_config(DREAMDOJO_TINY.vae, device="cpu", dtype=torch.float32, seed=0)
    runner = DreamDojoRunner.from_modules(spec, dit, vae, options=DreamDojoOptions())
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)

    def read(actions):
        kwargs = dict(seeds=list(range(k)), num_steps=1, guidance=0.0, chunk_actions=chunk_actions)
        pieces = (Runner.rollout_chunks(runner, frames, actions, **kwargs) if variant == "before"
                  else runner.rollout_chunks(frames, actions, **kwargs))
        return sum(piece.shape[1] for piece in pieces)

    # The inputs exist before the measurement: their size is the caller's, in both variants.
    warmup = rng.uniform(-1, 1, (k, 12, 384)).astype(np.float32)
    actions = rng.uniform(-1, 1, (k, t, 384)).astype(np.float32)
    read(warmup)  # one model chunk's buffers
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    n = read(actions)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": n, "added_mb": (peak - base) / 1024, "peak_mb": peak / 1024, "wall_s": wall}))
    """
)


def measure(variant: str, t: int, args: argparse.Namespace) -> dict:
    h, w = args.res
    cmd = [sys.executable, "-c", CHILD, variant, str(t), str(args.k), str(h), str(w), str(args.chunk_actions),
           str(args.threads)]
    # glibc's malloc raises its mmap threshold as big blocks are freed, and the heap then
    # swings by several MB from chunk to chunk; a fixed threshold makes RSS follow the
    # memory in use, so the figures compare what each variant holds, not the allocator.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "131072")}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--t", type=int, nargs=2, default=[48, 480], help="the two rollout lengths (default 48 480)")
    parser.add_argument("--k", type=int, default=2, help="rollouts per call (default 2)")
    parser.add_argument("--res", type=lambda s: tuple(int(x) for x in s.split("x")), default=(64, 64),
                        help="frame size HxW, multiples of 16 (default 64x64)")
    parser.add_argument("--chunk-actions", type=int, default=12, help="actions per piece (default 12)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    h, w = args.res
    import torch  # noqa: F401  (named in the machine line; the children run the model)

    print(f"machine: {describe_machine()}")
    print(f"DreamDojo tiny config, random weights, {h}x{w}, K={args.k}, 1 sampler step, "
          f"pieces of {args.chunk_actions} actions; peak RSS added over a warmed-up process")
    results: dict[tuple[str, int], dict] = {}
    for variant in ("before", "after"):
        for t in args.t:
            r = results[(variant, t)] = measure(variant, t, args)
            frames_mb = args.k * (t + 1) * h * w * 3 / 2**20
            print(f"  {variant:6s} T={t:4d}: +{r['added_mb']:6.1f} MB peak RSS (the rollout's frames: "
                  f"{frames_mb:5.1f} MB), {r['frames']} frames in {r['wall_s']:.1f} s")
    short, long = args.t
    for variant in ("before", "after"):
        a, b = results[(variant, short)]["added_mb"], results[(variant, long)]["added_mb"]
        print(f"{variant}: T={long} adds {b - a:+.1f} MB over T={short} ({b:.1f} vs {a:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
