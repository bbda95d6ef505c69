"""Gymnasium environments whose dynamics are a world model: a policy acts on predicted frames.

`WorldModelEnv` (one episode at a time) and `WorldModelVectorEnv` (N at once, stepped in
one fused engine call) run over a model handle, ``client.models.get(slug)``:

* on the embedded engine they hold one `dream.engine.engine.SteppedRollouts` for all
  their episodes (``Engine.begin``): a step applies one action to every episode's
  carried rollout and draws one frame each, so its cost does not grow with the
  episode's length, and a fused row is byte-identical to the same episode alone;
* over HTTP (``dream.Client(base_url=...)``) each episode is a streaming session of
  ``dream serve`` (one WebSocket each, charged per frame like any session), which the
  server steps the same way.

Observations are the model's frames, uint8 (H, W, 3). A step takes one chunk of
actions: ``(action_dim,)`` when the spec's chunk_size is 1 (pusht-96), else
``(chunk_size, action_dim)``; the observation is the chunk's last frame and
``info["frames"]`` holds all of them. Rewards come from a callable on frames, or from
the scene the model holds (its readout) for a reward with ``state_reward`` on the
embedded engine (for pusht-96 by default `dream.envs.pusht.PushTCoverage`: gym-pusht's
coverage of the block pose the model drew the frame from; over HTTP, read off the
frame); an episode terminates when the reward's info says ``is_success`` and is
truncated after ``max_episode_steps`` steps.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from dream.errors import DreamError, InputValidationError

__all__ = ["ResetNeededError", "WorldModelEnv", "WorldModelVectorEnv"]

DEFAULT_MAX_EPISODE_STEPS = 300  # gym-pusht's registered time limit


class ResetNeededError(DreamError, gymnasium.error.ResetNeeded):
    """`step` before `reset`, or after the episode ended (terminated or truncated)."""


# --------------------------------------------------------------------------- steppers


class _EngineStepper:
    """All episodes as rows of one `SteppedRollouts` on the in-process engine."""

    def __init__(self, engine: Any, slug: str, num_envs: int, want_state: bool) -> None:
        self.engine, self.slug, self.num_envs = engine, slug, num_envs
        self.want_state = want_state  # hand back the model's readout with each step's frames
        self.steps: Any = None

    def fit(self, frame: np.ndarray) -> np.ndarray:
        return self.engine.prepare_frame(self.engine.spec(self.slug), frame)

    def start(self, rows: list[int], frames: np.ndarray) -> dict[str, np.ndarray] | None:
        if self.steps is None or rows == list(range(self.num_envs)):
            full = np.repeat(frames[:1], self.num_envs, axis=0)  # rows not started yet hold a copy (no step runs them)
            full[rows] = frames
            self.steps = self.engine.begin(full, spec=self.slug)
        else:
            self.steps.restart(rows, frames)
        return self.steps.readout() if self.want_state else None

    def advance(self, actions: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
        if not self.want_state:
            return self.steps.advance(actions), None
        steps = self.steps
        # one hop to the model thread for both (calls made on it run in place)
        return self.engine.on_engine_thread(lambda: (steps.advance(actions), steps.readout()))

    def close(self) -> None:
        self.steps = None


class _SessionStepper:
    """One streaming session of a ``dream serve`` per episode (HTTP clients)."""

    def __init__(self, client: Any, slug: str, num_envs: int, resolution: tuple[int, int]) -> None:
        self.client, self.slug, self.num_envs, self.resolution = client, slug, num_envs, resolution
        self.sessions: list[Any] = [None] * num_envs
        self.echoes = [False] * num_envs  # the first submit of a session also streams its initial frame
        self._pool = ThreadPoolExecutor(num_envs, thread_name_prefix="dream-env") if num_envs > 1 else None

    def fit(self, frame: np.ndarray) -> np.ndarray:
        from dream.inputs import fit_frame

        return fit_frame(frame, self.resolution)

    def start(self, rows: list[int], frames: np.ndarray) -> None:
        """Open a session per row (a session has frames only: no readout, so None is implicit)."""
        for row, frame in zip(rows, frames, strict=True):
            if self.sessions[row] is not None:
                self.sessions[row].close()
                self.sessions[row] = None
            self.sessions[row] = self.client.sessions.create(model=self.slug, initial_frame=frame)
            self.echoes[row] = True

    def _row(self, row: int, actions: np.ndarray) -> np.ndarray:
        frames = list(self.sessions[row].submit_actions(actions))
        if self.echoes[row]:
            frames, self.echoes[row] = frames[1:], False
        return np.stack(frames)

    def advance(self, actions: np.ndarray) -> tuple[np.ndarray, None]:
        if self._pool is None:
            return self._row(0, actions[0])[None], None
        return np.stack(list(self._pool.map(self._row, range(self.num_envs), actions))), None

    def close(self) -> None:
        for i, session in enumerate(self.sessions):
            if session is not None:
                session.close()
                self.sessions[i] = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)


# --------------------------------------------------------------------------- the shared core


RewardFn = Callable[[np.ndarray], Any]


class _ZeroReward:
    """No task reward known for the spec: 0.0, never a success."""

    def __call__(self, frame: np.ndarray) -> float:
        return 0.0


def _default_reward(slug: str) -> Any:
    if slug == "pusht-96":
        from dream.envs.pusht import PushTCoverage

        return PushTCoverage()
    warnings.warn(
        f"no reward is known for {slug!r}: rewards are 0.0 and episodes end only by truncation; pass reward=",
        UserWarning, stacklevel=4,
    )
    return _ZeroReward()


def _default_start_frames(slug: str) -> list[np.ndarray] | None:
    if slug == "pusht-96":
        from dream.examples.pusht import pusht_episodes

        return [ep.start_frame for ep in pusht_episodes()]
    return None


class _Core:
    """What both environments share: the model, the stepper, the spaces, the reward, and
    each episode's step count and last frame."""

    def __init__(
        self, model: Any, num_envs: int, reward: Any, max_episode_steps: int | None, start_frames: Any
    ) -> None:
        from dream.resources.models import ModelHandle

        if isinstance(model, str):  # a slug: on a client of our own (embedded, or DREAM_BASE_URL's server)
            import dream

            self._own_client = dream.Client()
            model = self._own_client.models.get(model)
        else:
            self._own_client = None
        if not isinstance(model, ModelHandle):
            raise TypeError(
                f"model must be a dream ModelHandle (client.models.get(slug)) or a slug; got {type(model).__name__}"
                + (" (use a sync dream.Client)" if type(model).__name__ == "AsyncModelHandle" else "")
            )
        model._require_active()
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise InputValidationError(f"num_envs must be a positive int; got {num_envs!r}")
        if max_episode_steps is not None and (
            not isinstance(max_episode_steps, int) or isinstance(max_episode_steps, bool) or max_episode_steps < 1
        ):
            raise InputValidationError(f"max_episode_steps must be a positive int or None; got {max_episode_steps!r}")
        spec = model.spec
        self.slug = model.slug
        self.num_envs = num_envs
        self.action_dim, self.chunk = spec.action_dim, max(1, spec.chunk_size)
        self.resolution = spec.resolution
        self.fps = spec.fps or 10
        client = model._client
        self.reward = _default_reward(self.slug) if reward is None else reward
        if not callable(self.reward) and not hasattr(self.reward, "env_reward"):
            raise TypeError(f"reward must be a callable on frames; got {type(self.reward).__name__}")
        if client.is_local:
            want_state = callable(getattr(self.reward, "state_reward", None)) and getattr(self.reward, "source", "auto") != "frames"
            self.stepper: Any = _EngineStepper(client.engine, self.slug, num_envs, want_state)
        else:
            self.stepper = _SessionStepper(client, self.slug, num_envs, self.resolution)
        self.max_episode_steps = max_episode_steps
        self.start_frames = _default_start_frames(self.slug) if start_frames is None else start_frames
        if self.start_frames is not None and not callable(self.start_frames) and len(self.start_frames) == 0:
            raise InputValidationError("start_frames is empty; give at least one frame (or a callable rng -> frame)")
        low = spec.arch.action_low if spec.arch.action_low is not None else -np.inf
        high = spec.arch.action_high if spec.arch.action_high is not None else np.inf
        shape = (self.action_dim,) if self.chunk == 1 else (self.chunk, self.action_dim)
        self.low, self.high = low, high
        self.single_action_space = spaces.Box(low=low, high=high, shape=shape, dtype=np.float32)
        self.single_observation_space = spaces.Box(0, 255, (*self.resolution, 3), np.uint8)
        self.steps_taken = np.zeros(num_envs, np.int64)
        self.frames = np.zeros((num_envs, *self.resolution, 3), np.uint8)
        self.started = np.zeros(num_envs, bool)
        self.done = np.zeros(num_envs, bool)

    # ---- start frames

    def pick_start(self, options: dict[str, Any] | None, rng: np.random.Generator, row: int) -> np.ndarray:
        """The start frame of a new episode: options["start_frame"] (or ["start_frames"][row]), else one
        of `start_frames` drawn with `rng` (or what the callable returns); fitted to the spec."""
        from dream.inputs import frame_to_array

        options = options or {}
        if options.get("start_frame") is not None:
            value, what = options["start_frame"], 'options["start_frame"]'
        elif options.get("start_frames") is not None:
            given = options["start_frames"]
            if len(given) != self.num_envs:
                raise InputValidationError(
                    f'options["start_frames"] must hold one frame per environment ({self.num_envs}); got {len(given)}'
                )
            value, what = given[row], f'options["start_frames"][{row}]'
        elif self.start_frames is None:
            raise InputValidationError(
                f"{self.slug} has no default start frames: pass reset(options={{'start_frame': frame}}) "
                "or start_frames= to the environment"
            )
        elif callable(self.start_frames):
            value, what = self.start_frames(rng), "start_frames(rng)"
        else:
            i = int(rng.integers(len(self.start_frames)))
            value, what = self.start_frames[i], f"start_frames[{i}]"
        return self.stepper.fit(frame_to_array(value, what=what))

    def start(self, rows: list[int], frames: np.ndarray) -> list[dict[str, Any]]:
        """Begin episodes `rows` from fitted frames; their infos (the start frame's reward info)."""
        state = self.stepper.start(rows, frames)
        self.frames[rows] = frames
        self.steps_taken[rows] = 0
        self.started[rows] = True
        self.done[rows] = False
        forget = getattr(self.reward, "forget", None)
        if forget is not None:
            forget(rows)
        return [{**info, "steps": 0} for _, info in self.score(rows, frames, state)]

    # ---- actions

    def check_actions(self, actions: Any, batched: bool) -> tuple[np.ndarray, np.ndarray]:
        """float32 (N, chunk, A) from one env's action or N envs' actions, clipped to the action
        space, and which rows (N,) were clipped."""
        shape = self.single_action_space.shape
        want = ((self.num_envs, *shape) if batched else shape)
        try:
            arr = np.asarray(actions, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputValidationError(f"action must be numeric, shape {want}; got {type(actions).__name__}: {exc}") from None
        if arr.shape != want:
            raise InputValidationError(f"action must have shape {want} for {self.slug}; got shape {arr.shape}")
        bad = ~np.isfinite(arr)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputValidationError(f"action contains {int(bad.sum())} non-finite value(s) (NaN or inf); first at {at}: {arr[at]}")
        # Outside the Box: clipped to it, as gymnasium's ClipAction wrapper does (and as pusht-96 clips
        # targets to the workspace); ``info["action_clipped"]`` says when it happened.
        arr = (arr if batched else arr[None]).reshape(self.num_envs, self.chunk, self.action_dim)
        clipped = np.any((arr < self.low) | (arr > self.high), axis=(1, 2))
        return np.clip(arr, self.low, self.high).astype(np.float32), clipped

    # ---- rewards

    def score(self, rows: Sequence[int], frames: np.ndarray, state: dict[str, np.ndarray] | None = None
              ) -> list[tuple[float, dict[str, Any]]]:
        """Rewards of rows `rows`: from the model's readout `state` (all N rows) where the reward
        scores states (``state_reward``), else from their frames."""
        if not len(rows):
            return []
        if state is not None:
            scored = self.reward.state_reward(state, list(rows))
            if scored is not None:
                return list(scored)
        batch = getattr(self.reward, "env_reward", None)
        if batch is not None:
            return list(batch(frames, list(rows)))
        out = []
        for frame in frames:
            value = self.reward(frame)
            if isinstance(value, tuple):
                r, info = value
                out.append((float(r), dict(info)))
            else:
                out.append((float(value), {}))
        return out

    def step(self, actions: np.ndarray, rows: list[int]) -> tuple[np.ndarray, list[tuple[float, dict[str, Any]]]]:
        """Advance every episode by one chunk; score rows `rows`. Returns (all frames (N, chunk, H, W, 3), scores)."""
        drawn, state = self.stepper.advance(actions)
        self.frames[:] = drawn[:, -1]
        self.steps_taken += 1
        scores = self.score(rows, drawn[rows, -1], state)
        return drawn, scores

    def outcome(self, row: int, info: dict[str, Any]) -> tuple[bool, bool]:
        terminated = bool(info.get("is_success", False))
        truncated = self.max_episode_steps is not None and int(self.steps_taken[row]) >= self.max_episode_steps
        return terminated, bool(truncated and not terminated)

    def close(self) -> None:
        self.stepper.close()
        if self._own_client is not None:
            self._own_client.close()
            self._own_client = None


def _step_info(core: _Core, row: int, info: dict[str, Any], drawn: np.ndarray, clipped: bool) -> dict[str, Any]:
    out = {**info, "steps": int(core.steps_taken[row]), "action_clipped": clipped}
    if core.chunk > 1:
        out["frames"] = drawn[row]
    return out


def _flat(row_infos: dict[int, dict[str, Any]]) -> bool:
    """Whether every value of the rows' infos is a Python bool, int or float."""
    return all(type(v) in (bool, int, float) for info in row_infos.values() for v in info.values())


def _stack_infos(row_infos: dict[int, dict[str, Any]], n: int) -> dict[str, Any]:
    """gymnasium's vector infos (``info[key]`` (N,) and its mask ``info["_" + key]``) of flat row
    infos, built a key at a time: the same arrays `VectorEnv._add_info` builds row by row."""
    rows = sorted(row_infos)
    types: dict[str, type] = {}
    for row in rows:
        for key, value in row_infos[row].items():
            types.setdefault(key, type(value))  # the first row's type, as _add_info makes the array
    infos: dict[str, Any] = {}
    for key, kind in types.items():
        array = np.zeros(n, dtype=kind)
        mask = np.zeros(n, dtype=np.bool_)
        have = [row for row in rows if key in row_infos[row]]
        array[have] = [row_infos[row][key] for row in have]
        mask[have] = True
        infos[key], infos[f"_{key}"] = array, mask
    return infos


# --------------------------------------------------------------------------- environments


class WorldModelEnv(gymnasium.Env):
    """A gymnasium environment whose dynamics are a world model.

        client = dream.Client()                                  # or dream.Client(base_url=...)
        env = WorldModelEnv(client.models.get("pusht-96"))
        obs, info = env.reset(seed=0, options={"start_frame": frame})
        obs, reward, terminated, truncated, info = env.step(np.array([300.0, 200.0]))

    Args:
        model: a model handle of a sync `dream.Client` (embedded: the engine carries the
            rollout; HTTP: a streaming session of ``dream serve`` per episode), or a slug
            (a client of the env's own: the embedded engine, or ``DREAM_BASE_URL``'s server;
            what ``gymnasium.make("dream/WorldModel-v0", model="pusht-96")`` uses).
        reward: a callable on one frame (H, W, 3) returning a float, or ``(float, info)``
            where ``info["is_success"]`` True ends the episode (terminated); or an object
            with ``env_reward(frames, rows)`` scoring many frames at once, and optionally
            ``state_reward(state, rows)`` scoring from the model's readout on the embedded
            engine (returning None falls back to the frames). Default for pusht-96:
            `PushTCoverage` (gym-pusht's reward and success: from the block pose the model
            drew the frame from on the embedded engine, read off the frame over HTTP).
        max_episode_steps: steps after which an episode is truncated (None: never).
        start_frames: frames ``reset`` draws a start from (with the env's seeded RNG) when
            ``options`` gives none, or a callable ``rng -> frame``. Default for pusht-96:
            the eight bundled example start frames.
        render_mode: None or "rgb_array" (``render()`` returns the current frame).

    Actions outside the action space are clipped to it (gymnasium's ClipAction
    convention) and ``info["action_clipped"]`` is True; a wrong shape, NaN or inf raises
    `InputValidationError` naming it. `step` before `reset` or after the episode ended
    raises `ResetNeededError`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        model: Any,
        *,
        reward: RewardFn | Any | None = None,
        max_episode_steps: int | None = DEFAULT_MAX_EPISODE_STEPS,
        start_frames: Sequence[Any] | Callable[[np.random.Generator], Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise InputValidationError(f"render_mode must be None or 'rgb_array'; got {render_mode!r}")
        self._core = _Core(model, 1, reward, max_episode_steps, start_frames)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self._core.fps}
        self.action_space = self._core.single_action_space
        self.observation_space = self._core.single_observation_space
        self.spec_slug = self._core.slug

    @property
    def steps(self) -> int:
        """Steps taken in the current episode."""
        return int(self._core.steps_taken[0])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode from ``options["start_frame"]`` (any image form; fitted like every
        start frame), else from one of `start_frames` drawn with the seeded RNG."""
        super().reset(seed=seed)
        frame = self._core.pick_start(options, self.np_random, 0)
        info = self._core.start([0], frame[None])[0]
        return self._core.frames[0].copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        core = self._core
        if not core.started[0]:
            raise ResetNeededError("step() before reset(): call env.reset() first")
        if core.done[0]:
            raise ResetNeededError(
                f"step() after the episode ended (after {self.steps} steps): call env.reset() to start another"
            )
        acts, clipped = core.check_actions(action, batched=False)
        drawn, scores = core.step(acts, [0])
        reward, info = scores[0]
        terminated, truncated = core.outcome(0, info)
        core.done[0] = terminated or truncated
        return core.frames[0].copy(), reward, terminated, truncated, _step_info(core, 0, info, drawn, bool(clipped[0]))

    def render(self) -> np.ndarray | None:
        return self._core.frames[0].copy() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        self._core.close()
        super().close()


class WorldModelVectorEnv(VectorEnv):
    """N episodes of a world model stepped together (gymnasium's vector API).

    On the embedded engine the N episodes are the rows of one carried rollout: a step is
    one fused engine call, and each row's frames are byte-identical to the same episode
    in a `WorldModelEnv` of its own. Over HTTP each episode is its own session (stepped
    concurrently). Arguments as `WorldModelEnv`, plus ``num_envs`` and gymnasium's
    ``autoreset_mode`` (NEXT_STEP by default: the step after an episode ends starts the
    next one, ignoring that row's action; SAME_STEP; DISABLED: reset ended rows with
    ``reset(options={"reset_mask": mask})``, stepping one raises `ResetNeededError`).

    ``reset(seed=s)`` seeds row i's start-frame RNG with s + i (a list gives one seed per
    row); ``options["start_frames"]`` gives one start frame per row, ``["start_frame"]``
    one for all.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        model: Any,
        num_envs: int,
        *,
        reward: RewardFn | Any | None = None,
        max_episode_steps: int | None = DEFAULT_MAX_EPISODE_STEPS,
        start_frames: Sequence[Any] | Callable[[np.random.Generator], Any] | None = None,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise InputValidationError(f"render_mode must be None or 'rgb_array'; got {render_mode!r}")
        try:
            mode = autoreset_mode if isinstance(autoreset_mode, AutoresetMode) else AutoresetMode(autoreset_mode)
        except ValueError:
            raise InputValidationError(
                f"autoreset_mode must be one of {[m.value for m in AutoresetMode]}; got {autoreset_mode!r}"
            ) from None
        self._core = _Core(model, num_envs, reward, max_episode_steps, start_frames)
        self.num_envs = num_envs
        self.autoreset_mode = mode
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self._core.fps, "autoreset_mode": mode}
        self.single_action_space = self._core.single_action_space
        self.single_observation_space = self._core.single_observation_space
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, num_envs)
        self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, num_envs)
        self._rngs = [np.random.default_rng() for _ in range(num_envs)]
        self._autoreset = np.zeros(num_envs, bool)

    @property
    def steps(self) -> np.ndarray:
        """Steps taken in each row's current episode (N,)."""
        return self._core.steps_taken.copy()

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise InputValidationError(f"reset got {len(seeds)} seeds for num_envs={n}")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            rows = list(range(n))
        else:
            mask = np.asarray(mask)
            if mask.shape != (n,) or mask.dtype != np.bool_ or not mask.any():
                raise InputValidationError(
                    f'options["reset_mask"] must be a bool array of shape ({n},) with a True; got {mask.dtype} {mask.shape}'
                )
            rows = [int(i) for i in np.nonzero(mask)[0]]
        for row in rows:
            if seeds[row] is not None:
                self._rngs[row] = np.random.default_rng(seeds[row])
        frames = np.stack([self._core.pick_start(options, self._rngs[row], row) for row in rows])
        infos: dict[str, Any] = {}
        for row, info in zip(rows, self._core.start(rows, frames), strict=True):
            infos = self._add_info(infos, info, row)
        self._autoreset[rows] = False
        return self._core.frames.copy(), infos

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        core, n = self._core, self.num_envs
        if not core.started.all():
            raise ResetNeededError(f"step() before reset(): rows {np.nonzero(~core.started)[0].tolist()} never started")
        if self.autoreset_mode == AutoresetMode.DISABLED and core.done.any():
            raise ResetNeededError(
                f"rows {np.nonzero(core.done)[0].tolist()} ended: reset them with reset(options={{'reset_mask': mask}})"
            )
        acts, clipped = core.check_actions(actions, batched=True)
        restarting = np.nonzero(self._autoreset)[0].tolist() if self.autoreset_mode == AutoresetMode.NEXT_STEP else []
        live = [i for i in range(n) if i not in restarting]
        drawn, scores = core.step(acts, live)
        rewards = np.zeros(n, np.float64)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        row_infos: dict[int, dict[str, Any]] = {}
        ended: list[int] = []
        for row, (reward, info) in zip(live, scores, strict=True):
            rewards[row] = reward
            terminated[row], truncated[row] = core.outcome(row, info)
            row_infos[row] = _step_info(core, row, info, drawn, bool(clipped[row]))
            if terminated[row] or truncated[row]:
                ended.append(row)
        core.done[ended] = True
        # NEXT_STEP: rows that ended last step start their next episode now (their action is ignored)
        # SAME_STEP: rows that end now start their next one at once; the last frame goes in info["final_obs"]
        again = restarting if self.autoreset_mode == AutoresetMode.NEXT_STEP else (
            ended if self.autoreset_mode == AutoresetMode.SAME_STEP else [])
        finals = {row: (core.frames[row].copy(), row_infos.pop(row)) for row in ended} if again is ended else {}
        if again:
            frames = np.stack([core.pick_start(None, self._rngs[row], row) for row in again])
            for row, info in zip(again, core.start(again, frames), strict=True):
                row_infos[row] = info
        if not finals and _flat(row_infos):
            infos = _stack_infos(row_infos, self.num_envs)
        else:
            infos = {}
            for row in sorted(row_infos):
                extra = {"final_obs": finals[row][0], "final_info": finals[row][1]} if row in finals else {}
                infos = self._add_info(infos, {**row_infos[row], **extra}, row)
        self._autoreset[:] = False
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._autoreset[ended] = True
        return core.frames.copy(), rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        return tuple(self._core.frames.copy()) if self.render_mode == "rgb_array" else None

    def close_extras(self, **kwargs: Any) -> None:
        self._core.close()



from dream.envs import register  # noqa: E402  (registers the ids whenever this module loads)

register()
