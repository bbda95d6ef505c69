"""Sampling planners over a world model: `CEM` and `MPPI`.

Both search a low-dimensional space: a plan of `horizon` actions is ``horizon / repeat``
knots, each an action held for `repeat` steps (for ``pusht-96``: an absolute target of
the agent, so a knot is "go there and push whatever is in the way"). Knots are drawn
around a mean (first: the start state's natural action, for ``pusht-96`` the agent's
own position read off the frame; later: the previous plan shifted by the actions
executed since, `shift`), clipped to the model's action bounds, rolled out by the model
and scored by the cost. A share of the first iteration's samples is drawn broadly
(twice the first spread) to find pushes far from the current plan.

* `CEM`: refits the mean and spread to the `elites` cheapest samples; the elites are
  carried into the next iteration's samples.
* `MPPI`: refits them to all samples weighted by ``exp(−(cost − min) / temperature)``.

Both return the cheapest sequence they imagined (the running mean is one of every
iteration's samples). A plan is deterministic for a given `seed`: the random stream of
a plan depends on the seed and on how many plans this planner has made since `reset`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dream.errors import InputValidationError
from dream.plan._blas import one_blas_thread
from dream.plan.costs import GoalImageCost
from dream.plan.models import Imagination, ModelInfo, imagination_for

__all__ = ["CEM", "DEFAULTS", "MPPI", "PlanDefaults", "PlanResult", "Planner", "defaults_for"]


@dataclass(frozen=True)
class PlanDefaults:
    """A planner's budget and search shape for one spec (`None` arguments take these)."""

    horizon: int
    repeat: int
    samples: int
    iterations: int
    elites: int
    init_std: float  # spread of the first plan's knots, in action units
    warm_std: float  # spread around a warm-started plan
    min_std: float
    broad: float  # share of the first iteration's samples drawn twice as wide
    temperature: float  # MPPI, in cost units
    patience: int = 0  # warm-started plans without progress before a wide restart (0: never)
    progress: float = 0.0  # cost units: less improvement than this over the last plan is none
    tuned: bool = True


# pusht-96: tuned on validation pairs (README "Planning"): a knot is an agent target in workspace px.
DEFAULTS: dict[str, PlanDefaults] = {
    "pusht-96": PlanDefaults(horizon=30, repeat=5, samples=300, iterations=10, elites=30, init_std=150.0,
                             warm_std=80.0, min_std=5.0, broad=0.25, temperature=10.0, patience=2, progress=1.0),
    "simulator": PlanDefaults(horizon=30, repeat=5, samples=300, iterations=10, elites=30, init_std=150.0,
                              warm_std=80.0, min_std=5.0, broad=0.25, temperature=10.0, patience=2, progress=1.0),
}


def defaults_for(info: ModelInfo) -> PlanDefaults:
    """The defaults of a spec: tuned ones where the table has them, a generic small budget otherwise."""
    if info.slug in DEFAULTS:
        return DEFAULTS[info.slug]
    chunk = max(1, info.chunk_size)
    if info.action_low is not None and info.action_high is not None:
        spread = (info.action_high - info.action_low) / 4.0
    else:
        spread = 0.5
    return PlanDefaults(horizon=2 * chunk, repeat=chunk, samples=16, iterations=3, elites=4, init_std=spread,
                        warm_std=spread / 2, min_std=spread / 50, broad=0.0, temperature=1.0, tuned=False)


class PlanResult:
    """One plan: the actions, what the model predicted for them, and what it cost to find.

    ``frames`` (the best plan's predicted frames, uint8 (T + 1, H, W, 3)) is computed on
    first access: one more rollout, outside the plan's timing.
    """

    def __init__(self, actions: np.ndarray, cost: float, rollouts: int, iterations: int, wall_s: float,
                 engine_s: float, knots: np.ndarray, costs_per_iteration: list[float],
                 draw: Callable[[], np.ndarray]) -> None:
        self.actions = actions  # float32 (horizon, action_dim)
        self.cost = cost  # the model's predicted cost of `actions`
        self.rollouts = rollouts  # candidate rollouts imagined
        self.iterations = iterations
        self.wall_s = wall_s
        self.engine_s = engine_s  # of wall_s: in the model (rollouts, frames, pose reads)
        self.knots = knots
        self.costs_per_iteration = costs_per_iteration  # best cost so far after each iteration
        self._draw = draw
        self._frames: np.ndarray | None = None

    @property
    def optimiser_s(self) -> float:
        """Of wall_s: outside the model (sampling, refits, costs of poses)."""
        return max(0.0, self.wall_s - self.engine_s)

    @property
    def frames(self) -> np.ndarray:
        if self._frames is None:
            self._frames = self._draw()
        return self._frames

    def __repr__(self) -> str:
        return (f"PlanResult(cost={self.cost:.3f}, rollouts={self.rollouts}, iterations={self.iterations}, "
                f"wall_s={self.wall_s:.3f}, engine_s={self.engine_s:.3f})")


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise InputValidationError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def _positive_float(name: str, value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputValidationError(f"{name} must be a positive number; got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(out) or out <= 0:
        raise InputValidationError(f"{name} must be a positive finite number; got {value!r}")
    return out


@dataclass
class _Search:
    mean: np.ndarray  # (knots, A)
    std: np.ndarray  # (knots, A)
    warm: bool
    elites: np.ndarray | None = None
    best: np.ndarray | None = None
    best_cost: float = math.inf
    history: list[float] = field(default_factory=list)


class Planner:
    """What `CEM` and `MPPI` share: checks, the knot parameterisation, warm starts, results."""

    def __init__(
        self,
        model: Any,
        cost: Callable[[np.ndarray], Any],
        *,
        horizon: int | None = None,
        samples: int | None = None,
        iterations: int | None = None,
        elites: int | None = None,
        seed: int = 0,
        repeat: int | None = None,
        init_std: float | None = None,
        warm_std: float | None = None,
        min_std: float | None = None,
        broad: float | None = None,
        patience: int | None = None,
        max_knot_step: float | None = None,
        fast: bool = True,
    ) -> None:
        if not callable(cost):
            raise InputValidationError(f"cost must be callable (frames (K, T + 1, H, W, 3) -> (K,)); got {type(cost).__name__}")
        self.imagination: Imagination = imagination_for(model, fast=fast)
        info = self.imagination.info
        d = defaults_for(info)
        self.defaults = d
        self.horizon = _positive_int("horizon", d.horizon if horizon is None else horizon)
        self.samples = _positive_int("samples", d.samples if samples is None else samples)
        self.iterations = _positive_int("iterations", d.iterations if iterations is None else iterations)
        self.elites = _positive_int("elites", min(d.elites, self.samples) if elites is None else elites)
        self.repeat = _positive_int("repeat", d.repeat if repeat is None else repeat)
        if info.chunk_size > 0 and self.horizon % info.chunk_size:
            raise InputValidationError(
                f"horizon={self.horizon} is not a multiple of {info.slug}'s chunk_size={info.chunk_size}"
            )
        if self.horizon % self.repeat:
            raise InputValidationError(f"horizon={self.horizon} is not a multiple of repeat={self.repeat}")
        if self.elites > self.samples:
            raise InputValidationError(f"elites={self.elites} > samples={self.samples}; elites are chosen among the samples")
        self.init_std = _positive_float("init_std", d.init_std if init_std is None else init_std)
        self.warm_std = _positive_float("warm_std", d.warm_std if warm_std is None else warm_std)
        self.min_std = _positive_float("min_std", d.min_std if min_std is None else min_std)
        self.broad = float(d.broad if broad is None else broad)
        if not 0.0 <= self.broad < 1.0:
            raise InputValidationError(f"broad must be in [0, 1); got {broad!r}")
        self.patience = d.patience if patience is None else patience
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise InputValidationError(f"patience must be an int >= 0 (0: never restart); got {patience!r}")
        self.max_knot_step = None if max_knot_step is None else _positive_float("max_knot_step", max_knot_step)
        from dream.engine.engine import validate_seed

        self.seed = validate_seed(seed)
        self.cost = cost
        if isinstance(cost, GoalImageCost):
            cost.bind(info.resolution, info.runner, stride=self.repeat)
        self.info = info
        self.knots = self.horizon // self.repeat
        self.last: PlanResult | None = None
        self._calls = 0
        self._warm: np.ndarray | None = None  # knots of the last plan, shifted by what was executed
        self._last_cost: float | None = None  # the last plan's predicted cost
        self._stalled = 0  # warm-started plans in a row that did not improve on the one before
        self._origin: np.ndarray | None = None  # where the first knot's step is measured from

    # ------------------------------------------------------------------ public

    def reset(self) -> None:
        """Forget the last plan (no warm start) and restart the random stream."""
        self._calls = 0
        self._warm = None
        self._last_cost = None
        self._stalled = 0
        self.last = None

    def shift(self, executed: int) -> None:
        """`executed` actions of the last plan were carried out: the next plan starts from the rest."""
        if self._warm is None:
            return
        executed = int(executed)
        if executed < 0:
            raise InputValidationError(f"executed must be >= 0; got {executed}")
        seq = np.repeat(self._warm, self.repeat, axis=0)
        seq = np.concatenate([seq[executed:], np.repeat(seq[-1:], min(executed, self.horizon), axis=0)])[: self.horizon]
        self._warm = seq[:: self.repeat].copy()

    def plan(self, frame: Any) -> np.ndarray:
        """The best plan from `frame`: float32 (horizon, action_dim). Details in `self.last`."""
        from dream.inputs import fit_frame, frame_to_array

        start = fit_frame(frame_to_array(frame, what="frame"), self.info.resolution)
        rng = np.random.default_rng([self.seed, self._calls])
        self._calls += 1
        t0 = time.perf_counter()
        engine0 = self.imagination.engine_s
        self._origin = self.initial_action(start) if self.max_knot_step is not None else None
        with one_blas_thread():
            search = self._start(start)
            rollouts = 0
            for it in range(self.iterations):
                knots = self._sample(search, rng, it)
                actions = self._actions(knots)
                costs = self.imagination.costs(start, actions, self.cost)
                rollouts += len(knots)
                i = int(np.argmin(costs))
                if costs[i] < search.best_cost:
                    search.best_cost, search.best = float(costs[i]), knots[i].copy()
                search.history.append(search.best_cost)
                self._refit(search, knots, costs)
        assert search.best is not None
        if search.warm and self._last_cost is not None and search.best_cost > self._last_cost - self.defaults.progress:
            self._stalled += 1
        else:
            self._stalled = 0
        self._last_cost = search.best_cost
        self._warm = search.best.copy()
        wall = time.perf_counter() - t0
        best = self._actions(search.best[None])[0].astype(np.float32)
        imagination = self.imagination
        self.last = PlanResult(best, search.best_cost, rollouts, self.iterations, wall, imagination.engine_s - engine0,
                               search.best.copy(), search.history, lambda: imagination.frames(start, best))
        return best.copy()

    # ------------------------------------------------------------------ search

    def initial_action(self, frame: np.ndarray) -> np.ndarray:
        """The knot a first plan is centred on: for Push-T the agent's position read off `frame`
        (stay where you are), else the middle of the action bounds (or zeros)."""
        a = self.info.action_dim
        if self.info.runner == "pusht" and a == 2:
            from dream.engine.models.pusht.posefit import read_scene

            agent = read_scene(frame).agent[0]
            if np.isfinite(agent).all():
                return agent.astype(np.float64)
        if self.info.action_low is not None and self.info.action_high is not None:
            return np.full(a, (self.info.action_low + self.info.action_high) / 2.0)
        return np.zeros(a)

    def _start(self, frame: np.ndarray) -> _Search:
        a = self.info.action_dim
        if self._warm is not None and self.patience and self._stalled >= self.patience:
            # stuck in a local minimum: search as widely as a first plan does, around the last plan
            self._stalled = 0
            return _Search(self._warm.copy(), np.full((self.knots, a), self.init_std), False)
        if self._warm is not None:
            return _Search(self._warm.copy(), np.full((self.knots, a), self.warm_std), True)
        mean = np.broadcast_to(self.initial_action(frame), (self.knots, a)).astype(np.float64).copy()
        return _Search(mean, np.full((self.knots, a), self.init_std), False)

    def _clip(self, knots: np.ndarray) -> np.ndarray:
        lo, hi = self.info.action_low, self.info.action_high
        if self.max_knot_step is not None and self._origin is not None:
            # each knot at most max_knot_step (Euclidean, action units) from the one before, the
            # first from the start's natural action: slower moves, which a model may predict better
            prev = np.broadcast_to(self._origin, knots[:, 0].shape)
            out = knots.copy()
            for j in range(knots.shape[1]):
                step = out[:, j] - prev
                norm = np.sqrt((step**2).sum(-1, keepdims=True))
                out[:, j] = prev + step * np.minimum(1.0, self.max_knot_step / np.maximum(norm, 1e-12))
                prev = out[:, j]
            knots = out
        if lo is not None or hi is not None:
            knots = np.clip(knots, lo, hi)
        return knots

    def _sample(self, search: _Search, rng: np.random.Generator, it: int) -> np.ndarray:
        k = self.samples
        noise = rng.standard_normal((k, self.knots, self.info.action_dim))
        knots = search.mean + search.std * noise
        if it == 0 and self.broad > 0:
            wide = round(self.broad * k)
            if wide:
                knots[k - wide :] = search.mean + 2.0 * np.maximum(search.std, self.init_std) * noise[k - wide :]
        knots[0] = search.mean
        if search.elites is not None:
            keep = min(len(search.elites), k - 1)
            knots[1 : 1 + keep] = search.elites[:keep]
        return self._clip(knots)

    def _actions(self, knots: np.ndarray) -> np.ndarray:
        return np.repeat(knots, self.repeat, axis=1).astype(np.float32)

    def _refit(self, search: _Search, knots: np.ndarray, costs: np.ndarray) -> None:
        raise NotImplementedError


class CEM(Planner):
    """The cross-entropy method: refit to the `elites` cheapest samples (see the module docstring).

    Args:
        model: a model handle (``client.models.get(slug)``, embedded or over HTTP), an
            `Engine`, or a `SimulatorModel`.
        cost: ``cost(frames (K, T + 1, H, W, 3) uint8) -> (K,)`` floats, e.g. `goal_image_cost`.
        horizon, samples, iterations, elites: None takes the spec's default (`DEFAULTS`).
        seed: the random stream (a plan is deterministic for a seed).
        repeat: actions per knot; init_std, warm_std, min_std: knot spreads (action units);
        broad: share of the first iteration's samples drawn twice as wide.
        patience: warm-started plans without progress before a plan searches as widely as a
            first one (0: never).
        max_knot_step: if set, each knot at most this far (action units) from the one before,
            the first from the start's natural action (slower moves; off by default).
        fast: False sends an embedded handle through ``predict_batch`` (mp4) like a remote one.
    """

    def _refit(self, search: _Search, knots: np.ndarray, costs: np.ndarray) -> None:
        order = np.argsort(costs, kind="stable")[: self.elites]
        elites = knots[order]
        search.elites = elites
        search.mean = elites.mean(0)
        search.std = np.maximum(elites.std(0), self.min_std)


class MPPI(Planner):
    """Model-predictive path integral: refit to all samples weighted by ``exp(−(c − min) / temperature)``.

    Arguments as `CEM`, plus `temperature` (cost units; None: the spec's default). `elites`
    here is how many of the cheapest samples are carried into the next iteration.
    """

    def __init__(self, model: Any, cost: Callable[[np.ndarray], Any], *, temperature: float | None = None,
                 **options: Any) -> None:
        super().__init__(model, cost, **options)
        self.temperature = _positive_float("temperature", self.defaults.temperature if temperature is None else temperature)

    def _refit(self, search: _Search, knots: np.ndarray, costs: np.ndarray) -> None:
        w = np.exp(-(costs - costs.min()) / self.temperature)
        w /= w.sum()
        search.mean = np.einsum("k,kna->na", w, knots)
        var = np.einsum("k,kna->na", w, (knots - search.mean) ** 2)
        search.std = np.maximum(np.sqrt(var), self.min_std)
        search.elites = knots[np.argsort(costs, kind="stable")[: self.elites]]
