"""The DreamDojo runner end to end on the tiny config: weights discovery, shapes, chunking, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dream.engine.models.dreamdojo.runner import (
    DreamDojoOptions,
    DreamDojoRunner,
    resolve_weights,
    spec_weights_env,
)
from dream.engine.runner import runner_class
from dream.engine.specs import get as get_spec
from dream.errors import EngineError, InputValidationError, WeightsNotFoundError


def test_runner_family_is_registered() -> None:
    assert runner_class("dreamdojo") is DreamDojoRunner


def test_flagship_without_weights_says_what_to_fetch_and_where() -> None:
    status = DreamDojoRunner.weights_status(get_spec("dreamdojo-2b-gr1"))
    assert not status.available
    msg = status.message
    for needle in (
        "`dream pull dreamdojo-2b-gr1`",
        "nvidia/DreamDojo",
        "2B_GR1_post-train/latest_checkpoint.txt",
        "2B_GR1_post-train/*/model/*",
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "vae/",
        "DREAM_WEIGHTS_DREAMDOJO_2B_GR1",
        "model_ema_bf16.pt",
    ):
        assert needle in msg, needle
    assert spec_weights_env("dreamdojo-2b-gr1") == "DREAM_WEIGHTS_DREAMDOJO_2B_GR1"


def test_load_without_weights_raises_weights_not_found(tiny_spec) -> None:
    runner = DreamDojoRunner(tiny_spec)
    with pytest.raises(WeightsNotFoundError, match="dreamdojo-tiny-test"):
        runner.load()


def test_weights_found_in_every_documented_place(
    tiny_spec, tiny_weights_dir: Path, monkeypatch, tmp_path
) -> None:
    env = spec_weights_env(tiny_spec.slug)
    monkeypatch.setenv(env, str(tiny_weights_dir))
    status = DreamDojoRunner.weights_status(tiny_spec)
    assert status.available and status.location == str(tiny_weights_dir / "model.safetensors")
    monkeypatch.delenv(env)

    root = tmp_path / "root"
    (root / tiny_spec.slug).mkdir(parents=True)
    (root / tiny_spec.slug / "model.safetensors").symlink_to(tiny_weights_dir / "model.safetensors")
    (root / tiny_spec.slug / "vae").symlink_to(tiny_weights_dir / "vae")
    monkeypatch.setenv("DREAM_WEIGHTS_DIR", str(root))
    resolved = resolve_weights(tiny_spec)
    assert resolved.dit.path == root / tiny_spec.slug / "model.safetensors"
    assert resolved.vae_folder == root / tiny_spec.slug / "vae"

    # A checkpoint given directly as a file finds vae/ next to it.
    resolved = resolve_weights(tiny_spec, tiny_weights_dir / "model.safetensors")
    assert resolved.vae_folder == tiny_weights_dir / "vae" and resolved.source == "--weights"


def test_missing_vae_is_named(tiny_spec, tiny_state, tmp_path) -> None:
    from safetensors.torch import save_file

    save_file(tiny_state, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsNotFoundError, match=r"no Wan2\.1 VAE folder \(vae/\)"):
        resolve_weights(tiny_spec, tmp_path)


def test_explicit_path_that_does_not_exist(tiny_spec, tmp_path) -> None:
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        DreamDojoRunner(tiny_spec, weights=tmp_path / "missing").load()


@pytest.mark.parametrize("t", [12, 24, 48])
@pytest.mark.parametrize("k", [1, 3])
def test_shapes_and_chunking(tiny_runner, start_frame, make_actions, t: int, k: int) -> None:
    out = tiny_runner.rollout(
        start_frame, make_actions(k, t), seeds=list(range(k)), num_steps=2, guidance=None
    )
    assert out.shape == (k, t + 1, 32, 32, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, 0], np.broadcast_to(start_frame, (k, 32, 32, 3)))
    stats = tiny_runner.pipeline.last_stats
    assert stats.dit_calls == 2 * (t // 12)  # num_steps forwards per chunk, one batched forward for all K


def test_same_seed_gives_identical_bytes_and_different_seeds_differ(
    tiny_runner, start_frame, make_actions
) -> None:
    actions = make_actions(2, 24)
    a = tiny_runner.rollout(start_frame, actions, seeds=[7, 8], num_steps=3, guidance=None)
    b = tiny_runner.rollout(start_frame, actions, seeds=[7, 8], num_steps=3, guidance=None)
    assert a.tobytes() == b.tobytes()
    c = tiny_runner.rollout(start_frame, actions, seeds=[9, 8], num_steps=3, guidance=None)
    assert not np.array_equal(a[0, 1:], c[0, 1:])
    assert np.array_equal(a[1], c[1])  # rollout 1 kept its seed: unchanged by its neighbour's seed
    video = pytest.importorskip("dream.engine.video")
    pytest.importorskip("av")
    assert video.encode_mp4(a[0], 10) == video.encode_mp4(b[0], 10)


def test_noise_does_not_depend_on_batch_composition(tiny_runner, start_frame, make_actions) -> None:
    actions = make_actions(3, 12)
    batch = tiny_runner.rollout(start_frame, actions, seeds=[1, 2, 3], num_steps=2, guidance=None)
    alone = tiny_runner.rollout(start_frame, actions[1:2], seeds=[2], num_steps=2, guidance=None)
    # Same noise; only floating-point reassociation across batch sizes may differ (≤ 1-2 LSB).
    assert np.abs(batch[1].astype(int) - alone[0].astype(int)).max() <= 2


def test_num_steps_is_honoured(tiny_runner, start_frame, make_actions) -> None:
    actions = make_actions(1, 12)
    two = tiny_runner.rollout(start_frame, actions, seeds=[0], num_steps=2, guidance=None)
    assert tiny_runner.pipeline.last_stats.dit_calls == 2
    five = tiny_runner.rollout(start_frame, actions, seeds=[0], num_steps=5, guidance=None)
    assert tiny_runner.pipeline.last_stats.dit_calls == 5
    assert not np.array_equal(two, five)
    tiny_runner.rollout(start_frame, actions, seeds=[0], num_steps=None, guidance=None)
    assert tiny_runner.pipeline.last_stats.dit_calls == tiny_runner.spec.default_num_steps


def test_shared_start_frame_is_encoded_once(tiny_runner, start_frame, make_actions, monkeypatch) -> None:
    vae = tiny_runner.pipeline.vae
    sizes: list[int] = []
    original = vae.encode_frames

    def spy(frames):
        sizes.append(frames.shape[0])
        return original(frames)

    monkeypatch.setattr(vae, "encode_frames", spy)
    tiny_runner.rollout(start_frame, make_actions(3, 24), seeds=[0, 1, 2], num_steps=2, guidance=None)
    assert sizes == [1, 3]  # chunk 0: the shared frame once; chunk 1: each rollout's last frame


def test_per_rollout_start_frames(tiny_runner, make_actions) -> None:
    frames = np.random.default_rng(5).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    out = tiny_runner.rollout(frames, make_actions(2, 12), seeds=[0, 0], num_steps=2, guidance=None)
    assert np.array_equal(out[:, 0], frames)
    assert not np.array_equal(out[0, 1:], out[1, 1:])


def test_guidance_zero_skips_the_unconditional_pass(
    tiny_spec, tiny_weights_dir, start_frame, make_actions, tmp_path
) -> None:
    """With a real (non-zero) text embedding, guidance > 0 runs cond + uncond as one batch of 2K."""
    from dream.engine.models.dreamdojo.text_embedding import save_empty_prompt_embedding

    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "model.safetensors").symlink_to(tiny_weights_dir / "model.safetensors")
    (folder / "vae").symlink_to(tiny_weights_dir / "vae")
    cfg = tiny_runner_cfg()
    save_empty_prompt_embedding(
        folder / "empty_prompt_embedding.safetensors",
        torch.randn(
            cfg.text_tokens, cfg.crossattn_proj_in_channels, generator=torch.Generator().manual_seed(0)
        ),
    )
    runner = DreamDojoRunner(tiny_spec, weights=folder, options=DreamDojoOptions())
    runner.load()
    assert not runner.pipeline.uncond_is_cond
    batches: list[int] = []
    original = runner.pipeline.dit.forward

    def spy(x, *args, **kwargs):
        batches.append(x.shape[0])
        return original(x, *args, **kwargs)

    runner.pipeline.dit.forward = spy
    actions = make_actions(2, 12)
    g0 = runner.rollout(start_frame, actions, seeds=[0, 1], num_steps=2, guidance=0.0)
    assert batches == [2, 2]
    batches.clear()
    g3 = runner.rollout(start_frame, actions, seeds=[0, 1], num_steps=2, guidance=3.0)
    assert batches == [4, 4]
    assert not np.array_equal(g0, g3)


def tiny_runner_cfg():
    from dream.engine.models.dreamdojo.config import DREAMDOJO_TINY

    return DREAMDOJO_TINY.dit


def test_guidance_with_the_zero_fallback_is_a_no_op(tiny_runner, start_frame, make_actions) -> None:
    assert tiny_runner.pipeline.uncond_is_cond  # no embedding file: cond == uncond
    actions = make_actions(1, 12)
    a = tiny_runner.rollout(start_frame, actions, seeds=[3], num_steps=2, guidance=0.0)
    b = tiny_runner.rollout(start_frame, actions, seeds=[3], num_steps=2, guidance=5.0)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize(
    ("frames_shape", "actions_shape", "seeds", "match"),
    [
        ((1, 16, 16, 3), (1, 12, 384), [0], r"frames must be \(1 or K, 32, 32, 3\)"),
        ((2, 32, 32, 3), (3, 12, 384), [0, 1, 2], "2 start frames for 3 rollouts"),
        ((1, 32, 32, 3), (1, 10, 384), [0], "not a positive multiple of the chunk size 12"),
        ((1, 32, 32, 3), (1, 12, 7), [0], r"actions must be \(K, T, 384\)"),
        ((1, 32, 32, 3), (2, 12, 384), [0], "got 1 seeds for 2 rollouts"),
    ],
)
def test_bad_inputs_are_refused_before_any_work(
    tiny_runner, frames_shape, actions_shape, seeds, match
) -> None:
    frames = np.zeros(frames_shape, np.uint8)
    actions = np.zeros(actions_shape, np.float32)
    with pytest.raises(InputValidationError, match=match):
        tiny_runner.rollout(frames, actions, seeds=seeds, num_steps=2, guidance=None)


def test_rollout_before_load_is_an_engine_error(tiny_spec, start_frame, make_actions) -> None:
    with pytest.raises(EngineError, match="not loaded"):
        DreamDojoRunner(tiny_spec).rollout(
            start_frame, make_actions(1, 12), seeds=[0], num_steps=1, guidance=None
        )


def test_warmup_runs(tiny_runner) -> None:
    tiny_runner.warmup()
    assert tiny_runner.pipeline.last_stats.dit_calls == 2


def test_step_cache_quality_cost_is_measured(tiny_runner, start_frame, make_actions) -> None:
    """TeaCache-style caching on the tiny random model: skipped steps vs PSNR against no caching."""
    actions = make_actions(2, 24)
    reference = tiny_runner.rollout(start_frame, actions, seeds=[4, 5], num_steps=12, guidance=None)
    results = {}
    try:
        for threshold in (0.05, 0.2):
            tiny_runner.set_step_cache(threshold)
            cached = tiny_runner.rollout(start_frame, actions, seeds=[4, 5], num_steps=12, guidance=None)
            stats = tiny_runner.pipeline.last_stats
            skipped = stats.skipped_sample_steps / (stats.skipped_sample_steps + stats.computed_sample_steps)
            mse = np.mean((cached[:, 1:].astype(np.float64) - reference[:, 1:].astype(np.float64)) ** 2)
            psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
            results[threshold] = (skipped, psnr)
    finally:
        tiny_runner.set_step_cache(0.0)
    print("step cache on the tiny config (threshold: skipped fraction, PSNR dB):", results)
    assert results[0.2][0] > 0  # something was skipped
    assert results[0.2][0] >= results[0.05][0]
    assert results[0.05][1] >= 25.0  # a light threshold stays close to the uncached result


def test_gr1_absolute_mode_is_gone_with_a_pointer_to_the_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """The old gr1_absolute mode got rows 0-3 of every group wrong and had no state: removed."""
    from dream.engine.models.dreamdojo.runner import DreamDojoOptions

    monkeypatch.setenv("DREAM_DREAMDOJO_ACTION_MODE", "gr1_absolute")
    with pytest.raises(EngineError, match=r"gr1_absolute.*dream\.actions\.gr1_actions"):
        DreamDojoOptions.from_env()
    monkeypatch.setenv("DREAM_DREAMDOJO_ACTION_MODE", "model")
    assert DreamDojoOptions.from_env() == DreamDojoOptions()


@pytest.mark.parametrize(("k", "chunk_actions"), [(1, 12), (2, 24)])
def test_rollout_chunks_computes_one_chunk_per_next(
    tiny_runner, start_frame, make_actions, monkeypatch, k: int, chunk_actions: int
) -> None:
    """A long rollout is computed a chunk at a time: each `next` runs only the model chunks
    it yields, so memory holds one chunk of frames, not T + 1 of them."""
    actions = make_actions(k, 48, seed=7)
    whole = tiny_runner.rollout(start_frame, actions, seeds=list(range(k)), num_steps=2, guidance=0.0)
    pipeline = tiny_runner.pipeline
    calls = []
    sample_chunk = pipeline.sample_chunk
    monkeypatch.setattr(pipeline, "sample_chunk", lambda *a, **kw: calls.append(1) or sample_chunk(*a, **kw))

    chunks = tiny_runner.rollout_chunks(
        start_frame, actions, seeds=list(range(k)), num_steps=2, guidance=0.0, chunk_actions=chunk_actions
    )
    first = next(chunks)
    assert first.shape == (k, 1, 32, 32, 3) and len(calls) == 0  # frame 0 is the start frame
    got, done = [first], []
    for chunk in chunks:
        got.append(chunk)
        done.append(len(calls))
        assert chunk.shape == (k, chunk_actions, 32, 32, 3)
    per = chunk_actions // 12
    assert done == [per * (i + 1) for i in range(48 // chunk_actions)]
    np.testing.assert_array_equal(np.concatenate(got, axis=1), whole)  # the same bytes as rollout
