"""`dream eval --task distributions`: pusht-96 against gym-pusht per action distribution.

For each distribution of `dream.sim.pusht_actions` (scripted training policies, uniform
random, correlated noise, aimed pushes, sweeps, perturbed demonstrations, the pusher
family, gentle near-goal pushes), ``episodes`` simulator episodes of the chosen split
(test seeds by default: ``2 000 000 + 100 000·k + i`` for distribution k) are rolled out
open loop by the model from their start frames and actions. Scored at each horizon h,
beside repeat-start (the start frame and the start pose, repeated):

* block IoU (`dream.eval.metrics.block_iou`, masks of the T's fill and outline colours),
  mean over episodes and the worst episode;
* block pose error: the distance (workspace units, 512² px) between the model's block
  centre of gravity and the simulator's, and the angle between them (degrees), median
  and the worst episode. The model's pose is what it holds (`PushTRunner.readout`); the
  frames it draws show exactly that pose.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dream.eval.metrics import block_iou

__all__ = ["DistributionEval", "DistributionScores", "run_distribution_eval"]

DEFAULT_HORIZONS = (1, 8, 16, 48)


@dataclass(frozen=True)
class DistributionScores:
    """One predictor's scores on one distribution at one horizon."""

    horizon: int
    iou_mean: float
    iou_worst: float
    pos_median: float  # workspace units
    pos_worst: float
    angle_median: float  # degrees
    angle_worst: float


@dataclass
class DistributionEval:
    """`scores[distribution][predictor]`: one `DistributionScores` per horizon."""

    episodes: int
    horizons: tuple[int, ...]
    split: str
    scores: dict[str, dict[str, list[DistributionScores]]] = field(default_factory=dict)
    wall_s: float = 0.0

    def to_markdown(self) -> str:
        """One row per distribution and predictor: IoU mean (worst) and pose error median (worst) per horizon."""
        hs = self.horizons
        head = ("| distribution | predictor | " + " | ".join(f"IoU h={h}" for h in hs) + " | "
                + " | ".join(f"pose err h={h}" for h in hs) + " |")
        lines = [head, "|---|---|" + "---:|" * (2 * len(hs))]
        for dist, by_pred in self.scores.items():
            for pred, rows in by_pred.items():
                iou = " | ".join(f"{r.iou_mean:.3f} ({r.iou_worst:.2f})" for r in rows)
                pose = " | ".join(f"{r.pos_median:.1f}, {r.angle_median:.1f}° ({r.pos_worst:.0f}, {r.angle_worst:.0f}°)"
                                  for r in rows)
                lines.append(f"| {dist} | {pred} | {iou} | {pose} |")
        lines.append(
            f"\n{self.episodes} episodes per distribution ({self.split} split); IoU: mean (worst episode); "
            "pose error: median block position error in workspace units, median angle error (worst episode's)."
        )
        return "\n".join(lines)

    def must_show(self) -> dict[str, bool]:
        """Per distribution: the model beats repeat-start's IoU at every horizon, IoU ≥ 0.9 at h=16 and
        ≥ 0.8 at h=48, median pose error at h=48 < 15 units and 10° (horizons missing count as failed)."""
        out = {}
        for dist, by_pred in self.scores.items():
            m = {r.horizon: r for r in by_pred["model"]}
            rep = {r.horizon: r for r in by_pred["repeat-start"]}
            ok = all(m[h].iou_mean > rep[h].iou_mean for h in m)
            ok &= 16 in m and m[16].iou_mean >= 0.9 and 48 in m and m[48].iou_mean >= 0.8
            ok &= 48 in m and m[48].pos_median < 15.0 and m[48].angle_median < 10.0
            out[dist] = bool(ok)
        return out


def _pose_errors(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.hypot(pred[..., 0] - true[..., 0], pred[..., 1] - true[..., 1])
    d = (pred[..., 2] - true[..., 2] + math.pi) % (2 * math.pi) - math.pi
    return pos, np.degrees(np.abs(d))


def _score(pred_frames: np.ndarray, true_frames: np.ndarray, pred_pose: np.ndarray, true_pose: np.ndarray,
           horizons: Sequence[int]) -> list[DistributionScores]:
    """pred/true frames (N, T+1, H, W, 3), poses (N, T+1, 3)."""
    out = []
    for h in horizons:
        iou = block_iou(pred_frames[:, h], true_frames[:, h])
        pos, ang = _pose_errors(pred_pose[:, h], true_pose[:, h])
        out.append(DistributionScores(h, float(iou.mean()), float(iou.min()), float(np.median(pos)),
                                      float(pos.max()), float(np.median(ang)), float(ang.max())))
    return out


def _model(starts: np.ndarray, actions: np.ndarray, batch: int, weights: str | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """pusht-96's frames (N, T+1, 96, 96, 3) and block poses (N, T+1, 3) for the episodes."""
    from dream.engine import specs
    from dream.engine.runner import runner_class

    spec = specs.get("pusht-96")
    runner = runner_class(spec.runner)(spec, device="cpu", weights=weights)
    runner.load()
    n, t = actions.shape[:2]
    frames = np.empty((n, t + 1, 96, 96, 3), np.uint8)
    poses = np.empty((n, t + 1, 3))
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        state = runner.begin(starts[lo:hi], hi - lo, seeds=[0] * (hi - lo), num_steps=None, guidance=None)
        frames[lo:hi, 0] = state.start_frames()[:, 0]
        poses[lo:hi, 0] = runner.readout(state)["block"]
        for i in range(t):
            frames[lo:hi, i + 1] = runner.advance(state, actions[lo:hi, i : i + 1])[:, 0]
            poses[lo:hi, i + 1] = runner.readout(state)["block"]
    return frames, poses


def run_distribution_eval(
    episodes: int = 50,
    distributions: Sequence[str] | None = None,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    split: str = "test",
    progress: bool = True,
    *,
    batch_size: int = 25,
    weights: str | None = None,
) -> DistributionEval:
    """Score pusht-96 and repeat-start per action distribution (see the module docstring).

    episodes: per distribution; distributions: names from `DISTRIBUTIONS` (default all);
    split: ``test`` (README figures) or ``val`` (choices while training); weights: a dynamics
    file to evaluate instead of the shipped one (a candidate from `training/learn_pusht.py`).
    Raises ValueError naming an unknown distribution or split, ImportError without gym-pusht.
    """
    from dream.sim.pusht_actions import DISTRIBUTIONS, SPLIT_OFFSETS, episode_seed, simulate_distribution

    dists = list(DISTRIBUTIONS if distributions is None else distributions)
    for d in dists:
        if d not in DISTRIBUTIONS:
            raise ValueError(f"unknown action distribution {d!r}; known: {', '.join(DISTRIBUTIONS)}")
    if split not in SPLIT_OFFSETS or split == "train":
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    horizons = tuple(int(h) for h in horizons)
    if min(horizons) < 1:
        raise ValueError(f"horizons must be >= 1, got {horizons}")
    started = time.perf_counter()
    steps = max(horizons)
    result = DistributionEval(episodes=episodes, horizons=horizons, split=split)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(dists) * episodes, desc="distributions", unit="episode", disable=not progress)
    for d in dists:
        seeds = [episode_seed(d, split, i) for i in range(episodes)]
        sim = simulate_distribution(d, seeds, steps, pixels=True)
        truth_pose = sim["block"]
        frames, poses = _model(sim["frames"][:, 0], sim["actions"], batch_size, weights)
        repeat = np.repeat(sim["frames"][:, :1], steps + 1, axis=1)
        result.scores[d] = {
            "model": _score(frames, sim["frames"], poses, truth_pose, horizons),
            "repeat-start": _score(repeat, sim["frames"], np.repeat(truth_pose[:, :1], steps + 1, 1), truth_pose,
                                   horizons),
        }
        bar.update(episodes)
    bar.close()
    result.wall_s = time.perf_counter() - started
    return result
