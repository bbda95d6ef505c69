"""Train the pusht-96 world model (or its action-ignoring baseline) on simulator episodes.

Recipe: open-loop multi-step training. Each sample is a window of L consecutive
actions; the model rolls out L steps from the window's first frame feeding on its own
(uint8-rounded) predictions, and the loss is, averaged over the L steps,

    MSE(predicted frame, true frame) + gate_weight · BCE(gate, "this pixel must change")

where a pixel must change when the true next frame differs from the model's current
frame by more than `--change-tolerance` levels. The forward pass uses hard gates (as
inference does, at `--train-gate-threshold`), the backward pass the soft composite's
gradients; gradients flow through the recurrent state but not back through earlier
predicted frames (full backpropagation through the frames diverged). Half of the windows start at the episode's reset (agent at
rest, as in every rollout the engine serves); the others start anywhere, with the true
previous frame. L grows along a curriculum (the `PHASES` below), the batch shrinks
as L grows. AdamW, cosine learning rate with warm-up, gradient clipping at 1.

Runs are resumable: `<run>/last.pt` is written every `--ckpt-every` iterations and at
each validation, and a restarted command continues from it. Validation rolls out the
first `--val-episodes` validation episodes (seeds 1 000 000 …) open loop for 48 steps
with hard gates and logs PSNR / changed-pixel PSNR at horizons 1, 8, 16, 48.

After training, `--choose-threshold` picks the inference gate threshold on the
validation split (never the test split; `threshold_score`: the worst margin over
repeat-start across horizons and metrics) and stores it in `<run>/threshold.json`.

    python training/train.py --run training/runs/pusht-96
    python training/train.py --run training/runs/pusht-96-noaction --no-actions
    python training/train.py --run training/runs/pusht-96 --choose-threshold

Device: cuda when available (``--device``), else CPU with ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dream.engine.models.pusht.model import PushTConfig, PushTWorldModel, RolloutState
from dream.eval.pusht_eval import score_rollouts

DATA = Path(__file__).resolve().parent / "data"
HORIZONS = (1, 8, 16, 48)

# (iterations, window length L, batch size): short windows first, then long open-loop ones.
PHASES = [(1000, 1, 32), (600, 4, 16), (800, 8, 12), (800, 16, 8), (600, 32, 6), (500, 48, 4)]


def phase_at(iteration: int, scale: float) -> tuple[int, int]:
    end = 0
    for iters, length, batch in PHASES:
        end += int(iters * scale)
        if iteration < end:
            return length, batch
    return PHASES[-1][1], PHASES[-1][2]


def total_iterations(scale: float) -> int:
    return sum(int(iters * scale) for iters, _, _ in PHASES)


# -- data ----------------------------------------------------------------------------------


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """All episodes of a split as (frames uint8 (N, T+1, 96, 96, 3), actions float32 (N, T, 2)).

    Frames are decompressed once into `data/cache/<split>_frames.npy` and memory-mapped,
    so that several training processes share one copy in the page cache.
    """
    cache = DATA / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    frames_path, actions_path = cache / f"{split}_frames.npy", cache / f"{split}_actions.npy"
    shards = sorted((DATA / split).glob("shard-*.npz"))
    if not shards:
        raise FileNotFoundError(f"no shards under {DATA / split}; run training/generate.py --split {split}")
    if not frames_path.exists():
        sizes = []
        for shard in shards:
            with np.load(shard) as z:
                sizes.append(z["actions"].shape)
        n = sum(s[0] for s in sizes)
        steps = sizes[0][1]
        tmp = frames_path.with_suffix(".tmp.npy")
        frames = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, steps + 1, 96, 96, 3))
        actions = np.empty((n, steps, 2), np.float32)
        i = 0
        for shard in shards:
            with np.load(shard) as z:
                k = len(z["actions"])
                frames[i : i + k] = z["frames"]
                actions[i : i + k] = z["actions"]
                i += k
        frames.flush()
        del frames
        np.save(actions_path, actions)
        os.replace(tmp, frames_path)
        print(f"cached {split}: {n} episodes of {steps} steps", flush=True)
    return np.load(frames_path, mmap_mode="r"), np.load(actions_path)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) → float (..., 3, H, W) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)
    return t.movedim(-1, -3)


def sample_batch(
    frames: np.ndarray, actions: np.ndarray, length: int, batch: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows: (prev frame (B,3,H,W), frames (B,L+1,3,H,W), actions (B,L,2))."""
    n, steps = actions.shape[:2]
    eps = np.sort(rng.choice(n, size=batch, replace=False))  # sorted: friendlier to the page cache
    starts = np.where(rng.random(batch) < 0.5, 0, rng.integers(0, steps - length + 1, size=batch))
    clips = np.stack([frames[e, s : s + length + 1] for e, s in zip(eps, starts, strict=True)])
    prev = np.stack([frames[e, max(s - 1, 0)] for e, s in zip(eps, starts, strict=True)])
    acts = np.stack([actions[e, s : s + length] for e, s in zip(eps, starts, strict=True)])
    return to_tensor(prev), to_tensor(clips), torch.from_numpy(acts)


# -- training ------------------------------------------------------------------------------


def rollout_loss(
    model: PushTWorldModel,
    prev: torch.Tensor,
    clips: torch.Tensor,
    acts: torch.Tensor,
    gate_weight: float,
    gate_threshold: float,
    loss_scale: float,
    gate_pos_weight: float,
    change_tolerance: float,
    detach_frames: bool,
) -> tuple[torch.Tensor, dict[str, float]]:
    length = acts.shape[1]
    state = RolloutState(frame=clips[:, 0], prev_frame=prev, hidden=model.initial_state(clips[:, 0]).hidden)
    total_mse = torch.zeros(())
    total_bce = torch.zeros(())
    positives = 0.0
    pos_weight = torch.tensor(gate_pos_weight)
    copy_mse = F.mse_loss(
        clips[:, :1].expand(-1, length, -1, -1, -1), clips[:, 1:]
    ).item()  # repeat-start, for reference
    for t in range(length):
        current = state.frame.detach()
        if detach_frames:
            # "Pushforward": each step trains on the model's own earlier outputs as inputs,
            # but gradients do not flow back through them (only through the hidden state);
            # full backpropagation through the frames diverged.
            state = RolloutState(frame=current, prev_frame=state.prev_frame.detach(), hidden=state.hidden)
        state, gate = model.step(state, acts[:, t], gate_threshold=gate_threshold, soft_backward=True)
        target = clips[:, t + 1]
        total_mse = total_mse + F.mse_loss(state.frame, target)
        must_change = ((target - current).abs() > change_tolerance).any(dim=1, keepdim=True).float()
        # On logits: a saturated gate still gets the full gradient from pixels that must change.
        total_bce = total_bce + F.binary_cross_entropy_with_logits(gate, must_change, pos_weight=pos_weight)
        positives += must_change.mean().item()
    # Scaled so that Adam's per-element gradients sit far above its eps: the raw MSE of a
    # nearly static frame is ~1e-3 and its gradients ~1e-9 per weight, which eps=1e-8 damps.
    loss = loss_scale * (total_mse + gate_weight * total_bce) / length
    return loss, {
        "mse": total_mse.item() / length,
        "bce": total_bce.item() / length,
        "pos": positives / length,
        "copy_mse": copy_mse,
    }


@torch.no_grad()
def validate(
    model: PushTWorldModel, frames: np.ndarray, actions: np.ndarray, device: str, batch: int = 32
) -> dict:
    model.eval()
    steps = max(HORIZONS)
    preds = []
    for i in range(0, len(frames), batch):
        start = to_tensor(frames[i : i + batch, 0]).to(device)
        out = model.rollout(start, torch.from_numpy(actions[i : i + batch, :steps]).to(device))
        preds.append((out.movedim(-3, -1) * 255.0).round().to(torch.uint8).cpu().numpy())
    model.train()
    pred = np.concatenate(preds)
    gt = np.ascontiguousarray(frames[:, : steps + 1])
    model_scores = score_rollouts(pred, gt, HORIZONS)
    repeat = score_rollouts(np.repeat(gt[:, :1], steps + 1, axis=1), gt, HORIZONS)
    return {
        "psnr": [round(s.psnr_db, 2) for s in model_scores],
        "changed_psnr": [round(s.changed_psnr_db, 2) for s in model_scores],
        "ssim": [round(s.ssim, 4) for s in model_scores],
        "repeat_psnr": [round(s.psnr_db, 2) for s in repeat],
        "repeat_changed_psnr": [round(s.changed_psnr_db, 2) for s in repeat],
        "repeat_ssim": [round(s.ssim, 4) for s in repeat],
    }


def save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(args: argparse.Namespace) -> None:
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    device = args.device
    config = PushTConfig(use_actions=not args.no_actions)
    model = PushTWorldModel(config).to(device)
    if device == "cpu":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.99))
    total = total_iterations(args.scale)
    iteration = 0
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    last = run / "last.pt"
    if last.exists():
        ckpt = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        iteration = ckpt["iteration"]
        rng.bit_generator.state = ckpt["rng"]
        print(f"resumed {run} at iteration {iteration}/{total}", flush=True)
    else:
        (run / "config.json").write_text(
            json.dumps({"model": dataclasses.asdict(config), "args": vars(args)}, indent=1)
        )

    frames, actions = load_split("train")
    val_frames, val_actions = load_split("val")
    val_frames, val_actions = val_frames[: args.val_episodes], val_actions[: args.val_episodes]
    print(
        f"train: {len(actions)} episodes; val: {len(val_actions)}; params "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M; {total} iterations",
        flush=True,
    )
    log = (run / "log.jsonl").open("a")
    started = time.perf_counter()
    window_steps = 0
    window_start = time.perf_counter()
    while iteration < total:
        length, batch = phase_at(iteration, args.scale)
        warm = min(1.0, (iteration + 1) / args.warmup)
        lr = (
            args.lr
            * warm
            * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * iteration / total)))
        )
        for group in opt.param_groups:
            group["lr"] = lr
        prev, clips, acts = sample_batch(frames, actions, length, batch, rng)
        if device == "cpu":
            prev = prev.contiguous(memory_format=torch.channels_last)
        loss, parts = rollout_loss(
            model,
            prev.to(device),
            clips.to(device),
            acts.to(device),
            args.gate_weight,
            args.train_gate_threshold,
            args.loss_scale,
            args.gate_pos_weight,
            args.change_tolerance / 255.0,
            not args.backprop_frames,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip).item()
        if math.isfinite(grad_norm):
            opt.step()
        else:
            print(f"iteration {iteration}: non-finite gradient, update skipped", flush=True)
        iteration += 1
        window_steps += length * batch
        if iteration % args.log_every == 0:
            rate = window_steps / (time.perf_counter() - window_start)
            record = {
                "it": iteration,
                "L": length,
                "B": batch,
                "lr": round(lr, 6),
                "loss": round(loss.item(), 6),
                "mse": round(parts["mse"], 6),
                "copy_mse": round(parts["copy_mse"], 6),
                "bce": round(parts["bce"], 4),
                "pos": round(parts["pos"], 4),
                "gnorm": round(grad_norm, 3),
                "steps_per_s": round(rate, 1),
                "elapsed_s": round(time.perf_counter() - started),
            }
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            window_steps, window_start = 0, time.perf_counter()
        if iteration % args.val_every == 0 or iteration == total:
            scores = validate(model, val_frames, val_actions, device)
            record = {"it": iteration, "val": scores}
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
        if iteration % args.ckpt_every == 0 or iteration == total or iteration % args.val_every == 0:
            save_atomic(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "iteration": iteration,
                    "rng": rng.bit_generator.state,
                    "config": dataclasses.asdict(config),
                },
                last,
            )
    print(f"done: {iteration} iterations in {time.perf_counter() - started:.0f}s this session", flush=True)


def threshold_score(scores: dict) -> float:
    """Worst margin over repeat-start across horizons: full-frame PSNR (dB), SSIM (×100,
    so 0.01 SSIM weighs like 1 dB) and changed-pixel PSNR minus the 3 dB it must gain."""
    margins = []
    for i in range(len(HORIZONS)):
        margins.append(scores["psnr"][i] - scores["repeat_psnr"][i])
        margins.append(100.0 * (scores["ssim"][i] - scores["repeat_ssim"][i]))
        margins.append(scores["changed_psnr"][i] - scores["repeat_changed_psnr"][i] - 3.0)
    return min(margins)


def choose_threshold(args: argparse.Namespace) -> None:
    """Pick the inference gate threshold on the validation split (`threshold_score`)."""
    run = Path(args.run)
    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    base = PushTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["config"].items()})
    frames, actions = load_split("val")
    frames, actions = frames[: args.threshold_episodes], actions[: args.threshold_episodes]
    results = {}
    for tau in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        model = PushTWorldModel(dataclasses.replace(base, gate_threshold=tau))
        model.load_state_dict(ckpt["model"])
        if args.device == "cpu":
            model = model.to(memory_format=torch.channels_last)
        scores = validate(model.to(args.device), frames, actions, args.device)
        results[tau] = scores
        print(json.dumps({"tau": tau, "score": round(threshold_score(scores), 3), **scores}), flush=True)
    best = max(results, key=lambda t: threshold_score(results[t]))
    record = {
        "gate_threshold": best,
        "episodes": len(actions),
        "criterion": "max over tau of the worst val margin over repeat-start (train.threshold_score)",
        "sweep": {str(k): v for k, v in results.items()},
    }
    (run / "threshold.json").write_text(json.dumps(record, indent=1))
    print(f"chose gate_threshold={best}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", required=True, help="run folder (checkpoints, logs)")
    parser.add_argument("--no-actions", action="store_true", help="train the action-ignoring baseline")
    parser.add_argument(
        "--choose-threshold", action="store_true", help="pick the gate threshold on validation"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every phase's iteration count")
    parser.add_argument("--lr", type=float, default=7e-4)
    parser.add_argument("--min-lr-frac", type=float, default=0.05)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--gate-weight", type=float, default=0.01)
    parser.add_argument("--train-gate-threshold", type=float, default=0.3)
    parser.add_argument("--loss-scale", type=float, default=1000.0)
    parser.add_argument("--gate-pos-weight", type=float, default=5.0, help="BCE weight of must-change pixels")
    parser.add_argument(
        "--change-tolerance",
        type=float,
        default=8.0,
        help="a pixel must change when the next true frame differs from the model's by more (uint8 levels)",
    )
    parser.add_argument("--clip", type=float, default=2.0, help="gradient-norm clip (of the scaled loss)")
    parser.add_argument(
        "--backprop-frames",
        action="store_true",
        help="backpropagate through predicted frames too (unstable here)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument("--val-episodes", type=int, default=64)
    parser.add_argument("--threshold-episodes", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.choose_threshold:
        choose_threshold(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
