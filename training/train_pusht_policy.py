"""Behaviour-clone ``pusher``'s choice of push into the small MLP of ``dream.eval.policies.LearnedPolicy``.

The learned member of `dream eval --task policies`' family. ``pusher`` decides, from the
block's pose (and the outline point it pushed last), where to push next and how far
(`Pusher.plan`); the network learns that decision (a class per outline point, plus the
push length), and walking the agent there stays scripted (`Pusher.execute`).

Training states, all labelled by ``pusher``'s own decision for them:

* demonstrations: ``pusher`` drives gym-pusht on train-split seeds (0 …), the block's
  pose read off each 96×96 frame by `read_scene`, as the policy will see it;
* random states: block poses over the workspace and near the goal, with a random last
  push point (cheap; they cover what episodes rarely visit);
* DAgger rounds: the network drives the simulator, and every state it visits is labelled.

Numpy only, a few minutes on a CPU:

    python training/train_pusht_policy.py          # writes src/dream/eval/_policies/pusht_bc.npz

Prints each round's validation success on 20 validation seeds (1 000 000 …).
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
from dream.eval.policies import GOAL_ANGLE, GOAL_COG, N_CONTACTS, Pusher, bc_features, choose_push
from dream.sim.pusht import TRAIN_SEED_OFFSET, VAL_SEED_OFFSET, PushTSim

OUT = Path(__file__).resolve().parents[1] / "src" / "dream" / "eval" / "_policies" / "pusht_bc.npz"


def label(block: np.ndarray, last: int | None) -> tuple[int, float] | None:
    """``pusher``'s decision for a block pose, given the outline point pushed last."""
    expert = Pusher()
    expert.contact = last
    return expert.plan(block[:2], float(block[2]))


def episode(sim: PushTSim, seed: int, layers, steps: int, data: list) -> bool:
    """One episode driven by `layers` (None: by ``pusher``); appends (features, contact, push) of every state."""
    frame = sim.reset(seed)
    walker, prior, last = Pusher(), None, None
    for _ in range(steps):
        reading = read_scene(frame, prior)
        prior = reading
        agent, block = reading.agent[0], reading.block[0]
        if not (np.isfinite(agent).all() and np.isfinite(block).all()):
            frame = sim.step(np.array([256.0, 256.0], np.float32))
            continue
        wanted = label(block, last)
        if wanted is None:
            break
        data.append((bc_features(block, last)[0], *wanted))
        contact, push = wanted if layers is None else choose_push(layers, block, last)
        last = contact
        frame = sim.step(np.clip(walker.execute(agent, block[:2], float(block[2]), contact, push), 0, 512).astype(np.float32))
        if sim.env._get_coverage() > 0.95:
            return True
    return False


def random_states(count: int, rng: np.random.Generator) -> list:
    """Block poses over the workspace (half) and near the goal (half), each with a random last push point."""
    data = []
    for i in range(count):
        if i % 2:
            block = np.array([*rng.uniform(80, 432, 2), rng.uniform(-math.pi, math.pi)])
        else:
            block = np.array([*(GOAL_COG + rng.normal(0, 12, 2)), GOAL_ANGLE + rng.normal(0, 0.2)])
        last = None if rng.random() < 0.2 else int(rng.integers(N_CONTACTS))
        wanted = label(block, last)
        if wanted is not None:
            data.append((bc_features(block, last)[0], *wanted))
    return data


def fit(data: list, hidden: int, epochs: int, seed: int) -> list:
    """Adam on softmax cross-entropy (the outline point) + squared error (the push length / 40)."""
    x = np.array([d[0] for d in data])
    cls = np.array([d[1] for d in data])
    push = np.array([d[2] for d in data]) / 40.0
    rng = np.random.default_rng(seed)
    sizes = [x.shape[1], hidden, hidden, N_CONTACTS + 1]
    params = []
    for a, b in itertools.pairwise(sizes):
        params += [rng.normal(0, 1 / math.sqrt(a), (a, b)), np.zeros(b)]
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
            out = hs[-1]
            logits = out[:, :N_CONTACTS] - out[:, :N_CONTACTS].max(1, keepdims=True)
            prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            grad = np.zeros_like(out)
            grad[:, :N_CONTACTS] = prob
            grad[np.arange(len(idx)), cls[idx]] -= 1.0
            grad[:, N_CONTACTS] = 2 * (out[:, N_CONTACTS] - push[idx])
            grad /= len(idx)
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
    layers = [(params[i], params[i + 1]) for i in range(0, len(params), 2)]
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        h = np.tanh(h) if i < len(layers) - 1 else h
    print(f"  fit on {len(x)} states: same outline point as pusher {np.mean(h[:, :N_CONTACTS].argmax(1) == cls):.3f}, "
          f"push length error {np.abs(h[:, N_CONTACTS] - push).mean() * 40:.1f} px", flush=True)
    return layers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=40, help="demonstrations (train seeds 0 …)")
    p.add_argument("--random-states", type=int, default=60000)
    p.add_argument("--rounds", type=int, default=2, help="DAgger rounds")
    p.add_argument("--dagger-episodes", type=int, default=30, help="episodes per DAgger round")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--validate", type=int, default=20, help="validation episodes per round")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    sim = PushTSim()
    t0 = time.time()
    data: list = random_states(args.random_states, np.random.default_rng(0))
    for i in range(args.episodes):
        episode(sim, TRAIN_SEED_OFFSET + i, None, args.steps, data)
    print(f"{len(data)} states ({args.random_states} random, the rest from {args.episodes} demonstrations; "
          f"{time.time() - t0:.0f} s)", flush=True)
    layers = fit(data, args.hidden, args.epochs, 0)
    seed = TRAIN_SEED_OFFSET + args.episodes
    for r in range(args.rounds + 1):
        wins = sum(episode(sim, VAL_SEED_OFFSET + i, layers, args.steps, []) for i in range(args.validate))
        print(f"round {r}: validation success {wins}/{args.validate} ({time.time() - t0:.0f} s)", flush=True)
        if r == args.rounds:
            break
        for _ in range(args.dagger_episodes):
            episode(sim, seed, layers, args.steps, data)
            seed += 1
        layers = fit(data, args.hidden, args.epochs, r + 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **{f"{k}{i}": a for i, (w, b) in enumerate(layers) for k, a in (("w", w), ("b", b))})
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
