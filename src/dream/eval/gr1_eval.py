"""`dream eval --spec dreamdojo-2b-gr1`: DreamDojo on GR-1 LeRobot data, NVIDIA's metrics.

Samples: the first N episodes of a GR-1 LeRobot dataset, read at 10 fps (every second
step of the 20 fps recordings) with ``actions="gr1"`` (:func:`dream.actions.gr1_actions`):
each sample starts one step into its episode (step 0 is the relative actions' baseline
and its proprio state), runs T = 48 actions and is compared with the 49 recorded frames
from its start frame on. Start and ground-truth frames are fitted to the spec's
resolution the same way (scale to cover, centre crop).

Metrics, per frame over the 49 frames, averaged per sample, then over samples (NVIDIA's
protocol, computed as piq does in NVIDIA's evaluation script):

* PSNR, data range 1: ``10·log10(1 / (MSE + 1e-8))`` (so an exact frame scores 80 dB);
* SSIM: `dream.eval.metrics.ssim` (11×11 Gaussian, σ 1.5) after f×f average pooling,
  f = round(min(H, W) / 256) (2 at 480×640);
* LPIPS (VGG) when the ``lpips`` package and its weights are available; otherwise it is
  reported as not computed, with the reason.

Two protocols (see `dream.engine.models.dreamdojo.pipeline`):

* ``ours`` (default): time-aligned frames (frame i is the prediction for step i, frame 0
  the given start frame), one torch generator seeded once per rollout, rounded pixels;
* ``nvidia``: NVIDIA's frame assembly (chunk 0's 13 decoded frames, then frames 0..11 of
  each later chunk; truncated pixels) and NVIDIA's noise
  (``numpy.random.RandomState(chunk_start)``), to reproduce their reference outputs.

With ``ours`` frame 0 is the input itself, so the result also reports the means over the
48 predicted frames (1..48), which are what the model actually contributes.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dream.eval.metrics import mse, ssim, ssim_downsample_factor

__all__ = ["PROTOCOLS", "Gr1EvalResult", "Lpips", "run_gr1_eval", "score_video"]

logger = logging.getLogger(__name__)

PROTOCOLS = {"ours": ("torch", "aligned"), "nvidia": ("nvidia", "nvidia")}
EVAL_T = 48
PSNR_EPS = 1e-8  # piq's: keeps PSNR finite for an exact frame


class Lpips:
    """LPIPS (VGG) through the ``lpips`` package, if it and its weights can be loaded.

    ``available`` says whether it can score; ``note`` says why not. Nothing is downloaded
    by this class itself; the ``lpips`` package fetches torchvision's VGG16 weights once.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.model: Any = None
        self.note = ""
        self.device = device
        try:
            import lpips  # type: ignore[import-not-found]
        except ImportError:
            self.note = "not computed: the `lpips` package is not installed (pip install lpips)"
            return
        try:
            self.model = lpips.LPIPS(net="vgg", verbose=False).to(device).eval()
        except Exception as exc:  # weights missing or not downloadable
            self.note = f"not computed: LPIPS (VGG) weights could not be loaded ({type(exc).__name__}: {exc})"

    @property
    def available(self) -> bool:
        return self.model is not None

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Per-frame LPIPS of uint8 (F, H, W, 3) videos."""
        import torch

        def tensor(v: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(v).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(self.device)

        with torch.inference_mode():
            return self.model(tensor(pred), tensor(gt)).flatten().cpu().numpy().astype(np.float64)


def score_video(pred: np.ndarray, gt: np.ndarray, lpips: Lpips | None = None) -> dict[str, np.ndarray]:
    """Per-frame PSNR (dB), SSIM (and LPIPS when given and available) of uint8 (F, H, W, 3) videos."""
    if pred.shape != gt.shape or pred.dtype != np.uint8 or gt.dtype != np.uint8:
        raise ValueError(f"videos must be uint8 of one shape, got {pred.dtype} {pred.shape} and {gt.dtype} {gt.shape}")
    frame_mse = mse(pred, gt) / (255.0 * 255.0)
    scores = {
        "psnr": 10.0 * np.log10(1.0 / (frame_mse + PSNR_EPS)),
        "ssim": ssim(pred, gt, downsample=ssim_downsample_factor(*pred.shape[1:3])),
    }
    if lpips is not None and lpips.available:
        scores["lpips"] = lpips(pred, gt)
    return scores


@dataclass
class Gr1EvalResult:
    """Scores of `run_gr1_eval`: means over samples of per-sample means over frames."""

    spec: str
    protocol: str
    num_steps: int
    guidance: float
    seed: int
    num_samples: int = 0
    psnr_db: float = float("nan")
    ssim: float = float("nan")
    lpips: float | None = None
    lpips_note: str = ""
    predicted_psnr_db: float = float("nan")  # frames 1..48 only
    predicted_ssim: float = float("nan")
    per_frame_psnr_db: list[float] = field(default_factory=list)  # mean over samples, per frame
    samples: list[dict[str, Any]] = field(default_factory=list)  # row_id and per-sample means
    failures: list[tuple[str, str]] = field(default_factory=list)  # (row_id, error)
    wall_s: float = 0.0

    def to_markdown(self) -> str:
        lp = f"{self.lpips:.4f}" if self.lpips is not None else "n/a"
        lines = [
            f"{self.spec}, protocol {self.protocol}, {self.num_samples} samples, {self.num_steps} steps, "
            f"guidance {self.guidance:g}, seed {self.seed} ({self.wall_s:.1f} s)",
            "",
            "| frames | PSNR (dB) | SSIM | LPIPS |",
            "|---|---:|---:|---:|",
            f"| all 49 | {self.psnr_db:.2f} | {self.ssim:.4f} | {lp} |",
            f"| predicted 1-48 | {self.predicted_psnr_db:.2f} | {self.predicted_ssim:.4f} | |",
        ]
        if self.lpips is None:
            lines += ["", f"LPIPS {self.lpips_note}"]
        if self.failures:
            lines += ["", f"{len(self.failures)} sample(s) failed: " + "; ".join(f"{r}: {e}" for r, e in self.failures[:5])]
        return "\n".join(lines)


def _load_runner(spec: Any, weights: str | Path | None, device: str) -> Any:
    from dream.engine.models.dreamdojo.runner import DreamDojoRunner

    runner = DreamDojoRunner(spec, device=device, weights=weights)
    runner.load()
    return runner


def run_gr1_eval(
    source: str | Path,
    *,
    spec: str = "dreamdojo-2b-gr1",
    episodes: int = 100,
    protocol: str = "ours",
    num_steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    camera: str | None = None,
    weights: str | Path | None = None,
    device: str | None = None,
    runner: Any = None,
    lpips: bool = True,
    progress: bool = True,
    source_options: dict[str, Any] | None = None,
) -> Gr1EvalResult:
    """Roll DreamDojo out on the first `episodes` episodes of a GR-1 LeRobot dataset and score it.

    source:   a LeRobot dataset (local folder or Hub repo id) with 44-dim GR-1
              ``observation.state`` / ``action`` and a 20 fps video (``camera``, default the
              first video feature).
    protocol: "ours" or "nvidia" (module docstring).
    runner:   an already loaded DreamDojo runner (tests); else one is loaded for `spec`
              from `weights` on `device` (default: CUDA when available).
    Raises ValueError for an unknown protocol or a source without usable samples, and the
    engine's errors when the weights are missing.
    """
    from tqdm.auto import tqdm

    from dream.engine.specs import get as get_spec
    from dream.inputs import decode_image_bytes, fit_frame
    from dream.io.sources.lerobot import frames_from_lerobot

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    noise, assembly = PROTOCOLS[protocol]
    t0 = time.perf_counter()
    engine_spec = runner.spec if runner is not None else get_spec(spec)
    options = {"fps": 10, "actions": "gr1", "horizon": EVAL_T, "camera": camera, **(source_options or {})}
    src = frames_from_lerobot(source, **{k: v for k, v in options.items() if v is not None})
    if runner is None:
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        runner = _load_runner(engine_spec, weights, device)
    steps = int(num_steps) if num_steps is not None else int(engine_spec.default_num_steps)
    g = float(guidance) if guidance is not None else float(engine_spec.default_guidance)
    result = Gr1EvalResult(spec=engine_spec.slug, protocol=protocol, num_steps=steps, guidance=g, seed=seed)
    scorer = Lpips() if lpips else None
    result.lpips_note = "not computed: disabled" if scorer is None else scorer.note
    per_sample: list[dict[str, np.ndarray]] = []
    bar = tqdm(total=min(episodes, src.rows_hint), desc="GR-1 eval", unit="sample", disable=not progress)
    try:
        for row in src:
            if len(per_sample) + len(result.failures) >= episodes:
                break
            if row.error:
                result.failures.append((row.row_id, row.error))
                bar.update(1)
                continue
            try:
                start = fit_frame(decode_image_bytes(row.frame_bytes), engine_spec.resolution)
                gt = np.stack([fit_frame(f, engine_spec.resolution) for f in src.row_frames(row.metadata, EVAL_T + 1)])
                actions = np.load(io.BytesIO(row.actions_bytes), allow_pickle=False)
            except ValueError as exc:
                result.failures.append((row.row_id, str(exc)))
                bar.update(1)
                continue
            video = runner.pipeline.rollout(
                start[None], actions[None], seeds=[seed], num_steps=steps, guidance=g, noise=noise, assembly=assembly
            )[0]
            scores = score_video(video, gt, scorer)
            per_sample.append(scores)
            result.samples.append({"row_id": row.row_id, **{k: float(v.mean()) for k, v in scores.items()}})
            bar.update(1)
    finally:
        bar.close()
    _summarise(result, per_sample)
    result.wall_s = time.perf_counter() - t0
    if not per_sample:
        reasons = "; ".join(f"{r}: {e}" for r, e in result.failures[:3]) or "the source has no rows"
        raise ValueError(f"no GR-1 sample could be evaluated from {str(source)!r} ({reasons})")
    return result


def _summarise(result: Gr1EvalResult, per_sample: Sequence[dict[str, np.ndarray]]) -> None:
    result.num_samples = len(per_sample)
    if not per_sample:
        return
    psnr = np.stack([s["psnr"] for s in per_sample])  # [N, 49]
    ssim_v = np.stack([s["ssim"] for s in per_sample])
    result.psnr_db = float(psnr.mean(axis=1).mean())
    result.ssim = float(ssim_v.mean(axis=1).mean())
    result.predicted_psnr_db = float(psnr[:, 1:].mean(axis=1).mean())
    result.predicted_ssim = float(ssim_v[:, 1:].mean(axis=1).mean())
    result.per_frame_psnr_db = [float(v) for v in psnr.mean(axis=0)]
    if "lpips" in per_sample[0]:
        result.lpips = float(np.mean([s["lpips"].mean() for s in per_sample]))
