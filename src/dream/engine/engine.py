"""The Engine: validate → seed → run the spec's runner → uint8 frames (→ mp4).

Numpy in, numpy out (DESIGN decision 2). The engine owns its loaded runners, runs all
model work (loading, warm-up, rollouts) on one thread of its own, picks device and
dtype, and refuses bad inputs with `InputValidationError` before any model work. It knows nothing of HTTP, billing or
datasets; the client's local transport and the server both sit on top of it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from dream.engine import specs as spec_registry
from dream.engine.runner import Runner, WeightsStatus, runner_class
from dream.engine.specs import DEFAULT_SPEC, EngineSpec
from dream.engine.threads import check_threads, prepare_torch_env, set_torch_threads
from dream.errors import EngineError, InputValidationError, ModelNotFoundError, WeightsNotFoundError
from dream.inputs import check_actions, fit_frame

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

MAX_NUM_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_SEED = 2**63 - 1
MAX_BATCH = 256
# Rollouts one `Engine.begin` may carry: frames are drawn only on request, so the bound is
# what a caller may reasonably hold at once (a planner's candidates), not frame memory.
MAX_STEPPED = 4096

MAX_COALESCED = 32  # rows fused into one coalesced call at most

_T = TypeVar("_T")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _outside_dream() -> int:
    """The `stacklevel` of the nearest caller outside the dream package (for warnings)."""
    import sys

    frame = sys._getframe(1)  # the function that will call warnings.warn: level 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


@dataclass(frozen=True)
class EngineResult:
    """What one engine call produced: frames plus the parameters actually used."""

    spec: EngineSpec
    frames: np.ndarray  # uint8 (K, T + 1, H, W, 3)
    wall_ms: float  # runner wall time (the fused forward), encoding excluded
    num_steps: int | None  # effective value; None when the spec has no sampler steps
    guidance: float | None
    seeds: tuple[int, ...]
    warnings: tuple[str, ...] = field(default=())
    fused: int = 1  # rollouts that shared the engine call (coalesced predicts: wall_ms is the call's)

    @property
    def k(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])

    def cost_usd(self) -> float:
        """Charge for every rollout in this result at the spec's price."""
        return self.spec.cost_usd(self.num_frames - 1, k=self.k)


class _Group:
    """Concurrent predicts waiting to run as one fused call (Engine._coalesced)."""

    def __init__(self) -> None:
        self.items: list[tuple[np.ndarray, np.ndarray, object]] = []
        self.done = threading.Event()
        self.results: list[EngineResult] | None = None
        self.errors: list[BaseException | None] | None = None


class RolloutStream:
    """K rollouts being computed chunk by chunk (`Engine.stream`).

    ``next_chunk`` runs the next chunk on the engine's model thread and returns it as
    uint8 (K, n, H, W, 3), or None once all T + 1 frames have come; ``close`` stops it
    early. Chunks arrive in order; frame 0 (the start frames) comes first, alone.
    """

    def __init__(self, engine: Engine, spec: EngineSpec, chunks: Iterator[np.ndarray], k: int, T: int) -> None:
        self.engine = engine
        self.spec = spec
        self.k = k
        self.num_frames = T + 1  # per rollout
        self.frames_done = 0
        self.wall_ms = 0.0  # model-thread time so far
        self._chunks = chunks

    @property
    def done(self) -> bool:
        return self.frames_done >= self.num_frames

    def next_chunk(self) -> np.ndarray | None:
        if self.done:
            return None

        def step() -> np.ndarray:
            t0 = time.perf_counter()
            try:
                chunk = next(self._chunks)
            except StopIteration:
                raise EngineError(
                    f"{self.spec.slug} runner stopped after {self.frames_done} of {self.num_frames} frames"
                ) from None
            except (InputValidationError, EngineError):
                raise
            except Exception as exc:
                raise EngineError(f"{self.spec.slug} rollout failed: {type(exc).__name__}: {exc}") from exc
            finally:
                self.wall_ms += (time.perf_counter() - t0) * 1000.0
            return chunk

        chunk = self.engine.on_engine_thread(step)
        h, w = self.spec.resolution
        n = int(chunk.shape[1]) if chunk.ndim == 5 else -1
        if tuple(chunk.shape) != (self.k, n, h, w, 3) or n < 1 or self.frames_done + n > self.num_frames:
            raise EngineError(f"{self.spec.slug} runner yielded a chunk of shape {tuple(chunk.shape)} after "
                              f"{self.frames_done} of {self.num_frames} frames of K={self.k} rollouts")
        self.frames_done += n
        return chunk

    def close(self) -> None:
        """Stop computing (the generator is closed on the model thread)."""
        chunks, self._chunks = self._chunks, iter(())
        close = getattr(chunks, "close", None)
        if close is not None:
            self.engine.on_engine_thread(close)


class SteppedRollouts:
    """K rollouts carried forward a few actions at a time (`Engine.begin`).

    For closed loops: a policy that acts on each predicted frame, a planner that reads
    only some frames, a streaming session. ``advance(actions, draw=...)`` applies the
    next n actions (K, n, action_dim) to every rollout and returns the frames asked for;
    ``readout()`` gives the scene the model holds, where its family has one. For families
    that step incrementally (``incremental``), each call costs the new actions only and
    the frames equal one `predict` of all the actions so far, byte for byte; the others
    condition each call on the previous call's last frame.
    """

    def __init__(self, engine: Engine, spec: EngineSpec, runner: Runner, state: object, k: int) -> None:
        self.engine = engine
        self.spec = spec
        self.k = k
        self.incremental = bool(getattr(runner, "steps_incrementally", False))
        self.actions_done = 0  # per rollout (since `begin`; a restarted rollout has had fewer)
        self.wall_ms = 0.0  # model-thread time so far
        self._runner = runner
        self._state = state

    def advance(self, actions: np.ndarray, *, draw: bool | Sequence[int] = True) -> np.ndarray | None:
        """Apply actions (K, n, action_dim) (n a positive multiple of the spec's chunk_size, finite).

        draw: True for all n new frames, indices in 0..n-1 for those only, False for none.
        Returns uint8 (K, len(drawn), H, W, 3), or None when nothing is drawn.
        """

        checked = self._check(actions)
        n = checked.shape[1]
        if draw is not True and draw is not False:
            draw = [int(i) for i in draw]
            bad = [i for i in draw if not 0 <= i < n]
            if bad:
                raise InputValidationError(f"draw indices must lie in 0..{n - 1} for n={n} actions; got {bad}")

        def run() -> np.ndarray | None:
            t0 = time.perf_counter()
            try:
                return self._runner.advance(self._state, checked, draw=draw)
            except (InputValidationError, EngineError):
                raise
            except Exception as exc:
                raise EngineError(f"{self.spec.slug} rollout failed: {type(exc).__name__}: {exc}") from exc
            finally:
                self.wall_ms += (time.perf_counter() - t0) * 1000.0

        out = self.engine.on_engine_thread(run)
        self.actions_done += n
        if out is not None:
            drawn = n if draw is True else len(draw) if draw is not False else 0
            expected = (self.k, drawn, *self.spec.resolution, 3)
            if tuple(out.shape) != expected:
                raise EngineError(f"{self.spec.slug} runner drew frames of shape {tuple(out.shape)}; expected {expected}")
        return out

    def _check(self, actions: np.ndarray) -> np.ndarray:
        """Actions as float32 (K, n, A), checked as `predict` checks them, all K rows at once."""
        import numpy as np

        a_dim, chunk = self.spec.action_dim, self.spec.chunk_size
        arr = np.asarray(actions)
        if arr.ndim != 3 or arr.shape[0] != self.k or arr.shape[2] != a_dim:
            raise InputValidationError(f"actions for advance must be (K={self.k}, n, {a_dim}); got shape {tuple(arr.shape)}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise InputValidationError(f"actions must be numeric; got dtype {arr.dtype}")
        n = arr.shape[1]
        if n == 0 or n % chunk:
            raise InputValidationError(f"advance takes a positive multiple of the chunk_size={chunk} actions; got n={n}")
        out = np.ascontiguousarray(arr, np.float32)
        bad = ~np.isfinite(out)
        if bad.any():
            k, t, d = (int(i) for i in np.argwhere(bad)[0])
            raise InputValidationError(
                f"actions contain {int(bad.sum())} non-finite value(s) (NaN or inf); first at [k={k}, t={t}, dim={d}]: {out[k, t, d]}"
            )
        return out

    def readout(self) -> dict[str, np.ndarray] | None:
        """The scene the model holds now (named arrays with a leading K), or None for a family without one."""
        return self.engine.on_engine_thread(self._runner.readout, self._state)

    def restart(self, rows: Sequence[int], frames: np.ndarray) -> None:
        """Start rollouts `rows` again from new start frames, the others carrying on as they are.

        frames: one uint8 (H, W, 3) frame for every row in `rows`, or (len(rows), H, W, 3);
        each is fitted to the spec's resolution like any start frame. A restarted rollout
        steps from then on exactly as a fresh `Engine.begin` from its frame would (what a
        vectorised environment needs when one of its episodes ends and the others go on).
        """
        import numpy as np

        picked = [int(r) for r in rows]
        bad = [r for r in picked if not 0 <= r < self.k]
        if not picked or bad or len(set(picked)) != len(picked):
            raise InputValidationError(
                f"rows to restart must be distinct indices in 0..{self.k - 1}; got {list(rows)!r}"
            )
        arr = np.asarray(frames)
        stacked = arr[None] if arr.ndim == 3 else arr
        if stacked.ndim != 4 or len(stacked) not in (1, len(picked)):
            raise InputValidationError(
                f"start frames for {len(picked)} restarted rollout(s) must be (H, W, 3) or ({len(picked)}, H, W, 3); "
                f"got shape {tuple(arr.shape)}"
            )
        fitted = np.stack([self.engine.prepare_frame(self.spec, f) for f in stacked])
        fitted = np.broadcast_to(fitted, (len(picked), *fitted.shape[1:])).copy()

        def run() -> None:
            t0 = time.perf_counter()
            try:
                self._runner.restart(self._state, picked, fitted)
            except (InputValidationError, EngineError):
                raise
            except Exception as exc:
                raise EngineError(f"{self.spec.slug} restart failed: {type(exc).__name__}: {exc}") from exc
            finally:
                self.wall_ms += (time.perf_counter() - t0) * 1000.0

        self.engine.on_engine_thread(run)


def validate_num_steps(num_steps: object) -> int | None:
    """None or an int in [1, MAX_NUM_STEPS]; IVE naming the value otherwise."""
    if num_steps is None:
        return None
    if isinstance(num_steps, bool) or not isinstance(num_steps, int):
        try:
            as_float = float(num_steps)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputValidationError(f"num_steps must be an integer; got {num_steps!r}") from None
        if not as_float.is_integer():
            raise InputValidationError(f"num_steps must be an integer; got {num_steps!r}")
        num_steps = int(as_float)
    if not 1 <= num_steps <= MAX_NUM_STEPS:
        raise InputValidationError(f"num_steps must be between 1 and {MAX_NUM_STEPS}; got {num_steps}")
    return num_steps


def validate_guidance(guidance: object) -> float | None:
    """None or a finite float in [0, MAX_GUIDANCE]; IVE naming the value otherwise."""
    if guidance is None:
        return None
    try:
        g = float(guidance)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputValidationError(f"guidance must be a number; got {guidance!r}") from None
    if isinstance(guidance, bool) or not math.isfinite(g) or not 0.0 <= g <= MAX_GUIDANCE:
        raise InputValidationError(f"guidance must be a finite number between 0 and {MAX_GUIDANCE}; got {guidance!r}")
    return g


def validate_seed(seed: object) -> int:
    """An int in [0, 2**63 - 1]; IVE naming the value otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        try:
            as_float = float(seed)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputValidationError(f"seed must be an integer; got {seed!r}") from None
        if not as_float.is_integer():
            raise InputValidationError(f"seed must be an integer; got {seed!r}")
        seed = int(as_float)
    if not 0 <= seed <= MAX_SEED:
        raise InputValidationError(f"seed must be between 0 and 2**63-1; got {seed}")
    return seed


class Engine:
    """Loads specs' runners on demand and runs validated rollouts.

    Model work runs on one long-lived thread per engine, whichever threads call it:
    torch's CPU thread pool belongs to the OS thread that uses it, and two threads
    using torch each keep a pool that fights the other for the cores (measured here:
    a pusht-96 rollout 1.7× slower once a second thread had run one). Callers block
    until their call is done; calls run one at a time.

    Args:
        specs: slugs this engine serves (default: every registered spec; the first is
            the default model). Unknown slugs raise `ModelNotFoundError`.
        device: "cpu", "cuda", "cuda:1"…; None picks CUDA when available.
        dtype: runner dtype override ("float32", "bfloat16"); None: the family default.
        threads: torch CPU threads; None: the CPUs this process may use (affinity and
            cgroup quota; `dream.engine.threads`). OpenMP is set to sleep, not spin,
            while it waits, unless torch was imported first or ``OMP_WAIT_POLICY`` is set.
        weights: per-slug weights file or folder overrides.
        coalesce: concurrent `predict` calls with the same spec, length and sampling
            parameters run as one fused call. None: for batch-invariant runners
            (`Runner.batch_invariant`, whose fused rows are byte-identical to single
            ones) on an accelerator, not on CPU, where fusing measured no real gain;
            True: for every runner, on any device; False: never.
    """

    def __init__(
        self,
        specs: Iterable[str] | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        threads: int | None = None,
        weights: Mapping[str, str] | None = None,
        coalesce: bool | None = None,
    ) -> None:
        slugs = list(specs) if specs is not None else [s.slug for s in spec_registry.all_specs()]
        if not slugs:
            raise ValueError("an Engine needs at least one spec")
        self._specs: dict[str, EngineSpec] = {}
        for slug in slugs:
            self._specs[slug] = self._lookup(slug)
        self.default_slug = DEFAULT_SPEC if DEFAULT_SPEC in self._specs else slugs[0]
        self._device = device
        self.dtype = dtype
        self.threads = check_threads(threads)
        prepare_torch_env()
        self._weights = dict(weights or {})
        self._runners: dict[str, Runner] = {}
        self._load_lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None
        self._worker_lock = threading.Lock()
        self._worker_ident: int | None = None
        self._worker_pid = 0
        self._ms_per_frame: dict[str, float] = {}  # single-rollout wall per output frame, smoothed
        if coalesce is not None and not isinstance(coalesce, bool):
            raise ValueError(f"coalesce must be None, True or False; got {coalesce!r}")
        self.coalesce = coalesce
        self._groups: dict[tuple, _Group] = {}  # open coalescing groups by key
        self._groups_lock = threading.Lock()
        self._coalesce_run = threading.Lock()  # held by the group whose fused call runs

    # ----------------------------------------------------------------- catalog

    @staticmethod
    def _lookup(slug: str) -> EngineSpec:
        try:
            return spec_registry.get(slug)
        except KeyError as exc:
            raise ModelNotFoundError(str(exc.args[0])) from None

    @property
    def slugs(self) -> list[str]:
        return list(self._specs)

    def spec(self, slug: str | None = None) -> EngineSpec:
        """The spec of `slug` (default model when None); ModelNotFoundError if not served."""
        slug = slug or self.default_slug
        if slug not in self._specs:
            raise ModelNotFoundError(f"model {slug!r} is not served here; served: {', '.join(self._specs)}")
        return self._specs[slug]

    def weights_status(self, slug: str) -> WeightsStatus:
        """Whether `slug` can run here (weights present), without loading it."""
        spec = self.spec(slug)
        if slug in self._runners:
            return WeightsStatus(True, location=self._weights.get(slug, ""))
        try:
            return runner_class(spec.runner).weights_status(spec, self._weights.get(slug))
        except ImportError as exc:
            return WeightsStatus(False, f"{slug} needs a dependency that is not installed: {exc}")

    def is_active(self, slug: str) -> bool:
        return self.weights_status(slug).available

    @property
    def device(self) -> str:
        if self._device is None:
            prepare_torch_env()
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    # ----------------------------------------------------------------- loading

    def runner(self, slug: str | None = None) -> Runner:
        """The loaded runner of `slug`, loading and warming it up on first use."""
        spec = self.spec(slug)
        runner = self._runners.get(spec.slug)
        if runner is not None:
            return runner
        with self._load_lock:
            runner = self._runners.get(spec.slug)
            if runner is None:
                runner = self.on_engine_thread(self._load, spec)
                self._runners[spec.slug] = runner
        return runner

    def on_engine_thread(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run ``fn(*args)`` on the engine's model thread and return (or raise) its result."""
        if threading.get_ident() == self._worker_ident:
            return fn(*args)
        with self._worker_lock:
            # A forked child inherits the executor object but not its thread: start anew.
            if self._worker is None or self._worker_pid != os.getpid():
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="dream-engine")
                self._worker_ident = self._worker.submit(threading.get_ident).result()
                self._worker_pid = os.getpid()
            worker = self._worker
        return worker.submit(fn, *args).result()

    def close(self) -> None:
        """Stop the model thread (the engine starts a new one if used again)."""
        with self._worker_lock:
            worker, self._worker, self._worker_ident = self._worker, None, None
        if worker is not None:
            worker.shutdown(wait=True)

    def _load(self, spec: EngineSpec) -> Runner:
        status = self.weights_status(spec.slug)
        if not status.available:
            raise WeightsNotFoundError(status.message or f"weights for {spec.slug} are not available")
        cls = runner_class(spec.runner)
        if cls.uses_torch:
            import torch

            set_torch_threads(self.threads)
            device = self.device
            if device.startswith("cuda"):
                torch.backends.cudnn.benchmark = False
                torch.backends.cudnn.deterministic = True
        else:
            device = "cpu"
        t0 = time.perf_counter()
        runner = cls(spec, device=device, dtype=self.dtype, weights=self._weights.get(spec.slug))
        try:
            runner.load()
            runner.warmup()
        except (WeightsNotFoundError, EngineError):
            raise
        except Exception as exc:
            raise EngineError(f"loading {spec.slug} on {device} failed: {exc}") from exc
        logger.info("loaded %s on %s in %.2fs", spec.slug, device, time.perf_counter() - t0)
        return runner

    def load(self, slug: str | None = None) -> None:
        """Load (and warm up) `slug` now instead of on the first request."""
        self.runner(slug)

    def is_loaded(self, slug: str) -> bool:
        return slug in self._runners

    # ----------------------------------------------------------------- inference

    def check_params(
        self, spec: EngineSpec, num_steps: object, guidance: object, seeds: Sequence[object]
    ) -> tuple[int | None, float | None, tuple[int, ...], tuple[str, ...]]:
        """Validate sampling knobs; warn about knobs this spec ignores."""
        steps = validate_num_steps(num_steps)
        g = validate_guidance(guidance)
        seed_values = tuple(validate_seed(s) for s in seeds)
        notes: list[str] = []
        if steps is not None and not spec.uses_num_steps:
            notes.append(f"{spec.slug} has no sampler steps; num_steps={steps} has no effect")
        if g is not None and not spec.uses_guidance:
            notes.append(f"{spec.slug} has no guidance; guidance={g} has no effect")
        if any(seed_values) and not spec.uses_seed:
            notes.append(f"{spec.slug} is deterministic; seed={seed_values[0]} has no effect")
        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=_outside_dream())
        if spec.uses_num_steps and steps is None and spec.default_num_steps:
            steps = spec.default_num_steps
        if spec.uses_guidance and g is None:
            g = spec.default_guidance
        return (steps if spec.uses_num_steps else None), (g if spec.uses_guidance else None), seed_values, tuple(notes)

    def prepare_frame(self, spec: EngineSpec, frame: np.ndarray) -> np.ndarray:
        """Validate a uint8 (H, W, 3) frame and fit it to the spec's resolution."""
        import numpy as np

        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputValidationError(
                "start_frame must be uint8 (H, W, 3) at the engine; got "
                f"{getattr(frame, 'dtype', type(frame).__name__)} {tuple(getattr(frame, 'shape', ()))}"
            )
        return fit_frame(frame, spec.resolution)

    def prepare_actions(self, spec: EngineSpec, actions: np.ndarray, what: str = "actions") -> np.ndarray:
        """Validate float (T, A) actions against the spec; float32 out."""
        return check_actions(actions, action_dim=spec.action_dim, chunk_size=spec.chunk_size, what=what)

    def predict(
        self,
        frame: np.ndarray,
        actions: np.ndarray,
        *,
        spec: str | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
    ) -> EngineResult:
        """One rollout: uint8 (H, W, 3) + float (T, A) → frames (1, T + 1, H', W', 3).

        Calls from several threads may be fused into one engine call (`coalesce`); each
        gets its own row, the same bytes it would get alone for a batch-invariant runner.
        """
        s = self.spec(spec)
        frame = self.prepare_frame(s, frame)
        acts = self.prepare_actions(s, actions)
        if self.coalesces(s.slug):
            return self._coalesced(s, frame, acts, seed, num_steps, guidance)
        return self._run(s, frame[None], acts[None], [seed], num_steps, guidance)

    def batch_invariant(self, slug: str | None = None) -> bool:
        """Whether `slug`'s runner declares its rows' bytes independent of their batch."""
        spec = self.spec(slug)
        runner = self._runners.get(spec.slug)
        cls = type(runner) if runner is not None else runner_class(spec.runner)
        return bool(getattr(cls, "batch_invariant", False))

    def coalesces(self, slug: str | None = None) -> bool:
        """Whether concurrent `predict` calls of `slug` are fused (see `coalesce`)."""
        if self.coalesce is not None:
            return self.coalesce
        # On CPU the fused call bought little or nothing over single calls (bench/bulk_overhead.py
        # --fusion on a shared 2-core VM: 0.84-1.2x), so by default only accelerators fuse.
        return self.batch_invariant(slug) and not self.runner(slug).device.startswith("cpu")

    def _coalesced(
        self, spec: EngineSpec, frame: np.ndarray, acts: np.ndarray, seed: object, num_steps: object, guidance: object
    ) -> EngineResult:
        # The first caller of a key leads its group: it waits for the engine to be free
        # (the previous group's call), and every caller that arrives meanwhile joins.
        key = (spec.slug, acts.shape[0], num_steps, guidance)
        with self._groups_lock:
            group = self._groups.get(key)
            leader = group is None
            if leader:
                group = self._groups[key] = _Group()
            index = len(group.items)
            group.items.append((frame, acts, seed))
            if len(group.items) >= MAX_COALESCED:
                self._groups.pop(key, None)  # full: later callers start a new group
        if leader:
            with self._coalesce_run:
                with self._groups_lock:
                    if self._groups.get(key) is group:
                        del self._groups[key]
                self._run_group(spec, group, num_steps, guidance)
        else:
            group.done.wait()
        if group.errors is not None:
            error = group.errors[index]
            if error is not None:
                raise error
        assert group.results is not None
        return group.results[index]

    def _run_group(self, spec: EngineSpec, group: _Group, num_steps: object, guidance: object) -> None:
        import numpy as np

        items = group.items
        try:
            if len(items) == 1:
                frame, acts, seed = items[0]
                group.results = [self._run(spec, frame[None], acts[None], [seed], num_steps, guidance)]
                return
            try:
                fused = self._run(
                    spec, np.stack([f for f, _, _ in items]), np.stack([a for _, a, _ in items]),
                    [s for _, _, s in items], num_steps, guidance,
                )
            except Exception:
                # One bad row must not fail its neighbours: run them one by one.
                results: list[EngineResult | None] = []
                errors: list[BaseException | None] = []
                for frame, acts, seed in items:
                    try:
                        results.append(self._run(spec, frame[None], acts[None], [seed], num_steps, guidance))
                        errors.append(None)
                    except Exception as exc:
                        results.append(None)
                        errors.append(exc)
                group.results, group.errors = results, errors  # type: ignore[assignment]
                return
            group.results = [
                EngineResult(fused.spec, fused.frames[k : k + 1], fused.wall_ms, fused.num_steps, fused.guidance,
                             (fused.seeds[k],), fused.warnings, fused=len(items))
                for k in range(len(items))
            ]
        except BaseException as exc:
            group.errors = [exc] * len(items)
        finally:
            group.done.set()

    def predict_batch(
        self,
        frame: np.ndarray,
        actions: np.ndarray,
        *,
        spec: str | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
    ) -> EngineResult:
        """K candidates from one start frame, fused: (H, W, 3) + (K, T, A) → (K, T + 1, H', W', 3).

        Every candidate uses `seed`, so candidates differ only by their actions (common
        random numbers: what visual MPC wants when ranking plans).
        """
        import numpy as np

        s = self.spec(spec)
        frame = self.prepare_frame(s, frame)
        if not isinstance(actions, np.ndarray) or actions.ndim != 3:
            raise InputValidationError(
                f"actions for predict_batch must be 3-D (K, T, action_dim); got shape {tuple(getattr(actions, 'shape', ()))}"
            )
        if actions.shape[0] == 0:
            raise InputValidationError("actions has K=0 rollouts; need at least one.")
        if actions.shape[0] > MAX_BATCH:
            raise InputValidationError(f"predict_batch takes at most K={MAX_BATCH} candidates; got K={actions.shape[0]}")
        acts = np.stack([self.prepare_actions(s, a, f"actions[{k}]") for k, a in enumerate(actions)])
        return self._run(s, frame[None], acts, [seed] * acts.shape[0], num_steps, guidance)

    def predict_fused(
        self,
        frames: Sequence[np.ndarray],
        actions: Sequence[np.ndarray],
        *,
        spec: str | None = None,
        seeds: Sequence[int],
        num_steps: int | None = None,
        guidance: float | None = None,
    ) -> EngineResult:
        """K independent rollouts (own frame, actions and seed each) in one fused forward.

        Used by dynamic batching; every rollout's output equals what `predict` gives it
        alone (per-rollout noise generators), up to floating-point batch effects.
        """
        import numpy as np

        s = self.spec(spec)
        if not (len(frames) == len(actions) == len(seeds)) or not frames:
            raise ValueError(f"predict_fused needs K frames, actions and seeds; got {len(frames)}, {len(actions)}, {len(seeds)}")
        fitted = np.stack([self.prepare_frame(s, f) for f in frames])
        acts = [self.prepare_actions(s, a, f"actions[{k}]") for k, a in enumerate(actions)]
        if len({a.shape[0] for a in acts}) > 1:
            raise ValueError("predict_fused needs equal T across rollouts")
        return self._run(s, fitted, np.stack(acts), list(seeds), num_steps, guidance)

    def _run(
        self,
        spec: EngineSpec,
        frames: np.ndarray,
        actions: np.ndarray,
        seeds: Sequence[object],
        num_steps: object,
        guidance: object,
    ) -> EngineResult:
        steps, g, seed_values, notes = self.check_params(spec, num_steps, guidance, seeds)
        runner = self.runner(spec.slug)

        def run() -> tuple[np.ndarray, float]:
            t0 = time.perf_counter()
            try:
                frames_out = runner.rollout(frames, actions, seeds=seed_values, num_steps=steps, guidance=g)
            except (InputValidationError, EngineError):
                raise
            except Exception as exc:
                raise EngineError(f"{spec.slug} rollout failed: {type(exc).__name__}: {exc}") from exc
            return frames_out, (time.perf_counter() - t0) * 1000.0

        out, wall_ms = self.on_engine_thread(run)
        if actions.shape[0] == 1:
            per_frame = wall_ms / (actions.shape[1] + 1)
            prev = self._ms_per_frame.get(spec.slug)
            self._ms_per_frame[spec.slug] = per_frame if prev is None else 0.8 * prev + 0.2 * per_frame
        expected = (actions.shape[0], actions.shape[1] + 1, *spec.resolution, 3)
        if tuple(out.shape) != expected:
            raise EngineError(f"{spec.slug} runner returned shape {tuple(out.shape)}; expected {expected}")
        return EngineResult(spec, out, wall_ms, steps, g, seed_values, notes)

    def begin(
        self,
        frames: np.ndarray,
        *,
        k: int | None = None,
        spec: str | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
        seeds: Sequence[int] | None = None,
        exact: bool = True,
    ) -> SteppedRollouts:
        """Start K rollouts to be advanced step by step (`SteppedRollouts`).

        frames: one uint8 (H, W, 3) start frame shared by all K rollouts, or (K, H, W, 3);
        each is fitted to the spec's resolution like any start frame. k defaults to the
        number of frames; seeds (one per rollout) default to 0. exact=False lets a runner
        that can trade bitwise batch invariance for speed do so (pusht-96: results within
        float rounding of the exact ones; a planner's candidates); others ignore it.
        """
        import numpy as np

        s = self.spec(spec)
        arr = np.asarray(frames)
        stacked = arr[None] if arr.ndim == 3 else arr
        if stacked.ndim != 4:
            raise InputValidationError(f"start frames must be (H, W, 3) or (K, H, W, 3); got shape {tuple(arr.shape)}")
        fitted = np.stack([self.prepare_frame(s, f) for f in stacked])
        k = len(fitted) if k is None else k
        if not isinstance(k, int) or k < 1 or k > MAX_STEPPED:
            raise InputValidationError(f"k must be an int in 1..{MAX_STEPPED}; got {k!r}")
        if len(fitted) not in (1, k):
            raise InputValidationError(f"got {len(fitted)} start frames for k={k} rollouts; give 1 or {k}")
        steps, g, seed_values, _ = self.check_params(s, num_steps, guidance, list(seeds) if seeds is not None else [0] * k)
        if len(seed_values) != k:
            raise InputValidationError(f"got {len(seed_values)} seeds for k={k} rollouts")
        runner = self.runner(s.slug)
        state = self.on_engine_thread(
            lambda: runner.begin(fitted, k, seeds=seed_values, num_steps=steps, guidance=g)
        )
        if not exact and hasattr(runner, "inexact"):
            runner.inexact(state)
        return SteppedRollouts(self, s, runner, state, k)

    def stream(
        self,
        frames: Sequence[np.ndarray],
        actions: np.ndarray,
        *,
        spec: str | None = None,
        seeds: Sequence[int],
        num_steps: int | None = None,
        guidance: float | None = None,
        chunk_frames: int = 64,
    ) -> RolloutStream:
        """K rollouts computed a chunk at a time: 1 or K start frames + (K, T, A) actions.

        Validates like `predict_batch` / `predict_fused`, then returns a `RolloutStream`
        whose ``next_chunk`` runs one chunk of about `chunk_frames` frames (over all K
        rollouts) on the model thread. Other engine calls can run between chunks, and
        memory holds one chunk rather than K × (T + 1) frames. The chunks concatenate to
        what `predict_batch` / `predict_fused` return.
        """
        import numpy as np

        s = self.spec(spec)
        if not isinstance(actions, np.ndarray) or actions.ndim != 3 or actions.shape[0] == 0:
            raise InputValidationError(
                f"actions for a stream must be 3-D (K, T, action_dim), K >= 1; got shape {tuple(getattr(actions, 'shape', ()))}"
            )
        k = actions.shape[0]
        if len(frames) not in (1, k) or len(seeds) != k:
            raise ValueError(f"a stream needs 1 or K start frames and K seeds; got {len(frames)} and {len(seeds)} for K={k}")
        fitted = np.stack([self.prepare_frame(s, f) for f in frames])
        acts = np.stack([self.prepare_actions(s, a, f"actions[{i}]") for i, a in enumerate(actions)])
        steps, g, seed_values, _ = self.check_params(s, num_steps, guidance, list(seeds))
        runner = self.runner(s.slug)
        per_chunk = max(1, int(chunk_frames) // k)
        chunk_actions = max(s.chunk_size, per_chunk - per_chunk % s.chunk_size)
        chunks = runner.rollout_chunks(
            fitted, acts, seeds=seed_values, num_steps=steps, guidance=g, chunk_actions=chunk_actions
        )
        return RolloutStream(self, s, chunks, k, int(acts.shape[1]))

    def rollout_wall_s(self, slug: str | None = None, *, measure: bool = True) -> float | None:
        """Engine wall of one canonical single rollout of `slug` on this machine.

        From the rollouts run so far; with none yet and `measure`, runs one canonical
        rollout (loading the model) to find out.
        """
        import numpy as np

        spec = self.spec(slug)
        if spec.slug not in self._ms_per_frame and measure:
            h, w = spec.resolution
            self.predict(
                np.zeros((h, w, 3), np.uint8),
                np.zeros((spec.canonical_T, spec.action_dim), np.float32),
                spec=spec.slug,
            )
        per_frame = self._ms_per_frame.get(spec.slug)
        return None if per_frame is None else per_frame * spec.canonical_frames / 1000.0

    def encode_mp4(self, frames: np.ndarray, spec: str | None = None) -> bytes:
        """One rollout's uint8 (T + 1, H, W, 3) frames → mp4 bytes at the spec's fps."""
        from dream.engine.video import encode_mp4

        return encode_mp4(frames, self.spec(spec).fps)
