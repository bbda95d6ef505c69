"""Does augmentation help? The same small image-to-action policy, trained on N real Push-T
demonstrations vs the same N plus the variants `dream augment` made of them, evaluated in
gym-pusht on test-split start states.

Stages (each resumable: rerun the command and finished stages are skipped):

1. demos:   N expert episodes (`pusht_expert.py`, train seeds 0 … N-1) written with
            `RolloutSink.lerobot` into <out>/demos, a LeRobot v3.0 dataset. `--expert
            pusher` (default): the frame-only `pusher` policy of `dream.eval.policies`
            (it succeeds from every test-split start state in gym-pusht); `--expert
            planner`: sampling MPC with the simulator as its lookahead (a weaker expert:
            4 of 24 demonstrations succeed).
2. augment: `dream augment lerobot:<out>/demos lerobot:<out>/aug --variants K --noise SIGMA
            --qc-max-drop DB --spec pusht-96` (a subprocess: the real command).
3. train:   a CNN (96×96 RGB → the agent's target, 4 conv layers + 2 dense) by behaviour
            cloning (MSE), the same number of steps, batch and seed for both training sets:
            "real" = the demos' (frame t, action t) pairs; "real+aug" = those plus the
            accepted variants' (predicted frame t, perturbed action t) pairs.
4. eval:    each policy closed loop in gym-pusht from the test seeds 2,000,000 …
            (`--eval-episodes`, ≥ 50), at most 300 steps; success = coverage > 0.95 at
            some step (gym-pusht's own threshold; the episode ends there), plus the mean of
            each episode's final and maximum coverage. All episodes step in lockstep, one
            batched forward of the policy per step.

    python training/augment_experiment.py --out training/runs/aug-exp
    # → <out>/results.json and the Markdown table printed (and in <out>/results.md)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

TASK = "Push the T-shaped block onto the T-shaped target."
TEST_SEED_OFFSET = 2_000_000


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stage_demos(out: Path, n: int, max_steps: int, expert: str) -> dict:
    from pusht_expert import run_expert, run_frame_expert

    from dream.engine.video import encode_mp4
    from dream.io import RolloutRecord, RolloutSink

    sink = RolloutSink.lerobot(out / "demos", repo_id="local/pusht-expert-demos", task=TASK, episodes_per_file=10)
    done = sink.finished_row_ids()
    summary_path = out / "demos_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for seed in range(n):
        row_id = f"demo_{seed:04d}"
        if row_id in done:
            continue
        demo = run_frame_expert(seed, max_steps=max_steps) if expert == "pusher" else run_expert(seed, max_steps=max_steps)
        buf = __import__("io").BytesIO()
        np.save(buf, demo["actions"].astype(np.float32))
        cov = demo["coverage"]
        sink.write(RolloutRecord(row_id, encode_mp4(demo["frames"], 10),
                                 {"seed": seed, "task": TASK, "final_coverage": float(cov[-1]),
                                  "max_coverage": float(cov.max()), "success": bool(cov.max() > 0.95)},
                                 actions_bytes=buf.getvalue()))
        summary[row_id] = {"steps": len(demo["actions"]), "final_coverage": float(cov[-1]),
                           "max_coverage": float(cov.max()), "success": bool(cov.max() > 0.95)}
        summary_path.write_text(json.dumps(summary, indent=1))
        _log(f"demo {seed}: {len(demo['actions'])} steps, final coverage {cov[-1]:.3f}")
    sink.finalize()
    return summary


def stage_augment(out: Path, variants: int, noise: float, max_drop: float) -> str:
    cmd = [sys.executable, "-m", "dream.cli", "augment", f"lerobot:{out / 'demos'}", f"lerobot:{out / 'aug'}",
           "--sink-opt", "repo_id=local/pusht-augmented", "--variants", str(variants), "--noise", str(noise),
           "--qc-max-drop", str(max_drop), "--spec", "pusht-96", "--concurrency", "1", "--no-progress"]
    _log("running: dream " + " ".join(cmd[3:]))
    done = subprocess.run(cmd, capture_output=True, text=True)
    print(done.stdout + done.stderr, flush=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"dream augment failed ({done.returncode})")
    return done.stdout.strip()


def load_pairs(root: Path, *, variants_only: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """(frames uint8 (N, 96, 96, 3), actions float32 (N, 2), episodes) from a LeRobot dataset we wrote."""
    import pyarrow.parquet as pq

    from dream.io import frames_from_lerobot

    kinds = {}
    for path in sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        for row in pq.read_table(path, columns=["episode_index", "dream/row_id"]).to_pylist():
            kinds[row["episode_index"]] = row["dream/row_id"]
    src = frames_from_lerobot(str(root))
    frames, actions, episodes = [], [], 0
    for row in src:
        row_id = kinds[row.metadata["episode_index"]]
        if variants_only and "_aug" not in row_id:
            continue
        acts = np.load(__import__("io").BytesIO(row.actions_bytes))
        frames.append(np.stack(src.row_frames(row.metadata, len(acts))))
        actions.append(acts)
        episodes += 1
    return np.concatenate(frames), np.concatenate(actions).astype(np.float32), episodes


def make_policy(kind: str = "keypoints"):
    """The image-to-action policy both training sets train.

    "keypoints" (default): convolutions → spatial softmax (each of 64 feature maps becomes
    the expected (x, y) of its activation, as robomimic's and LeRobot's image policies do)
    → MLP → the agent's target. "cnn": the plain CNN of the first run (4 strided
    convolutions + 2 dense layers), which learned nothing from 50 demonstrations.
    """
    import torch
    from torch import nn

    class PlainCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.ReLU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
            )
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 6 * 6, 256), nn.ReLU(), nn.Linear(256, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x))

    class Keypoints(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.ReLU(),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(64, 64, 3, padding=1),
            )
            side = torch.linspace(-1.0, 1.0, 24)
            self.register_buffer("grid_x", side.repeat(24))
            self.register_buffer("grid_y", side.repeat_interleave(24))
            self.head = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            maps = self.conv(x).flatten(2).softmax(dim=-1)  # (B, 64, 24·24)
            points = torch.cat([maps @ self.grid_x, maps @ self.grid_y], dim=1)
            return self.head(points)

    return Keypoints() if kind == "keypoints" else PlainCNN()


def _to_input(frames: np.ndarray):
    import torch

    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)


def stage_train(frames: np.ndarray, actions: np.ndarray, path: Path, *, steps: int, seed: int, kind: str) -> float:
    import torch

    if path.exists():
        return json.loads(path.with_suffix(".json").read_text())["train_s"]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    policy = make_policy(kind)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    targets = torch.from_numpy(actions / 512.0)
    started = time.perf_counter()
    for step in range(steps):
        idx = rng.integers(0, len(frames), 64)
        loss = torch.nn.functional.mse_loss(policy(_to_input(frames[idx])), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            _log(f"  {path.stem} step {step} loss {loss.item():.5f}")
    train_s = time.perf_counter() - started
    torch.save(policy.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps({"train_s": train_s, "pairs": len(frames)}))
    return train_s


def stage_eval(path: Path, episodes: int, max_steps: int, kind: str) -> dict:
    import torch

    from dream.sim.pusht import _import_gym_pusht

    result_path = path.with_suffix(".eval.json")
    if result_path.exists():
        return json.loads(result_path.read_text())
    gym = _import_gym_pusht()
    policy = make_policy(kind)
    policy.load_state_dict(torch.load(path))
    policy.eval()
    envs = [gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", render_mode="rgb_array") for _ in range(episodes)]
    observations = [env.unwrapped.reset(seed=TEST_SEED_OFFSET + i)[0]["pixels"] for i, env in enumerate(envs)]
    coverage: list[list[float]] = [[0.0] for _ in envs]
    active = list(range(episodes))
    with torch.no_grad():
        for _ in range(max_steps):
            if not active:
                break
            batch = np.stack([observations[i] for i in active])
            targets = np.clip(policy(_to_input(batch)).numpy() * 512.0, 0, 512).astype(np.float32)
            still = []
            for i, action in zip(active, targets, strict=True):
                obs, _, terminated, _, info = envs[i].unwrapped.step(action)
                observations[i] = obs["pixels"]
                coverage[i].append(float(info["coverage"]))
                if not terminated:
                    still.append(i)
            active = still
    for env in envs:
        env.close()
    finals = [c[-1] for c in coverage]
    maxes = [max(c) for c in coverage]
    successes = [m > 0.95 for m in maxes]
    result = {"episodes": episodes, "success": float(np.mean(successes)), "mean_final_coverage": float(np.mean(finals)),
              "mean_max_coverage": float(np.mean(maxes)),
              "final_coverage_sem": float(np.std(finals, ddof=1) / np.sqrt(episodes))}
    result_path.write_text(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("training/runs/aug-exp"))
    parser.add_argument("--expert", choices=("pusher", "planner"), default="pusher",
                        help="who makes the real demonstrations (module docstring)")
    parser.add_argument("--demos", type=int, default=50, help="N real demonstrations (train seeds 0 … N-1)")
    parser.add_argument("--demo-steps", type=int, default=200, help="expert steps per demonstration at most")
    parser.add_argument("--variants", type=int, default=4, help="K variants per demonstration")
    parser.add_argument("--noise", type=float, default=8.0, help="action noise std (workspace px)")
    parser.add_argument("--qc-max-drop", type=float, default=2.0)
    parser.add_argument("--policy", choices=("keypoints", "cnn"), default="keypoints", help="make_policy's kind")
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--train-seeds", type=int, default=1, help="policies per training set (seeds 0 …)")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--eval-steps", type=int, default=300)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    demos = stage_demos(out, args.demos, args.demo_steps, args.expert)
    timings["demos_s"] = time.perf_counter() - t
    t = time.perf_counter()
    augment_report = stage_augment(out, args.variants, args.noise, args.qc_max_drop)
    timings["augment_s"] = time.perf_counter() - t
    t = time.perf_counter()
    real_f, real_a, real_eps = load_pairs(out / "demos", variants_only=False)
    aug_f, aug_a, aug_eps = load_pairs(out / "aug", variants_only=True)
    _log(f"real: {real_eps} episodes / {len(real_f)} pairs; augmented: {aug_eps} variants / {len(aug_f)} pairs")
    sets = {"real": (real_f, real_a), "real+aug": (np.concatenate([real_f, aug_f]), np.concatenate([real_a, aug_a]))}
    results: dict[str, list[dict]] = {name: [] for name in sets}
    for seed in range(args.train_seeds):
        for name, (frames, actions) in sets.items():
            path = out / f"policy-{args.policy}-{name.replace('+', '-')}-s{seed}.pt"
            stage_train(frames, actions, path, steps=args.train_steps, seed=seed, kind=args.policy)
            res = stage_eval(path, args.eval_episodes, args.eval_steps, args.policy)
            _log(f"{name} seed {seed}: {res}")
            results[name].append(res)
    timings["train_eval_s"] = time.perf_counter() - t
    demo_cov = [d["final_coverage"] for d in demos.values()]
    table = [
        "| training set | episodes | (frame, action) pairs | success (coverage > 0.95) | mean final coverage | mean max coverage |",
        "|---|---|---|---|---|---|",
    ]
    for name, (frames, _) in sets.items():
        rs = results[name]
        eps = real_eps if name == "real" else real_eps + aug_eps
        succ = " / ".join(f"{r['success']:.2f}" for r in rs)
        fin = " / ".join(f"{r['mean_final_coverage']:.3f}" for r in rs)
        mx = " / ".join(f"{r['mean_max_coverage']:.3f}" for r in rs)
        table.append(f"| {name} | {eps} | {len(frames)} | {succ} | {fin} | {mx} |")
    summary = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "expert_demos": {"n": len(demos), "success": float(np.mean([d["success"] for d in demos.values()])),
                         "mean_final_coverage": float(np.mean(demo_cov))},
        "augment": augment_report, "results": results, "timings_s": timings,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    (out / "results.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    print(json.dumps(summary["expert_demos"]), json.dumps(timings))


if __name__ == "__main__":
    main()
