"""`make demo`: embedded rollouts of the built-in model plus a small bulk run.

    python -m dream.demo --out out

Writes, under ``out/``:
  rollouts/epNN.mp4           predicted rollouts of bundled held-out Push-T episodes
  compare_epNN.png            ground truth (simulator) vs prediction at a few steps
  compare_epNN.gif            the same, animated side by side
  episodes/                   the bundled episodes as a frames_from_dir folder
  bulk/                       predict_many over that folder: videos/*.mp4 + metadata.parquet
  plan_ep00.gif / .png        one closed-loop episode of visual MPC (dream.plan) in gym-pusht:
                              goal image | what the planner imagined | what the simulator did
                              (needs the [sim] extra; skipped without it)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SCALE = 3  # 96 px frames are tiny on screen


def _label(img: np.ndarray, text: str) -> np.ndarray:
    import numpy as np
    from PIL import Image, ImageDraw

    pad = np.full((14, img.shape[1], 3), 255, np.uint8)
    canvas = Image.fromarray(np.concatenate([pad, img], axis=0))
    ImageDraw.Draw(canvas).text((3, 1), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def _up(frame: np.ndarray) -> np.ndarray:
    return frame.repeat(SCALE, axis=0).repeat(SCALE, axis=1)


def comparison_grid(truth: np.ndarray, pred: np.ndarray, steps: list[int]) -> np.ndarray:
    """Two rows (simulator, prediction) of frames at `steps`, labelled."""
    import numpy as np

    gap = np.full((truth.shape[1] * SCALE + 14, 4, 3), 255, np.uint8)
    rows = []
    for name, video in (("simulator", truth), ("predicted", pred)):
        cells = []
        for t in steps:
            cells += [_label(_up(video[t]), f"{name} t={t}"), gap]
        rows.append(np.concatenate(cells[:-1], axis=1))
    return np.concatenate([rows[0], np.full((4, rows[0].shape[1], 3), 255, np.uint8), rows[1]], axis=0)


def comparison_gif(truth: np.ndarray, pred: np.ndarray, path: Path, fps: int) -> None:
    """Animated side by side: simulator | prediction."""
    import numpy as np
    from PIL import Image

    gap = np.full((truth.shape[1] * SCALE + 14, 4, 3), 255, np.uint8)
    frames = [
        Image.fromarray(np.concatenate(
            [_label(_up(truth[t]), f"simulator t={t}"), gap, _label(_up(pred[t]), "predicted")], axis=1))
        for t in range(len(truth))
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)


def plan_episode(out: Path, *, seed: int = 2_000_000, budget: int = 50) -> Path | None:
    """One closed-loop MPC episode towards a test-split goal; writes plan_ep00.gif/.png, returns the gif."""
    import numpy as np
    from PIL import Image

    import dream
    from dream.eval.plan_eval import SUCCESS_ANGLE, SUCCESS_POSITION, goal_errors, make_pair
    from dream.plan import CEM, MPC, goal_image_cost

    try:
        from dream.sim.pusht import PushTSim

        sim = PushTSim()
    except ImportError as exc:
        print(f"plan demo skipped: {exc}")
        return None
    pair = make_pair(seed, sim)
    model = dream.Client().models.get("pusht-96")
    mpc = MPC(CEM(model, goal_image_cost(pair.goal)))
    frame = sim.reset(seed)
    real, imagined = [frame], [frame]
    plan_frames, offset, steps = None, 0, 0
    for _ in range(budget):
        steps += 1
        before = len(mpc.plans)
        action = mpc.act(frame)
        if len(mpc.plans) > before:
            plan_frames, offset = mpc.plans[-1].frames, 0
        offset += 1
        assert plan_frames is not None
        imagined.append(plan_frames[offset])
        frame = sim.step(action)
        real.append(frame)
        pos, angle = goal_errors(sim, pair)
        if pos < SUCCESS_POSITION and angle < SUCCESS_ANGLE:
            break
    walls = [p.wall_s for p in mpc.plans]
    print(f"plan: seed {seed}: {'reached the goal' if pos < SUCCESS_POSITION and angle < SUCCESS_ANGLE else 'missed'} "
          f"after {steps} steps (error {pos:.1f} px, {angle:.1f}°), {len(walls)} plans, median plan() "
          f"{np.median(walls):.2f} s, {mpc.plans[0].rollouts} rollouts each")
    gap = np.full((96 * SCALE + 14, 4, 3), 255, np.uint8)

    def panel(i: int) -> np.ndarray:
        return np.concatenate([_label(_up(pair.goal), "goal"), gap, _label(_up(imagined[i]), f"imagined t={i}"), gap,
                               _label(_up(real[i]), "simulator")], axis=1)

    frames = [Image.fromarray(panel(i)) for i in range(len(real))]
    frames += [frames[-1]] * 10  # hold the end
    gif = out / "plan_ep00.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=150, loop=0)
    picks = sorted({0, len(real) // 3, 2 * len(real) // 3, len(real) - 1})
    Image.fromarray(np.concatenate([panel(i) for i in picks], axis=0)).save(out / "plan_ep00.png")
    return gif


def run(out: Path, *, episodes: int = 3, progress: bool = True) -> int:
    import numpy as np
    from PIL import Image

    import dream
    from dream.engine.video import decode_mp4
    from dream.eval.pusht_eval import score_rollouts
    from dream.examples import pusht_episodes, write_pusht_dir
    from dream.io import RolloutSink, frames_from_dir

    out.mkdir(parents=True, exist_ok=True)
    (out / "rollouts").mkdir(exist_ok=True)
    client = dream.Client()
    model = client.models.get(dream.DEFAULT_SPEC)
    print(f"model {model.slug}: actions {model.action_dim}-D, {model.resolution[0]}x{model.resolution[1]}, "
          f"{model.spec.fps} fps (embedded engine, CPU)")

    for ep in pusht_episodes()[:episodes]:
        rollout = model.predict(start_frame=ep.start_frame, actions=ep.actions)
        name = f"ep{ep.index:02d}"
        rollout.save(out / "rollouts" / f"{name}.mp4")
        pred = rollout.video()
        Image.fromarray(comparison_grid(ep.frames, pred, [0, 8, 16, 32, 48])).save(out / f"compare_{name}.png")
        comparison_gif(ep.frames, pred, out / f"compare_{name}.gif", model.spec.fps)
        raw = decode_mp4(bytes(rollout.mp4_bytes))
        horizon = len(ep.frames) - 1
        (model_score,) = score_rollouts(raw[None], ep.frames[None], horizons=(horizon,))
        repeat = np.broadcast_to(ep.frames[0], ep.frames.shape)[None].copy()
        (repeat_score,) = score_rollouts(repeat, ep.frames[None], horizons=(horizon,))
        print(
            f"  {name}: {rollout.num_frames} frames in {rollout.engine_wall_ms:.0f} ms engine "
            f"({rollout.num_frames / max(rollout.wall_s, 1e-9):.0f} frames/s); at t={horizon} vs the simulator: "
            f"PSNR {model_score.psnr_db:.1f} dB, on changed pixels {model_score.changed_psnr_db:.1f} dB, "
            f"block IoU {model_score.block_iou:.2f} (repeating the start frame: {repeat_score.psnr_db:.1f} / "
            f"{repeat_score.changed_psnr_db:.1f} dB, {repeat_score.block_iou:.2f})"
        )

    src_dir = write_pusht_dir(out / "episodes")
    src = frames_from_dir(src_dir)
    est = client.estimate_cost(src)
    print(f"bulk: {est.rows} rows x {est.frames_per_row} frames, est. ${est.total_usd:.4f}")
    result = client.predict_many(src, RolloutSink.dir(out / "bulk"), concurrency=2, progress=progress)
    print(f"bulk: {result.ok} ok, {result.failed} failed, {result.skipped} already done → {result.output_uri}")
    gif = plan_episode(out)
    print(f"done: look at {out / 'compare_ep00.gif'} and {out / 'compare_ep00.png'}"
          + (f", and at {gif}" if gif is not None else ""))
    print(f"browse the bulk run in a browser: dream view {out / 'bulk'} --open")
    return 0 if result.failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dream.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out", help="output folder (default ./out)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes to roll out and compare (default 3)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    return run(Path(args.out), episodes=args.episodes, progress=not args.no_progress)


if __name__ == "__main__":
    sys.exit(main())
