"""Behaviour-clone the ``pusher`` policy into the small MLP of ``dream.eval.policies.LearnedPolicy``.

The learned member of `dream eval --task policies`' family. Demonstrations come from the
simulator (gym-pusht) on train-split seeds (0 …), seen as the policy sees them: poses read
off each 96×96 frame by `read_scene`. Then DAgger rounds: the current network drives the
simulator, ``pusher`` (carried along the same episode) labels every state it visits, and
the network is refit on everything so far. Numpy only (no torch), minutes on a CPU:

    python training/train_pusht_policy.py                 # writes src/dream/eval/_policies/pusht_bc.npz
    python training/train_pusht_policy.py --episodes 60 --rounds 2 --out /tmp/bc.npz

Prints the success rate of every round's network on 20 validation seeds (1 000 000 …).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np

from dream.engine.models.pusht.posefit import read_scene
from dream.eval.policies import Pusher, bc_features, mlp
from dream.sim.pusht import TRAIN_SEED_OFFSET, VAL_SEED_OFFSET, PushTSim

OUT = Path(__file__).resolve().parents[1] / "src" / "dream" / "eval" / "_policies" / "pusht_bc.npz"


def label(agent: np.ndarray, block: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The network's output for a target: its offset from the agent in the block's frame, / 50."""
    c, s = math.cos(block[2]), math.sin(block[2])
    d = target - agent
    return np.array([c * d[0] + s * d[1], c * d[1] - s * d[0]]) / 50.0


def act(layers, agent: np.ndarray, block: np.ndarray) -> np.ndarray:
    out = mlp(layers, bc_features(agent, block))[0] * 50.0
    c, s = math.cos(block[2]), math.sin(block[2])
    return agent + np.array([c * out[0] - s * out[1], s * out[0] + c * out[1]])


def episode(sim: PushTSim, seed: int, layers, steps: int, rng: np.random.Generator) -> tuple[list, list, bool]:
    """Run one episode driven by `layers` (None: the expert); return (features, labels, success)."""
    frame = sim.reset(seed)
    expert = Pusher()
    prior = None
    feats, labels = [], []
    for _ in range(steps):
        reading = read_scene(frame, prior)
        prior = reading
        agent, block = reading.agent[0], reading.block[0]
        if not (np.isfinite(agent).all() and np.isfinite(block).all()):
            frame = sim.step(np.array([256.0, 256.0], np.float32))
            continue
        wanted = np.clip(expert(agent, block[:2], float(block[2])), 0, 512)
        feats.append(bc_features(agent, block)[0])
        labels.append(label(agent, block, wanted))
        target = wanted if layers is None else np.clip(act(layers, agent, block), 0, 512)
        if layers is None and rng.random() < 0.3:
            target = target + rng.normal(0, 15, 2)  # a little noise: demonstrations off the expert's own path
        frame = sim.step(np.asarray(target, np.float32))
        if sim.env._get_coverage() > 0.95:
            return feats, labels, True
    return feats, labels, False


def fit(x: np.ndarray, y: np.ndarray, hidden: int, epochs: int, seed: int, layers=None) -> list:
    """Adam on mean squared error; tanh MLP 9 → hidden → hidden → 2."""
    rng = np.random.default_rng(seed)
    if layers is None:
        sizes = [x.shape[1], hidden, hidden, y.shape[1]]
        layers = [(rng.normal(0, 1 / math.sqrt(a), (a, b)), np.zeros(b)) for a, b in itertools.pairwise(sizes)]
    params = [p for w, b in layers for p in (w.copy(), b.copy())]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, b1, b2, t = 2e-3, 0.9, 0.999, 0
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        for lo in range(0, len(x), 256):
            idx = order[lo : lo + 256]
            hs = [x[idx]]
            for i in range(0, len(params), 2):
                z = hs[-1] @ params[i] + params[i + 1]
                hs.append(np.tanh(z) if i < len(params) - 2 else z)
            grad = 2 * (hs[-1] - y[idx]) / len(idx)
            grads = [None] * len(params)
            for i in range(len(params) - 2, -1, -2):
                grads[i] = hs[i // 2].T @ grad
                grads[i + 1] = grad.sum(0)
                if i:
                    grad = (grad @ params[i].T) * (1 - hs[i // 2] ** 2)
            t += 1
            step = lr * (0.1 if epoch >= epochs * 0.8 else 1.0)
            for k, g in enumerate(grads):
                m[k] = b1 * m[k] + (1 - b1) * g
                v[k] = b2 * v[k] + (1 - b2) * g * g
                params[k] -= step * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + 1e-8)
    return [(params[i], params[i + 1]) for i in range(0, len(params), 2)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=120, help="expert demonstrations (train seeds 0 …)")
    p.add_argument("--rounds", type=int, default=3, help="DAgger rounds after the demonstrations")
    p.add_argument("--dagger-episodes", type=int, default=60, help="episodes per DAgger round")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    sim = PushTSim()
    rng = np.random.default_rng(0)
    t0 = time.time()
    xs, ys = [], []
    for i in range(args.episodes):
        f, lab, _ = episode(sim, TRAIN_SEED_OFFSET + i, None, args.steps, rng)
        xs += f
        ys += lab
    print(f"demonstrations: {len(xs)} states from {args.episodes} episodes ({time.time() - t0:.0f} s)", flush=True)
    layers = fit(np.array(xs), np.array(ys), args.hidden, args.epochs, 0)
    seed = TRAIN_SEED_OFFSET + args.episodes
    for r in range(args.rounds + 1):
        wins = sum(episode(sim, VAL_SEED_OFFSET + i, layers, args.steps, rng)[2] for i in range(20))
        print(f"round {r}: {len(xs)} states, validation success {wins}/20 ({time.time() - t0:.0f} s)", flush=True)
        if r == args.rounds:
            break
        for _ in range(args.dagger_episodes):
            f, lab, _ = episode(sim, seed, layers, args.steps, rng)
            seed += 1
            xs += f
            ys += lab
        layers = fit(np.array(xs), np.array(ys), args.hidden, args.epochs, r + 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **{f"{k}{i}": a for i, (w, b) in enumerate(layers) for k, a in (("w", w), ("b", b))})
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
