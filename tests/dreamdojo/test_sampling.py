"""Rectified-flow samplers against closed-form solutions (no network involved)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dream.engine.sampling import UniPCMultistep, flow_timestep, sample_euler, sample_unipc, shifted_sigmas


def test_shifted_sigmas_match_the_dreamdojo_schedule() -> None:
    sig = shifted_sigmas(35, shift=5.0)
    assert len(sig) == 36 and sig[-1] == 0.0
    base = [0.999 - i * 0.999 / 35 for i in range(35)]
    expected = [5 * s / (1 + 4 * s) for s in base]
    assert sig[:-1] == pytest.approx(expected, abs=1e-12)
    assert all(a > b for a, b in itertools.pairwise(sig))
    assert flow_timestep(sig[0]) == 999  # int64(0.9998 * 1000)
    assert flow_timestep(0.5) == 500


def test_shifted_sigmas_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_steps"):
        shifted_sigmas(0)
    with pytest.raises(ValueError, match="shift"):
        shifted_sigmas(10, shift=0)


def point_mass_velocity(x0: torch.Tensor):
    """Data = a single point x0: E[ε − x0 | x_σ] = (x − x0)/σ exactly."""

    def v(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return (x - x0) / sigma

    return v


@pytest.mark.parametrize("sampler", [sample_euler, sample_unipc], ids=["euler", "unipc"])
def test_point_mass_is_reconstructed_exactly(sampler) -> None:
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 8, generator=gen, dtype=torch.float64)
    noise = torch.randn(4, 8, generator=gen, dtype=torch.float64)
    out = sampler(point_mass_velocity(x0), noise, shifted_sigmas(7))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-10)


MU, S = 0.7, 0.3  # data ~ N(MU, S²) per dimension


def gaussian_velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Exact E[ε − x0 | x_σ] for Gaussian data: a linear field whose flow is known in closed form."""
    a = 1.0 - sigma
    var = a * a * S * S + sigma * sigma
    resid = x - a * MU
    e_eps = sigma / var * resid
    e_x0 = MU + a * S * S / var * resid
    return e_eps - e_x0


def gaussian_exact(x_start: torch.Tensor, sigma_start: float) -> torch.Tensor:
    """Where the probability-flow ODE takes x_start (at sigma_start) at σ = 0: the same quantile."""
    a = 1.0 - sigma_start
    z = (x_start - a * MU) / math.sqrt(a * a * S * S + sigma_start**2)
    return MU + S * z


def max_error(sampler, steps: int, shift: float = 1.0) -> float:
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    sig = shifted_sigmas(steps, shift=shift)
    out = sampler(gaussian_velocity, x, sig)
    return float((out - gaussian_exact(x, sig[0])).abs().max())


def test_both_samplers_converge_to_the_closed_form_flow() -> None:
    # Uniform σ steps, and the shifted DreamDojo schedule (its large last step dominates the error).
    assert max_error(sample_euler, 320) < 1e-2
    assert max_error(sample_unipc, 320) < 2e-4
    assert max_error(sample_euler, 320, shift=5.0) < 3e-2
    assert max_error(sample_unipc, 320, shift=5.0) < 3e-3


def test_unipc_error_shrinks_faster_than_euler() -> None:
    steps = (80, 160, 320)
    e_euler = [max_error(sample_euler, n) for n in steps]
    e_unipc = [max_error(sample_unipc, n) for n in steps]
    assert all(u < e / 10 for u, e in zip(e_unipc, e_euler, strict=True))
    for i in range(len(steps) - 1):
        euler_rate = math.log2(e_euler[i] / e_euler[i + 1])
        unipc_rate = math.log2(e_unipc[i] / e_unipc[i + 1])
        assert 0.8 < euler_rate < 1.2, (steps[i], euler_rate)  # first order
        assert unipc_rate > 1.8, (steps[i], unipc_rate)  # second order
    # On the shifted schedule UniPC still beats Euler at every step count.
    for n in (10, 20, 40, 80):
        assert max_error(sample_unipc, n, shift=5.0) < max_error(sample_euler, n, shift=5.0)


def test_unipc_calls_the_velocity_once_per_step_and_keeps_dtype() -> None:
    calls: list[float] = []

    def v(x: torch.Tensor, sigma: float) -> torch.Tensor:
        calls.append(sigma)
        return gaussian_velocity(x.double(), sigma).to(x.dtype)

    sig = shifted_sigmas(9)
    out = sample_unipc(v, torch.zeros(5, dtype=torch.bfloat16), sig)
    assert calls == sig[:-1]
    assert out.dtype == torch.bfloat16


def test_unipc_matches_diffusers_flow_unipc_scheduler() -> None:
    """Cross-check with an independent implementation (diffusers' UniPC in flow mode)."""
    diffusers = pytest.importorskip("diffusers")
    sig = shifted_sigmas(12)
    sched = diffusers.UniPCMultistepScheduler(
        num_train_timesteps=1000,
        solver_order=2,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=1.0,  # our sigmas are already shifted
        final_sigmas_type="zero",
        predict_x0=True,
        solver_type="bh2",
        lower_order_final=True,
    )
    import numpy as np

    sched.set_timesteps(sigmas=np.array(sig[:-1]))
    torch.testing.assert_close(
        sched.sigmas.double(), torch.tensor(sig, dtype=torch.float64), atol=1e-6, rtol=0
    )
    x_ref = torch.linspace(-2, 2, 17, dtype=torch.float32)[None]
    for t in sched.timesteps:
        i = sched.step_index if sched.step_index is not None else 0
        v = gaussian_velocity(x_ref.double(), float(sched.sigmas[i])).float()
        x_ref = sched.step(v, t, x_ref).prev_sample
    ours = sample_unipc(gaussian_velocity, torch.linspace(-2, 2, 17, dtype=torch.float64)[None], sig)
    torch.testing.assert_close(ours.float(), x_ref, atol=2e-5, rtol=0)


def test_unipc_validates_its_schedule() -> None:
    with pytest.raises(ValueError, match="decrease"):
        UniPCMultistep([0.5, 0.6, 0.0])
    with pytest.raises(ValueError, match="order"):
        UniPCMultistep([0.5, 0.0], order=3)
    solver = UniPCMultistep([0.5, 0.0])
    solver.step(torch.zeros(2), torch.zeros(2))
    with pytest.raises(RuntimeError, match="steps"):
        solver.step(torch.zeros(2), torch.zeros(2))
