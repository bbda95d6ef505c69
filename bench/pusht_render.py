"""pusht-96's drawing: the pygame-exact renderer against an earlier revision's, in one run.

    python bench/pusht_render.py [--rev 2683ccf] [--repeats 10]

Loads `src/dream/engine/models/pusht/render.py` as it was at git revision ``--rev`` (by
default the last one with the analytic drawing) next to today's, and times, with each:

* the canonical rollout (T = 48 → 49 frames) of the example episode through the runner,
  start-pose fit cached (as `bench/engine_cpu.py` measures it), the renderer's cache of
  drawn block shapes emptied before every repeat (every pose drawn for the first time);
* the start-pose fit of the example frames (`fit_start_pose`), which renders many
  candidate poses.

Prints the medians and the new / old ratios (the target for the rollout: ≤ 1.5×).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _machine import describe_machine  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
RENDER = "src/dream/engine/models/pusht/render.py"


def _old_render(rev: str):
    """The renderer module as it was at `rev`, or None when git or the revision is not there."""
    try:
        source = subprocess.run(["git", "show", f"{rev}:{RENDER}"], cwd=ROOT, check=True, capture_output=True,
                                text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "old_render.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_render", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", default="2683ccf", help="git revision of the earlier renderer")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from dream.engine import specs
    from dream.engine.models.pusht import render as new
    from dream.engine.models.pusht.posefit import fit_start_pose
    from dream.engine.runner import runner_class
    from dream.examples import pusht_episodes

    old = _old_render(args.rev)
    if old is None:
        print(f"SKIP: needs git and revision {args.rev} of this repository (the earlier renderer)")
        return
    spec = specs.get("pusht-96")
    eps = pusht_episodes()
    frame, actions = eps[0].start_frame, eps[0].actions[: spec.canonical_T]
    print(describe_machine())
    print(f"{args.repeats} canonical rollouts per renderer, interleaved; start-pose fits of {len(eps)} example frames")
    runners = {}
    for name, module in (("old", old), ("new", new)):
        runner = runner_class(spec.runner)(spec, device="cpu")
        runner.load()
        runner.renderer = module.SceneRenderer(96, runner.params)
        runners[name] = (runner, module)
    saved = new.render_windows

    def rollout(name: str) -> float:
        runner, module = runners[name]
        new.render_windows = module.render_windows  # the runner imports it from the module at each draw
        getattr(runner.renderer, "_blocks", {}).clear()  # every pose drawn for the first time
        try:
            t0 = time.perf_counter()
            runner.rollout(frame[None], actions[None], seeds=[0], num_steps=None, guidance=None)
            return time.perf_counter() - t0
        finally:
            new.render_windows = saved

    def fit(name: str, ep) -> float:
        runner, _ = runners[name]
        getattr(runner.renderer, "_blocks", {}).clear()
        t0 = time.perf_counter()
        fit_start_pose(ep.start_frame, runner.renderer)
        return time.perf_counter() - t0

    for name in runners:
        rollout(name)  # warm: the start-pose fit is cached from here on
    walls: dict[str, list[float]] = {"old": [], "new": []}
    fits: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(args.repeats):  # interleaved, so that the shared machine's load hits both alike
        for name in runners:
            walls[name].append(rollout(name))
    for ep in eps:
        for name in runners:
            fits[name].append(fit(name, ep))
    results = {name: (statistics.median(walls[name]), statistics.median(fits[name])) for name in runners}
    for name in runners:
        print(f"{name} renderer: canonical rollout median {results[name][0] * 1000:.1f} ms; start-pose fit "
              f"median {results[name][1] * 1000:.0f} ms")
    print(f"new / old: canonical rollout {results['new'][0] / results['old'][0]:.2f}x (target <= 1.5x); "
          f"start-pose fit {results['new'][1] / results['old'][1]:.2f}x")


if __name__ == "__main__":
    main()
