"""Rectified-flow samplers shared by every diffusion spec.

This module is the scheduler of the engine: maths with no weights. A sampler integrates
the probability-flow ODE of a rectified-flow model from noise (σ ≈ 1) to data (σ = 0),
given only a velocity callable ``v(x, sigma) -> v``. The model, its conditioning and any
guidance live in that callable, so these samplers are tested on toy velocity fields with
known solutions and no network at all.

Conventions (rectified flow / flow matching)::

    x_σ = (1 − σ) · x0 + σ · ε          σ ∈ [0, 1], ε ~ N(0, I)
    v   = dx_σ/dσ = ε − x0              the model's velocity target
    x0  = x_σ − σ · v                   the data prediction implied by a velocity

Samplers:

- :func:`sample_euler` — first-order reference.
- :class:`UniPCMultistep` / :func:`sample_unipc` — UniPC multistep (Zhao et al. 2023,
  https://arxiv.org/abs/2302.04867) in its flow-matching form as used by Wan and
  Cosmos-Predict2.5: order 2, B(h) = e^{−h} − 1 ("bh2"), data (x0) prediction, the UniC
  corrector after every step but the first, and first order at the final step (σ = 0,
  where the log-SNR is infinite and a second-order extrapolation is undefined).

Arithmetic runs in float32 (float64 for float64 inputs) whatever the caller's dtype, because the multistep
coefficients difference nearly equal numbers (x0 predictions a step apart); the result is
cast back to the input's dtype.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

__all__ = [
    "UniPCMultistep",
    "VelocityFn",
    "flow_timestep",
    "sample_euler",
    "sample_unipc",
    "shifted_sigmas",
]

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]
"""``v(x, sigma) -> velocity`` with the shape of ``x``; sigma is a python float in (0, 1]."""


def shifted_sigmas(num_steps: int, shift: float = 5.0, sigma_max: float = 0.999) -> list[float]:
    """The σ schedule of a ``num_steps`` rollout: ``num_steps + 1`` values, the last one 0.

    ``linspace(sigma_max, 0, num_steps + 1)[:-1]`` spends equal steps in σ; the shift
    ``σ' = s·σ / (1 + (s − 1)·σ)`` (s = 5 for Cosmos-Predict2.5 / DreamDojo) moves them
    towards high noise, where the large-scale structure of a video is decided. A final
    σ = 0 is appended so the last step lands on the data prediction.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    base = torch.linspace(sigma_max, 0.0, num_steps + 1, dtype=torch.float64)[:-1]
    shifted = shift * base / (1.0 + (shift - 1.0) * base)
    return [float(s) for s in shifted] + [0.0]


def flow_timestep(sigma: float, num_train_timesteps: int = 1000) -> int:
    """The integer timestep a flow network is trained with for noise level σ: ``int(σ·1000)``.

    Truncation (not rounding) matches the int64 cast of the reference schedulers; the
    network then rescales it (DreamDojo: × 0.001).
    """
    return int(sigma * num_train_timesteps)


def sample_euler(
    velocity: VelocityFn,
    x: torch.Tensor,
    sigmas: Sequence[float],
    *,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Integrate ``dx/dσ = v(x, σ)`` from ``sigmas[0]`` down to ``sigmas[-1]`` with Euler steps.

    ``x`` is the sample at ``sigmas[0]`` (pure noise for a generation). Reference
    first-order solver; ``callback(step_index, x)`` sees each new sample.
    """
    out_dtype = x.dtype
    work = _work_dtype(out_dtype)
    x = x.to(work)
    for i in range(len(sigmas) - 1):
        s, t = float(sigmas[i]), float(sigmas[i + 1])
        v = velocity(x.to(out_dtype), s).to(work)
        x = x + (t - s) * v
        if callback is not None:
            callback(i, x)
    return x.to(out_dtype)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32, or float64 when the caller works in float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _lambda(sigma: float) -> float:
    """Half log-SNR of the flow path: log((1 − σ)/σ); +inf at σ = 0."""
    if sigma <= 0.0:
        return math.inf
    return math.log(1.0 - sigma) - math.log(sigma)


def _unipc_coefficients(
    h: float, rks: Sequence[float], order: int
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """The linear system R·ρ = b of UniPC-bh2 for data prediction, and h·φ1(−h), B(h).

    ``rks`` are the ratios (λ_k − λ_s)/h of the older model outputs followed by 1.0.
    Returns ``(R, b, h_phi_1, B_h)`` with R (order, order) and b (order,) in float64.
    """
    hh = -h
    h_phi_1 = math.expm1(hh)  # e^{-h} - 1
    b_h = math.expm1(hh)  # bh2: B(h) = e^{-h} - 1
    h_phi_k = h_phi_1 / hh - 1.0
    factorial = 1.0
    rows, rhs = [], []
    r = torch.tensor(list(rks), dtype=torch.float64)
    for i in range(1, order + 1):
        rows.append(r ** (i - 1))
        rhs.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    return torch.stack(rows), torch.tensor(rhs, dtype=torch.float64), h_phi_1, b_h


@dataclass
class UniPCMultistep:
    """UniPC multistep solver for rectified flow (order ≤ 2, bh2, x0 prediction).

    Use it as a scheduler: ``x = noise``; for each step ``i``: ``v = model(x, sigmas[i])``;
    ``x = solver.step(v, x)``. The solver keeps the history it needs (previous data
    predictions and the previous sample for the corrector). :func:`sample_unipc` wraps
    the loop for a velocity callable.
    """

    sigmas: Sequence[float]
    order: int = 2
    use_corrector: bool = True
    lower_order_final: bool = True
    step_index: int = 0
    _x0_history: list[torch.Tensor] = field(default_factory=list, repr=False)
    _last_sample: torch.Tensor | None = field(default=None, repr=False)
    _last_order: int = 0

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise ValueError(f"UniPC order must be 1 or 2, got {self.order}")
        sig = [float(s) for s in self.sigmas]
        if len(sig) < 2:
            raise ValueError("sigmas needs at least two values (start and end)")
        if any(b >= a for a, b in itertools.pairwise(sig)):
            raise ValueError(f"sigmas must decrease strictly, got {sig}")
        if sig[0] >= 1.0 or sig[-1] < 0.0:
            raise ValueError(f"sigmas must lie in [0, 1), got first {sig[0]} and last {sig[-1]}")
        self.sigmas = sig
        self._lambdas = [_lambda(s) for s in sig]

    @property
    def num_steps(self) -> int:
        return len(self.sigmas) - 1

    def step(self, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Advance ``sample`` (at ``sigmas[step_index]``) by one step given the model's velocity there."""
        i = self.step_index
        if i >= self.num_steps:
            raise RuntimeError(f"all {self.num_steps} steps of this solver are done")
        out_dtype = sample.dtype
        work = _work_dtype(out_dtype)
        x = sample.to(work)
        x0 = x - self.sigmas[i] * velocity.to(work)  # data prediction at this step

        # UniC: refine the sample this model output was evaluated at, for free (no new call).
        if self.use_corrector and i > 0 and self._last_sample is not None:
            x = self._correct(x0, self._last_sample, self._last_order)

        self._x0_history.append(x0)
        del self._x0_history[: -self.order]

        order = self.order
        if self.lower_order_final:
            order = min(order, self.num_steps - i)
        if self.sigmas[i + 1] == 0.0:
            order = 1  # λ = inf at σ = 0: only the first-order update is defined
        order = min(order, len(self._x0_history))  # warm-up of the multistep history

        self._last_sample = x
        self._last_order = order
        x_next = self._predict(x, order)
        self.step_index += 1
        return x_next.to(out_dtype)

    def _predict(self, x: torch.Tensor, order: int) -> torch.Tensor:
        """UniP: the explicit multistep update from ``sigmas[i]`` to ``sigmas[i + 1]``."""
        i = self.step_index
        s0, t = self.sigmas[i], self.sigmas[i + 1]
        alpha_t = 1.0 - t
        m0 = self._x0_history[-1]
        if t == 0.0:
            # σ_t/σ_s → 0 and h·φ1 → −1: the update is exactly the data prediction.
            return m0.clone()
        h = self._lambdas[i + 1] - self._lambdas[i]
        _, _, h_phi_1, b_h = _unipc_coefficients(h, [1.0], 1)
        x_t = (t / s0) * x - alpha_t * h_phi_1 * m0
        if order == 2:
            m1 = self._x0_history[-2]
            rk = (self._lambdas[i - 1] - self._lambdas[i]) / h
            d1 = (m1 - m0) / rk
            x_t = x_t - alpha_t * b_h * 0.5 * d1  # ρ = 1/2 is the order-2 UniP choice
        return x_t

    def _correct(self, model_x0: torch.Tensor, last_sample: torch.Tensor, order: int) -> torch.Tensor:
        """UniC: recompute the last step's update using the data prediction at its end point."""
        i = self.step_index  # the sample being corrected sits at sigmas[i]
        s0, t = self.sigmas[i - 1], self.sigmas[i]
        alpha_t = 1.0 - t
        m0 = self._x0_history[-1]
        h = self._lambdas[i] - self._lambdas[i - 1]
        rks: list[float] = []
        d1s: list[torch.Tensor] = []
        for k in range(1, order):
            mk = self._x0_history[-(k + 1)]
            rk = (self._lambdas[i - 1 - k] - self._lambdas[i - 1]) / h
            rks.append(rk)
            d1s.append((mk - m0) / rk)
        R, b, h_phi_1, b_h = _unipc_coefficients(h, [*rks, 1.0], order)
        if order == 1:
            rhos = [0.5]
        else:
            rhos = [float(r) for r in torch.linalg.solve(R, b)]
        x_t = (t / s0) * last_sample - alpha_t * h_phi_1 * m0
        corr = rhos[-1] * (model_x0 - m0)
        for rho, d1 in zip(rhos[:-1], d1s, strict=True):
            corr = corr + rho * d1
        return x_t - alpha_t * b_h * corr


def sample_unipc(
    velocity: VelocityFn,
    x: torch.Tensor,
    sigmas: Sequence[float],
    *,
    order: int = 2,
    use_corrector: bool = True,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Integrate from ``sigmas[0]`` to ``sigmas[-1]`` with UniPC (one velocity call per step).

    ``x`` is the sample at ``sigmas[0]``; ``velocity(x, σ)`` is called ``len(sigmas) − 1``
    times. ``callback(step_index, x)`` sees each new sample.
    """
    solver = UniPCMultistep(sigmas, order=order, use_corrector=use_corrector)
    for i in range(solver.num_steps):
        v = velocity(x, solver.sigmas[i])
        x = solver.step(v, x)
        if callback is not None:
            callback(i, x)
    return x
