"""`dream eval`: the pusht-96 model against the simulator's ground truth on held-out episodes.

Episodes: `dream.sim.pusht.generate_episode(seed, T)` for seeds ``seed_offset + i``
(default: the test range, 2 000 000 …, never used for training or for choosing any
knob). Each starts at ``env.reset(seed)`` and is driven by the same scripted policies as
the training data (seek-and-push the block, random walks).

Three predictors are scored on the same episodes:

* ``model``: pusht-96 (the shipped weights), one batched open-loop rollout per chunk
  of episodes, from the start frame and the episode's actions;
* ``repeat-start``: the start frame repeated (what a model that predicts nothing scores);
* ``no-action``: pusht-96 itself with every action replaced by the agent's start
  position as the model reads it off the start frame (the agent is told to stay where
  it is); it shows how much the actions are used.

Metrics at each horizon h (frame h of the rollout, i.e. after h actions):

* PSNR (dB, data range 255) of the full frame: 10·log10(255² / MSE), where MSE is
  averaged over episodes (an average of per-episode PSNRs would be +inf whenever
  nothing moved and a predictor copied the frame);
* changed-pixel PSNR: the same over the pixels where the ground-truth frame h differs
  from the start frame (any channel), per-episode MSE on those pixels averaged over the
  episodes where any pixel changed — the agent and the block, not the static background;
* SSIM (`dream.eval.metrics.ssim`, 11×11 Gaussian σ=1.5), averaged over episodes;
* block IoU (`dream.eval.metrics.block_iou`): the block's pixels are those within RGB
  distance `BLOCK_COLOR_THRESHOLD` (30) of the T's fill or outline colour; IoU of the
  predicted and true masks, averaged over episodes;
* block centroid error: the distance (96² px) between the two masks' centroids, averaged
  over the episodes where both masks are non-empty.

LPIPS and FVD are not reported: they need downloaded network weights that this
evaluation does not fetch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dream.eval.metrics import block_centroid_error, block_iou, masked_mse, mse, psnr_from_mse, ssim

__all__ = [
    "DEFAULT_HORIZONS",
    "EvalResult",
    "HorizonScores",
    "changed_pixel_mask",
    "run_pusht_eval",
    "score_rollouts",
]


DEFAULT_HORIZONS = (1, 8, 16, 48)
PREDICTORS = ("model", "repeat-start", "no-action")


@dataclass(frozen=True)
class HorizonScores:
    """One predictor's scores at one horizon, over the evaluated episodes."""

    horizon: int
    psnr_db: float  # full frame
    changed_psnr_db: float  # pixels where ground truth h differs from the start frame
    ssim: float
    changed_episodes: int  # episodes with at least one changed pixel at this horizon
    block_iou: float = float("nan")  # block-mask IoU, mean over episodes
    block_centroid_px: float = float("nan")  # block-mask centroid distance (px), mean over episodes with both masks


@dataclass
class EvalResult:
    """Scores of `run_pusht_eval`: ``scores[predictor]`` lists one `HorizonScores` per horizon."""

    num_episodes: int
    horizons: tuple[int, ...]
    seed_offset: int
    scores: dict[str, list[HorizonScores]] = field(default_factory=dict)
    model_rollout_s: float = 0.0  # wall time of the model's rollouts (all episodes)
    wall_s: float = 0.0  # wall time of the whole evaluation, simulation included

    def margin_db(self, metric: str = "changed_psnr_db", *, over: str = "repeat-start") -> list[float]:
        """The model's lead over another predictor, per horizon, in dB."""
        return [
            getattr(m, metric) - getattr(o, metric)
            for m, o in zip(self.scores["model"], self.scores[over], strict=True)
        ]

    def to_markdown(self) -> str:
        """The result as a Markdown table (one row per predictor and metric)."""
        head = "| predictor | metric | " + " | ".join(f"h={h}" for h in self.horizons) + " |"
        rule = "|---|---|" + "---:|" * len(self.horizons)
        lines = [head, rule]
        metrics = (
            ("psnr_db", "PSNR (dB)", "{:.2f}"),
            ("changed_psnr_db", "changed-pixel PSNR (dB)", "{:.2f}"),
            ("ssim", "SSIM", "{:.4f}"),
            ("block_iou", "block IoU", "{:.3f}"),
            ("block_centroid_px", "block centroid error (px)", "{:.2f}"),
        )
        for attr, label, fmt in metrics:
            for name, rows in self.scores.items():
                lines.append(
                    f"| {name} | {label} | " + " | ".join(fmt.format(getattr(r, attr)) for r in rows) + " |"
                )
        note = (
            f"\n{self.num_episodes} held-out gym-pusht episodes (seeds {self.seed_offset}…"
            f"{self.seed_offset + self.num_episodes - 1}); changed pixels: ground truth differs from the start frame "
            f"(episodes with any: "
            + ", ".join(f"h={r.horizon}: {r.changed_episodes}" for r in self.scores["model"])
            + ")."
        )
        return "\n".join(lines) + "\n" + note


def changed_pixel_mask(gt: np.ndarray, start: np.ndarray) -> np.ndarray:
    """bool (..., H, W): where ground truth `gt` differs from the `start` frame in any channel."""
    return np.any(gt != start, axis=-1)


def score_rollouts(
    pred: np.ndarray, gt: np.ndarray, horizons: Sequence[int] = DEFAULT_HORIZONS
) -> list[HorizonScores]:
    """Score predicted rollouts against ground truth.

    pred, gt: uint8 (N, T+1, H, W, 3), frame 0 being the shared start frame.
    Returns one `HorizonScores` per horizon (definitions: module docstring).
    """
    if pred.shape != gt.shape or pred.dtype != np.uint8 or gt.dtype != np.uint8:
        raise ValueError(
            f"expected two uint8 arrays of one shape, got {pred.dtype}{pred.shape} and {gt.dtype}{gt.shape}"
        )
    out = []
    for h in horizons:
        if not 0 < h < gt.shape[1]:
            raise ValueError(f"horizon {h} outside the rollout's 1..{gt.shape[1] - 1}")
        p, g = pred[:, h], gt[:, h]
        full = psnr_from_mse(mse(p, g).mean(), 255.0)
        changed_mse, count = masked_mse(p, g, changed_pixel_mask(g, gt[:, 0]))
        has_change = count > 0
        changed = psnr_from_mse(changed_mse[has_change].mean(), 255.0) if has_change.any() else float("nan")
        centroid = block_centroid_error(p, g)
        found = ~np.isnan(centroid)
        out.append(
            HorizonScores(
                h,
                float(full),
                float(changed),
                float(ssim(p, g).mean()),
                int(has_change.sum()),
                block_iou=float(block_iou(p, g).mean()),
                block_centroid_px=float(centroid[found].mean()) if found.any() else float("nan"),
            )
        )
    return out


def _model_rollouts(
    slug: str,
    starts: np.ndarray,
    actions: np.ndarray,
    batch_size: int,
    progress: bool,
    *,
    no_action: bool = False,
) -> tuple[np.ndarray, float]:
    """Rollouts of `slug`; with `no_action`, every action is the agent's start position read off the frame."""
    from dream.engine import specs
    from dream.engine.runner import runner_class

    spec = specs.get(slug)
    runner = runner_class(spec.runner)(spec, device="cpu")
    runner.load()
    frames = []
    bar = _bar(len(starts), f"{slug}{' (no action)' if no_action else ''} rollouts", progress)
    started = time.perf_counter()
    for i in range(0, len(starts), batch_size):
        k = len(starts[i : i + batch_size])
        chunk = actions[i : i + batch_size]
        if no_action:
            held = [runner.fit_start(frame)[0] for frame in starts[i : i + batch_size]]
            chunk = np.repeat(np.asarray(held, np.float32)[:, None], actions.shape[1], axis=1)
        frames.append(
            runner.rollout(starts[i : i + batch_size], chunk, seeds=[0] * k, num_steps=None, guidance=None)
        )
        bar.update(k)
    bar.close()
    return np.concatenate(frames), time.perf_counter() - started


def _bar(total: int, desc: str, enabled: bool) -> Any:
    """A progress bar counting episodes (a silent one unless `enabled`)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="episode", disable=not enabled)


def run_pusht_eval(
    num_episodes: int = 100,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    seed_offset: int | None = None,
    progress: bool = True,
    *,
    batch_size: int = 25,
    threads: int | None = None,
) -> EvalResult:
    """Evaluate pusht-96, repeat-start and the no-action model on held-out simulator episodes.

    num_episodes: episodes with seeds ``seed_offset + i``; seed_offset defaults to the
        test range (`dream.sim.pusht.TEST_SEED_OFFSET`).
    horizons: frames to score; the rollouts are max(horizons) actions long.
    progress: show progress bars (episodes simulated, rollouts made) on stderr.
    threads: torch CPU threads (default: the CPUs this process may use; `dream.engine.threads`).
    Raises ImportError naming ``pip install 'dream-engine[sim]'`` without gym-pusht.
    """
    from dream.engine.threads import check_threads, set_torch_threads

    check_threads(threads)
    set_torch_threads(threads)
    from dream.sim.pusht import TEST_SEED_OFFSET, PushTSim, generate_episode

    horizons = tuple(int(h) for h in horizons)
    offset = TEST_SEED_OFFSET if seed_offset is None else int(seed_offset)
    num_steps = max(horizons)
    started = time.perf_counter()

    sim = PushTSim()
    gt = np.empty((num_episodes, num_steps + 1, 96, 96, 3), np.uint8)
    actions = np.empty((num_episodes, num_steps, 2), np.float32)
    bar = _bar(num_episodes, "simulating", progress)
    for i in range(num_episodes):
        episode = generate_episode(offset + i, num_steps, sim=sim)
        gt[i], actions[i] = episode.frames, episode.actions
        bar.update(1)
    bar.close()
    sim.close()

    result = EvalResult(num_episodes=num_episodes, horizons=horizons, seed_offset=offset)
    pred, result.model_rollout_s = _model_rollouts("pusht-96", gt[:, 0], actions, batch_size, progress)
    result.scores["model"] = score_rollouts(pred, gt, horizons)
    result.scores["repeat-start"] = score_rollouts(
        np.repeat(gt[:, :1], num_steps + 1, axis=1), gt, horizons
    )
    pred, _ = _model_rollouts("pusht-96", gt[:, 0], actions, batch_size, progress, no_action=True)
    result.scores["no-action"] = score_rollouts(pred, gt, horizons)
    result.wall_s = time.perf_counter() - started
    return result
