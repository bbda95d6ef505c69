"""Learn the block dynamics of the built-in pusht-96 model from simulated episodes.

The model (`dream.engine.models.pusht`) reads the agent and block poses off the start
frame, moves the agent by gym-pusht's PD law and the block by a small MLP
(`dynamics.BlockDynamics`, features in the block's frame). This script trains that MLP
with state supervision on simulated poses (`pusht_states.py`), open loop: each sample is
a window of consecutive actions started from the true pose (jittered by a pose-fit-sized
error), the network's own predictions are fed back through the window, and the loss is
the distance of three points of the T (its bar's ends, its stem's foot) to where the
simulator put them, at every step. Windows grow from 4 to 48 actions (curriculum), so
errors that compound over a rollout are what is trained against.

Checkpoints are chosen on the validation seeds (1 000 000 …): open-loop rollouts of
whole episodes from their true start poses, mean T-point error at horizons 1, 8, 16,
48. The test seeds (2 000 000 …) belong to `dream eval` and are never used here.

Resumable: ``training/runs/pusht-dyn/last.pt`` holds the model, optimiser and counters;
rerunning continues until ``--iters``; ``--minutes`` ends a stage early (rerun to go
on). Uses CUDA when present. The best checkpoint is exported as float64 safetensors to
the package (``--out``).

    python training/pusht_states.py --split val --count 200 --steps 64
    python training/pusht_states.py --split train --count 4000 --steps 64
    python training/learn_pusht.py --iters 6000

Training and validation data cover the action distributions of
`dream.sim.pusht_actions` (``--distributions``, default all): the scripted policies'
``--train`` episodes plus ``--train-other`` episodes of each other distribution
(`pusht_states.py --distribution`), windows drawn with every distribution equally likely.
The validation score is the mean over distributions. ``--init`` starts from a weights
file (e.g. the shipped one) instead of a zero head; ``--run`` names the run folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from pusht_states import load_split
from torch import nn
from tqdm import tqdm

from dream.engine.models.pusht import dynamics as dyn
from dream.engine.models.pusht.physics import PhysicsParams
from dream.engine.models.pusht.runner import WEIGHTS_DIR
from dream.sim.pusht_actions import DISTRIBUTIONS

RUNS_ROOT = Path(__file__).resolve().parent / "runs"
HORIZONS = (1, 8, 16, 48)
POINTS = ((-60.0, -30.0), (60.0, -30.0), (0.0, 60.0))  # bar ends and stem foot, cog frame


def agent_paths(agent0: np.ndarray, actions: np.ndarray, params: PhysicsParams) -> np.ndarray:
    """(N, T, S + 1, 2): the agent's start and per-substep positions for every action, by the PD law."""
    n, t = actions.shape[:2]
    out = np.empty((n, t, params.substeps + 1, 2))
    p = agent0.astype(np.float64).copy()
    v = np.zeros_like(p)
    for i in range(t):
        out[:, i, 0] = p
        target = actions[:, i].astype(np.float64)
        for k in range(params.substeps):
            v = v + (params.k_p * (target - p) + params.k_v * (0.0 - v)) * params.dt
            p = p + v * params.dt
            out[:, i, k + 1] = p
    return out


def true_changes(block: np.ndarray) -> np.ndarray:
    """(N, T, 3): each action's pose change in the block's frame at the action's start."""
    d = block[:, 1:] - block[:, :-1]
    c, s = np.cos(block[:, :-1, 2]), np.sin(block[:, :-1, 2])
    change = np.stack([c * d[..., 0] + s * d[..., 1], c * d[..., 1] - s * d[..., 0], d[..., 2]], -1)
    change[dyn.change_size(np, change) < dyn.STILL] = 0.0
    return change


class Net(nn.Module):
    def __init__(self, width: int = 256, depth: int = 3) -> None:
        self.width, self.depth = width, depth
        super().__init__()
        dims = [dyn.N_FEATURES] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.head = nn.Linear(width, 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = nn.functional.silu(layer(x))
        scale = torch.tensor([dyn.POS_SCALE, dyn.POS_SCALE, dyn.ANGLE_SCALE], dtype=x.dtype, device=x.device)
        return self.head(x) * scale

    def load_dynamics(self, weights: dyn.BlockDynamics) -> None:
        """Set the layers from exported weights (same width and depth)."""
        with torch.no_grad():
            for m, (w, b) in zip([*self.hidden, self.head], weights.layers, strict=True):
                m.weight.copy_(torch.as_tensor(w.T, dtype=m.weight.dtype))
                m.bias.copy_(torch.as_tensor(b, dtype=m.bias.dtype))

    def export(self) -> dyn.BlockDynamics:
        layers = [(m.weight.detach().double().cpu().numpy().T, m.bias.detach().double().cpu().numpy())
                  for m in [*self.hidden, self.head]]
        return dyn.BlockDynamics(layers)


def body_points(block: torch.Tensor) -> torch.Tensor:
    x, y, a = block[..., 0:1], block[..., 1:2], block[..., 2:3]
    c, s = torch.cos(a), torch.sin(a)
    return torch.stack([torch.cat([x + c * px - s * py, y + s * px + c * py], -1) for px, py in POINTS], -2)


def unroll(net: Net, block: torch.Tensor, last: torch.Tensor, paths: torch.Tensor, snap: bool = True) -> torch.Tensor:
    """Open-loop block poses (B, L, 3) after each of the L actions of `paths` (B, L, S + 1, 2).

    snap: drop changes under `STILL` as inference does; off while training, so that a
    network that starts out predicting no motion still gets gradients.
    """
    out = []
    for i in range(paths.shape[1]):
        feats, clearance = dyn.features(torch, block, last, paths[:, i])
        gate = (clearance < dyn.CONTACT_MARGIN) | (dyn.change_size(torch, last) >= dyn.STILL)
        change = dyn.settle(torch, net(feats), last, clearance < dyn.CONTACT_MARGIN)
        keep = gate & (dyn.change_size(torch, change.detach()) >= dyn.STILL) if snap else gate
        change = change * keep[:, None].to(change.dtype)
        block = dyn.apply_change(torch, block, change)
        last = change
        out.append(block)
    return torch.stack(out, 1)


def evaluate(net: Net, val: dict[str, torch.Tensor]) -> np.ndarray:
    """Mean T-point error (px) of open-loop episode rollouts from true start poses: (distributions, HORIZONS)."""
    with torch.no_grad():
        block = val["block"]
        steps = max(HORIZONS)
        pred = unroll(net, block[:, 0], torch.zeros_like(block[:, 0]), val["paths"][:, :steps])
        err = (body_points(pred) - body_points(block[:, 1 : steps + 1])).norm(dim=-1).mean(-1)  # (N, T)
    dist = val["dist"].cpu().numpy()
    return np.array([[err[dist == d, h - 1].mean().item() for h in HORIZONS] for d in np.unique(dist)])


def prepare(data: dict[str, np.ndarray], device: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    paths = agent_paths(data["agent"][:, 0], data["actions"], PhysicsParams())
    return {"block": torch.tensor(data["block"], dtype=dtype, device=device),
            "paths": torch.tensor(paths, dtype=dtype, device=device),
            "changes": torch.tensor(true_changes(data["block"]), dtype=dtype, device=device),
            "dist": torch.tensor(data["dist"], device=device)}


def load_mixture(split: str, distributions: list[str], scripted: int, other: int, steps: int) -> dict[str, np.ndarray]:
    """The split's episodes of every distribution, concatenated, with ``dist`` (index into `distributions`)."""
    parts = []
    for d, name in enumerate(distributions):
        part = load_split(split, scripted if name == "scripted" else other, steps, name)
        part["dist"] = np.full(len(part["seeds"]), d, np.int64)
        parts.append(part)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def window_length(it: int, schedule: list[tuple[int, int]]) -> int:
    """The window at iteration `it` for a schedule of (first iteration, window) pairs."""
    length = schedule[0][1]
    for first, window in schedule:
        if it >= first:
            length = window
    return length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=4000, help="train episodes (seeds 0 …)")
    parser.add_argument("--val", type=int, default=200, help="validation episodes (seeds 1 000 000 …)")
    parser.add_argument("--steps", type=int, default=64, help="actions per simulated episode")
    parser.add_argument("--iters", type=int, default=6000)
    parser.add_argument("--minutes", type=float, default=110.0, help="end this stage after this long")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR / "pusht-96.safetensors")
    parser.add_argument("--distributions", default=",".join(DISTRIBUTIONS),
                        help="comma-separated action distributions (dream.sim.pusht_actions; default all)")
    parser.add_argument("--train-other", type=int, default=1000, help="train episodes per non-scripted distribution")
    parser.add_argument("--val-other", type=int, default=200, help="validation episodes per non-scripted distribution")
    parser.add_argument("--init", type=Path, default=None, help="start from these weights (a pusht-96 safetensors file)")
    parser.add_argument("--run", default="pusht-dyn", help="run folder under training/runs/")
    parser.add_argument("--windows", default="0:4,800:16,2200:32,4000:48",
                        help="window schedule: comma-separated FIRST_ITER:WINDOW pairs")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=3)
    args = parser.parse_args()
    runs = RUNS_ROOT / args.run
    distributions = [d.strip() for d in args.distributions.split(",")]
    schedule = [(int(a), int(b)) for a, b in (pair.split(":") for pair in args.windows.split(","))]
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = prepare(load_mixture("train", distributions, args.train, args.train_other, args.steps), device, torch.float32)
    val = prepare(load_mixture("val", distributions, args.val, args.val_other, args.steps), device, torch.float64)
    n, t = train["changes"].shape[:2]
    moving = (dyn.change_size(torch, train["changes"]) > 0).cpu().numpy()  # (N, T)
    dist = train["dist"].cpu().numpy()
    weight = 1.0 / np.bincount(dist)[dist]
    weight /= weight.sum()  # every distribution equally likely

    net = Net(args.width, args.depth).to(device)
    if args.init is not None:
        net.load_dynamics(dyn.BlockDynamics.load(args.init))
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i / args.iters, 1.0))))
    state = {"iter": 0, "best": float("inf"), "best_errors": None, "history": []}
    runs.mkdir(parents=True, exist_ok=True)
    if (runs / "last.pt").exists():
        ckpt = torch.load(runs / "last.pt", map_location=device, weights_only=False)
        net.load_state_dict(ckpt["net"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        state = ckpt["state"]
        rng = np.random.default_rng([0, state["iter"]])
        print(f"resumed at iteration {state['iter']}", flush=True)
    else:
        net_eval = Net(args.width, args.depth).to(device).double()
        net_eval.load_state_dict(net.state_dict())
        errors = evaluate(net_eval, val)
        state["history"].append({"iter": 0, "val_errors": errors.round(3).tolist()})
        print(f"iter 0 (start) val T-point error, mean over distributions {errors.mean(0).round(2)} px; "
              f"per distribution at h=48: {dict(zip(distributions, errors[:, -1].round(1).tolist(), strict=True))}", flush=True)
    bar = tqdm(total=args.iters, initial=state["iter"], desc="training", unit="it")
    while state["iter"] < args.iters and time.perf_counter() - started < args.minutes * 60:
        length = window_length(state["iter"], schedule)
        # 80 % of windows hold some motion of the block, 20 % any window
        ep = rng.choice(n, args.batch, p=weight)
        start = rng.integers(0, t - length + 1, args.batch)
        for j in range(int(args.batch * 0.8)):
            for _ in range(20):
                if moving[ep[j], start[j] : start[j] + length].any():
                    break
                ep[j], start[j] = rng.choice(n, p=weight), rng.integers(0, t - length + 1)
        idx = torch.as_tensor(ep, device=device)
        steps = torch.as_tensor(start, device=device)[:, None] + torch.arange(length, device=device)
        paths = train["paths"][idx[:, None], steps]
        truth = train["block"][idx[:, None], steps + 1]
        block0 = train["block"][idx, steps[:, 0]].clone()
        block0[:, :2] += torch.randn_like(block0[:, :2]) * 0.7
        block0[:, 2] += torch.randn_like(block0[:, 2]) * 0.004
        prev = (steps[:, 0] - 1).clamp(min=0)
        last = train["changes"][idx, prev] * (steps[:, 0:1] > 0).to(torch.float32)
        pred = unroll(net, block0, last, paths, snap=False)
        loss = nn.functional.smooth_l1_loss(body_points(pred), body_points(truth))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        state["iter"] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", window=length)
        if state["iter"] % args.eval_every == 0 or state["iter"] == args.iters:
            net_eval = Net(args.width, args.depth).to(device).double()
            net_eval.load_state_dict(net.state_dict())
            errors = evaluate(net_eval, val)
            score = float(errors.mean())
            state["history"].append({"iter": state["iter"], "val_errors": errors.round(3).tolist()})
            print(f"\niter {state['iter']} window {length} loss {loss.item():.4f} val T-point error, mean over "
                  f"distributions {errors.mean(0).round(2)} px at h={HORIZONS}; per distribution at h=48: "
                  f"{dict(zip(distributions, errors[:, -1].round(1).tolist(), strict=True))} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
            if score < state["best"]:
                state["best"], state["best_errors"] = score, errors.mean(0).round(3).tolist()
                torch.save(net.state_dict(), runs / "best.pt")
                meta = {
                    "source": "training/learn_pusht.py",
                    "distributions": json.dumps(distributions),
                    "train_episodes": json.dumps({"scripted": args.train, "other": args.train_other,
                                                  "seeds": "dream.sim.pusht_actions.episode_seed(d, 'train', i)"}),
                    "val_episodes": json.dumps({"scripted": args.val, "other": args.val_other,
                                                "seeds": "dream.sim.pusht_actions.episode_seed(d, 'val', i)"}),
                    "iteration": str(state["iter"]),
                    "horizons": json.dumps(HORIZONS),
                    "val_t_point_error_px": json.dumps(state["best_errors"]),
                }
                net.export().save(args.out, meta)
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "state": state},
                       runs / "last.tmp.pt")
            (runs / "last.tmp.pt").rename(runs / "last.pt")
    bar.close()
    print(f"stopped at iteration {state['iter']}; best validation T-point error {state['best_errors']} px "
          f"(h={HORIZONS}); {args.out} in {time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
