"""GPU path of the DreamDojo runner on the tiny config (bf16, SDPA, torch.compile); skipped without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dream.engine.models.dreamdojo.runner import DreamDojoOptions, DreamDojoRunner

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def gpu_runner(tiny_spec, tiny_weights_dir):
    runner = DreamDojoRunner(tiny_spec, device="cuda", weights=tiny_weights_dir, options=DreamDojoOptions())
    runner.load()
    return runner


def test_bf16_rollout_on_cuda_is_deterministic(gpu_runner, start_frame, make_actions) -> None:
    dit = gpu_runner.pipeline.dit
    assert dit.blocks[0].mlp.layer1.weight.dtype == torch.bfloat16
    assert dit.blocks[0].mlp.layer1.weight.is_cuda
    actions = make_actions(3, 24)
    a = gpu_runner.rollout(start_frame, actions, seeds=[0, 1, 2], num_steps=3, guidance=None)
    b = gpu_runner.rollout(start_frame, actions, seeds=[0, 1, 2], num_steps=3, guidance=None)
    assert a.shape == (3, 25, 32, 32, 3)
    assert a.tobytes() == b.tobytes()


def test_cuda_and_cpu_agree_roughly(gpu_runner, tiny_runner, start_frame, make_actions) -> None:
    """Same seeds → same noise on both devices (CPU generators); bf16 vs fp32 numerics differ a little."""
    actions = make_actions(1, 12)
    gpu = gpu_runner.rollout(start_frame, actions, seeds=[3], num_steps=3, guidance=None).astype(np.float64)
    cpu = tiny_runner.rollout(start_frame, actions, seeds=[3], num_steps=3, guidance=None).astype(np.float64)
    mse = np.mean((gpu - cpu) ** 2)
    assert 10 * np.log10(255.0**2 / max(mse, 1e-12)) > 20


def test_compiled_blocks_match_eager(
    tiny_spec, tiny_weights_dir, gpu_runner, start_frame, make_actions
) -> None:
    compiled = DreamDojoRunner(
        tiny_spec, device="cuda", weights=tiny_weights_dir, options=DreamDojoOptions(compile=True)
    )
    compiled.load()
    actions = make_actions(2, 12)
    eager = gpu_runner.rollout(start_frame, actions, seeds=[0, 1], num_steps=3, guidance=None).astype(
        np.float64
    )
    fast = compiled.rollout(start_frame, actions, seeds=[0, 1], num_steps=3, guidance=None).astype(np.float64)
    assert np.abs(eager - fast).mean() < 2.0
