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
from dream.sim.pusht import TRAIN_SEED_OFFSET, VAL_SEED_OFFSET

RUNS = Path(__file__).resolve().parent / "runs" / "pusht-dyn"
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
        change = net(feats)
        keep = gate & (dyn.change_size(torch, change.detach()) >= dyn.STILL) if snap else gate
        change = change * keep[:, None].to(change.dtype)
        block = dyn.apply_change(torch, block, change)
        last = change
        out.append(block)
    return torch.stack(out, 1)


def evaluate(net: Net, val: dict[str, torch.Tensor]) -> np.ndarray:
    """Mean T-point error (px) of open-loop episode rollouts from true start poses, at HORIZONS."""
    with torch.no_grad():
        block = val["block"]
        pred = unroll(net, block[:, 0], torch.zeros_like(block[:, 0]), val["paths"])
        err = (body_points(pred) - body_points(block[:, 1:])).norm(dim=-1).mean(-1)  # (N, T)
    return np.array([err[:, h - 1].mean().item() for h in HORIZONS])


def prepare(data: dict[str, np.ndarray], device: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    paths = agent_paths(data["agent"][:, 0], data["actions"], PhysicsParams())
    return {"block": torch.tensor(data["block"], dtype=dtype, device=device),
            "paths": torch.tensor(paths, dtype=dtype, device=device),
            "changes": torch.tensor(true_changes(data["block"]), dtype=dtype, device=device)}


def window_length(it: int) -> int:
    return 4 if it < 800 else 16 if it < 2200 else 32 if it < 4000 else 48


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
    args = parser.parse_args()
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = prepare(load_split("train", args.train, args.steps), device, torch.float32)
    val = prepare(load_split("val", args.val, args.steps), device, torch.float64)
    n, t = train["changes"].shape[:2]
    moving = (dyn.change_size(torch, train["changes"]) > 0).cpu().numpy()  # (N, T)

    net = Net().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i / args.iters, 1.0))))
    state = {"iter": 0, "best": float("inf"), "best_errors": None, "history": []}
    RUNS.mkdir(parents=True, exist_ok=True)
    if (RUNS / "last.pt").exists():
        ckpt = torch.load(RUNS / "last.pt", map_location=device, weights_only=False)
        net.load_state_dict(ckpt["net"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        state = ckpt["state"]
        rng = np.random.default_rng([0, state["iter"]])
        print(f"resumed at iteration {state['iter']}", flush=True)
    bar = tqdm(total=args.iters, initial=state["iter"], desc="training", unit="it")
    while state["iter"] < args.iters and time.perf_counter() - started < args.minutes * 60:
        length = window_length(state["iter"])
        # 80 % of windows hold some motion of the block, 20 % any window
        ep = rng.integers(0, n, args.batch)
        start = rng.integers(0, t - length + 1, args.batch)
        for j in range(int(args.batch * 0.8)):
            for _ in range(20):
                if moving[ep[j], start[j] : start[j] + length].any():
                    break
                ep[j], start[j] = rng.integers(0, n), rng.integers(0, t - length + 1)
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
            net_eval = Net().to(device).double()
            net_eval.load_state_dict(net.state_dict())
            errors = evaluate(net_eval, val)
            score = float(errors.mean())
            state["history"].append({"iter": state["iter"], "val_errors": errors.round(3).tolist()})
            print(f"\niter {state['iter']} window {length} loss {loss.item():.4f} val T-point error "
                  f"{errors.round(2)} px at h={HORIZONS}", flush=True)
            if score < state["best"]:
                state["best"], state["best_errors"] = score, errors.round(3).tolist()
                torch.save(net.state_dict(), RUNS / "best.pt")
                meta = {
                    "source": "training/learn_pusht.py",
                    "train_seeds": f"{TRAIN_SEED_OFFSET}..{TRAIN_SEED_OFFSET + n - 1}",
                    "val_seeds": f"{VAL_SEED_OFFSET}..{VAL_SEED_OFFSET + args.val - 1}",
                    "iteration": str(state["iter"]),
                    "horizons": json.dumps(HORIZONS),
                    "val_t_point_error_px": json.dumps(state["best_errors"]),
                }
                net.export().save(args.out, meta)
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "state": state},
                       RUNS / "last.tmp.pt")
            (RUNS / "last.tmp.pt").rename(RUNS / "last.pt")
    bar.close()
    print(f"stopped at iteration {state['iter']}; best validation T-point error {state['best_errors']} px "
          f"(h={HORIZONS}); {args.out} in {time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
