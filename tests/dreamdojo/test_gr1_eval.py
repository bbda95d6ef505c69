"""GR-1 evaluation: NVIDIA's protocol options in the pipeline, the metrics, `dream eval` on CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from dream.cli import main
from dream.engine import specs
from dream.engine.models.dreamdojo.pipeline import nvidia_noise
from dream.engine.models.dreamdojo.runner import DreamDojoRunner
from dream.engine.models.dreamdojo.text_embedding import (
    load_negative_prompt_embedding,
    save_empty_prompt_embedding,
)
from dream.eval.gr1_eval import run_gr1_eval, score_video
from dream.eval.metrics import ssim, ssim_downsample_factor
from tests.dreamdojo.conftest import TINY_SLUG, make_tiny_spec
from tests.io.gr1_support import make_gr1_lerobot

# ------------------------------------------------------------------------------ metrics


def test_ssim_downsample_is_piq_style_average_pooling() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 45, 61, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    pool = torch.nn.functional.avg_pool2d
    got = ssim(a, b, downsample=2)
    for i in range(2):
        pa, pb = (pool(torch.from_numpy(x[i]).permute(2, 0, 1).double(), 2).permute(1, 2, 0).numpy() for x in (a, b))
        ref = metrics.structural_similarity(
            pa, pb, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
        assert got[i] == pytest.approx(ref, abs=1e-9)
    assert ssim(a, b, downsample=2)[0] != pytest.approx(ssim(a, b)[0], abs=1e-4)
    assert (ssim_downsample_factor(480, 640), ssim_downsample_factor(32, 32), ssim_downsample_factor(720, 1280)) == (
        2,
        1,
        3,
    )


def test_score_video_psnr_is_piq_style() -> None:
    gt = np.full((3, 16, 16, 3), 100, np.uint8)
    pred = gt.copy()
    pred[1] += 10  # MSE (10/255)²
    scores = score_video(pred, gt)
    assert scores["psnr"][0] == pytest.approx(80.0)  # exact frame: 10·log10(1 / 1e-8)
    assert scores["psnr"][1] == pytest.approx(10 * np.log10(1 / ((10 / 255) ** 2 + 1e-8)), abs=1e-9)
    assert scores["ssim"].shape == (3,) and scores["ssim"][0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="uint8 of one shape"):
        score_video(pred[:2], gt)


# ------------------------------------------------------------------------------ pipeline options


def test_nvidia_noise_is_randomstate_of_the_chunk_start() -> None:
    shape = (16, 4, 6, 8)
    expected = np.random.RandomState(24).standard_normal((1, *shape)).astype(np.float32)
    np.testing.assert_array_equal(nvidia_noise(24, shape).numpy(), expected)


class _DecodeSpy:
    """Records every decoded chunk while delegating to the real VAE."""

    def __init__(self, vae) -> None:
        self.vae = vae
        self.videos: list[np.ndarray] = []
        self.truncate: list[bool] = []

    def __getattr__(self, name):
        return getattr(self.vae, name)

    def decode_to_uint8(self, latents, *, batch_size=None, truncate=False):
        video = self.vae.decode_to_uint8(latents, batch_size=batch_size, truncate=truncate)
        self.videos.append(video.cpu().numpy())
        self.truncate.append(truncate)
        return video


@pytest.mark.parametrize("assembly", ["aligned", "nvidia"])
def test_frame_assembly(tiny_runner, start_frame, make_actions, assembly: str, monkeypatch) -> None:
    pipe = tiny_runner.pipeline
    spy = _DecodeSpy(pipe.vae)
    monkeypatch.setattr(pipe, "vae", spy)
    out = pipe.rollout(start_frame, make_actions(1, 36), seeds=[0], num_steps=2, guidance=0.0, assembly=assembly)
    v = [video[0] for video in spy.videos]
    assert out.shape == (1, 37, 32, 32, 3) and len(v) == 3
    if assembly == "aligned":
        expected = np.concatenate([start_frame, v[0][1:], v[1][1:], v[2][1:]])
        assert spy.truncate == [False] * 3
    else:  # chunk 0's 13 frames, then frames 0..11 of each later chunk
        expected = np.concatenate([v[0], v[1][:12], v[2][:12]])
        assert spy.truncate == [True] * 3
    np.testing.assert_array_equal(out[0], expected)


def test_nvidia_noise_option_ignores_seeds(tiny_runner, start_frame, make_actions) -> None:
    pipe, actions = tiny_runner.pipeline, make_actions(1, 12)
    run = lambda seed, noise: pipe.rollout(start_frame, actions, seeds=[seed], num_steps=2, guidance=0.0, noise=noise)  # noqa: E731
    np.testing.assert_array_equal(run(0, "nvidia"), run(5, "nvidia"))
    assert not np.array_equal(run(0, "torch"), run(5, "torch"))
    assert not np.array_equal(run(0, "nvidia"), run(0, "torch"))
    with pytest.raises(ValueError, match="noise must be one of"):
        pipe.rollout(start_frame, actions, seeds=[0], num_steps=1, guidance=0.0, noise="numpy")


def test_guidance_uses_the_negative_prompt_embedding(
    tiny_spec, make_tiny_dit, tiny_runner, start_frame, make_actions, tmp_path: Path, caplog
) -> None:
    channels = 48
    text = torch.randn(1, 8, channels, generator=torch.Generator().manual_seed(1))
    negative = torch.randn(1, 8, channels, generator=torch.Generator().manual_seed(2))
    vae = tiny_runner.pipeline.vae
    with_neg = DreamDojoRunner.from_modules(
        tiny_spec, make_tiny_dit(0), vae, text_embedding=text, negative_text_embedding=negative
    ).pipeline
    zeros = DreamDojoRunner.from_modules(tiny_spec, make_tiny_dit(0), vae, text_embedding=text).pipeline
    actions = make_actions(1, 12)
    kwargs = dict(seeds=[0], num_steps=2)
    assert np.array_equal(
        with_neg.rollout(start_frame, actions, guidance=0.0, **kwargs),
        zeros.rollout(start_frame, actions, guidance=0.0, **kwargs),
    )
    with caplog.at_level(logging.WARNING, logger="dream.engine.models.dreamdojo.pipeline"):
        a = with_neg.rollout(start_frame, actions, guidance=3.0, **kwargs)
        assert "unconditional branch uses the all-zero" not in caplog.text
        b = zeros.rollout(start_frame, actions, guidance=3.0, **kwargs)
        assert "guidance 3: no negative-prompt embedding" in caplog.text
    assert not np.array_equal(a, b)
    # The file in the weights folder is what `load` passes on.
    assert load_negative_prompt_embedding(tmp_path, channels) is None
    save_empty_prompt_embedding(tmp_path / "negative_prompt_embedding.safetensors", negative[0])
    torch.testing.assert_close(load_negative_prompt_embedding(tmp_path, channels), negative)


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def gr1_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 49 steps at 10 fps after the baseline step need 100 frames at 20 fps.
    return make_gr1_lerobot(tmp_path_factory.mktemp("gr1-eval") / "ds", [100, 104, 60])


@pytest.mark.parametrize("protocol", ["ours", "nvidia"])
def test_run_gr1_eval_on_the_tiny_config(tiny_runner, gr1_dataset: Path, protocol: str) -> None:
    result = run_gr1_eval(gr1_dataset, runner=tiny_runner, episodes=3, num_steps=1, protocol=protocol, progress=False)
    assert result.num_samples == 2 and [f[0] for f in result.failures] == ["episode_000002"]
    assert "needs 48" in result.failures[0][1]
    assert len(result.per_frame_psnr_db) == 49
    assert np.isfinite([result.psnr_db, result.ssim, result.predicted_psnr_db, result.predicted_ssim]).all()
    if protocol == "ours":  # frame 0 is the start frame itself
        assert result.per_frame_psnr_db[0] == pytest.approx(80.0)
        assert result.predicted_psnr_db < result.psnr_db
    else:  # frame 0 is the re-decoded start frame
        assert result.per_frame_psnr_db[0] < 80.0
    assert result.lpips is None and result.lpips_note.startswith("not computed")
    assert "| all 49 |" in result.to_markdown()


def test_dream_eval_cli_gr1(
    gr1_dataset: Path, tiny_weights_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    monkeypatch.setitem(specs._REGISTRY, TINY_SLUG, make_tiny_spec())
    argv = ["eval", "--spec", TINY_SLUG, "--episodes", "1", str(gr1_dataset), "--num-steps", "1", "--no-progress",
            "--weights", str(tiny_weights_dir), "--device", "cpu", "--protocol", "nvidia", "-o", str(tmp_path / "t.md")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{TINY_SLUG}, protocol nvidia, 1 samples, 1 steps" in out and "LPIPS not computed" in out
    assert (tmp_path / "t.md").read_text().strip() == out.strip()
    with pytest.raises(SystemExit, match=r"^error: dream eval --spec dreamdojo-2b-gr1 needs a SOURCE"):
        main(["eval", "--spec", "dreamdojo-2b-gr1"])
    with pytest.raises(SystemExit, match=r"^error: SOURCE './ds' is for GR-1 evaluation; add --spec"):
        main(["eval", "./ds"])
    with pytest.raises(SystemExit, match=r"^error: .*no folder 'no/such/dataset'.*(neither exists)"):
        main(["eval", "--spec", TINY_SLUG, "./no/such/dataset"])
