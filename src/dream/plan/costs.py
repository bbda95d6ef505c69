"""Costs a planner minimises: functions of a batch of predicted frames.

A cost maps the predicted frames of K candidates, uint8 (K, T + 1, H, W, 3) (frame 0 is
the start frame, frame t the prediction after t actions), to K floats, lower better.
Any callable of that shape is a cost. `goal_image_cost` builds the one for reaching a
goal image.

`GoalImageCost` scores the states at a few steps of the horizon (every `stride` actions,
the last step included), not the last frame alone: a cost of the final frame only plans
to arrive at the end of the horizon, and the few actions an MPC executes before
replanning never commit (on Push-T: no goal reached at all, even with the simulator as
the model). The total is a weighted mean, ``(running · Σ c_t + terminal · c_T) /
(running · (n − 1) + terminal)`` over the n scored steps t (the last is T).

For Push-T (96×96 frames of a ``pusht`` model) the distance of a state to the goal is
measured on the objects, not on pixels: the agent's position and the block's pose are
read off each scored frame and off the goal frame
(`dream.engine.models.pusht.posefit.read_scene`, ≈ 0.4 workspace px and 0.15° of error),
and ``c = ‖(agent, block position) − goal‖ + angle_weight · |block angle − goal| in
degrees`` (workspace px: the quantities DINO-WM's success rule thresholds at 20 and 20°).
A pixel distance does not work there: once the agent's disc has left its goal spot,
moving it further costs nothing. For other models the distance is the mean absolute
pixel difference (0–255) of each scored frame to the goal frame.

The equivalence that makes the embedded engine fast: for ``pusht-96`` the frames the
engine draws show exactly the poses its runner holds (`SteppedRollouts.readout`), so
a `GoalImageCost` scores those poses directly (`score_poses`) instead of drawing the
frames and reading the poses back off them. The two differ only by the pose reader's
error (tests/plan check both on the same candidates); over HTTP, frames are all a
planner gets, and it reads them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dream.errors import InputValidationError

__all__ = ["Cost", "GoalImageCost", "check_costs", "goal_image_cost"]

Cost = Callable[[np.ndarray], Any]

MISSING_PENALTY = 1000.0  # workspace px: a scored frame where the block or the agent cannot be seen


def _wrap(angle: np.ndarray) -> np.ndarray:
    return np.remainder(angle + np.pi, 2 * np.pi) - np.pi


class GoalImageCost:
    """Distance of predicted frames to a goal image (see the module docstring).

    Args:
        goal_frame: the goal image, uint8 (H, W, 3) in any form a start frame takes; it is
            resized to the model's resolution like a start frame when a planner binds it.
        stride: score every `stride`-th frame of the horizon (and the last). None: the
            planner's knot length (`repeat`), or every frame when called on its own.
        running, terminal: weights of the intermediate scored steps and of the last one.
        angle_weight: workspace px per degree of the block's angle error (Push-T).
        agent_weight: weight of the agent's position in the pose distance (Push-T).
        agent_running: the same at the intermediate scored steps (None: `agent_weight`);
            less lets the agent go around the block on the way and still end on its spot.
        kind: ``"pose"`` (Push-T poses), ``"pixels"``, or None to choose from the model.
    """

    def __init__(
        self,
        goal_frame: Any,
        *,
        stride: int | None = None,
        running: float = 1.0,
        terminal: float = 1.0,
        angle_weight: float = 1.0,
        agent_weight: float = 1.0,
        agent_running: float | None = None,
        kind: str | None = None,
    ) -> None:
        from dream.inputs import frame_to_array

        self.goal_source = frame_to_array(goal_frame, what="goal_frame")
        if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or stride < 1):
            raise InputValidationError(f"stride must be a positive int or None; got {stride!r}")
        for name, value in (("running", running), ("terminal", terminal), ("angle_weight", angle_weight),
                            ("agent_weight", agent_weight),
                            ("agent_running", agent_weight if agent_running is None else agent_running)):
            if not math.isfinite(float(value)) or float(value) < 0:
                raise InputValidationError(f"{name} must be a finite number >= 0; got {value!r}")
        if float(running) == 0 and float(terminal) == 0:
            raise InputValidationError("running and terminal weights are both 0: nothing would be scored")
        if kind not in (None, "pose", "pixels"):
            raise InputValidationError(f"kind must be 'pose', 'pixels' or None; got {kind!r}")
        self.stride = stride
        self.running, self.terminal = float(running), float(terminal)
        self.angle_weight, self.agent_weight = float(angle_weight), float(agent_weight)
        self.agent_running = self.agent_weight if agent_running is None else float(agent_running)
        self.kind = kind
        self.goal: np.ndarray | None = None  # the goal at the model's resolution (after `bind`)
        self.goal_agent: np.ndarray | None = None
        self.goal_block: np.ndarray | None = None
        self._kind: str | None = None
        self._bound_stride: int | None = None

    @classmethod
    def for_poses(cls, *, agent: Any, block: Any, **options: Any) -> GoalImageCost:
        """The same cost with the goal given as Push-T poses instead of an image: agent (x, y),
        block (cog x, cog y, angle) in workspace px and rad."""
        self = cls.__new__(cls)
        self.__init__(np.zeros((96, 96, 3), np.uint8), kind="pose", **options)  # type: ignore[misc]
        self.goal_source = None  # type: ignore[assignment]
        self.goal_agent = np.asarray(agent, np.float64).reshape(2)
        self.goal_block = np.asarray(block, np.float64).reshape(3)
        if not (np.isfinite(self.goal_agent).all() and np.isfinite(self.goal_block).all()):
            raise InputValidationError(f"goal poses must be finite; got agent {agent!r}, block {block!r}")
        return self

    # ------------------------------------------------------------------ binding

    def bind(self, resolution: tuple[int, int], runner: str | None = None, stride: int | None = None) -> GoalImageCost:
        """Fit the goal to a model's `resolution` and pick the distance for its `runner`
        family (None: unknown, Push-T poses for 96×96 frames); a planner calls this before
        any engine work. `stride` is the planner's knot length. Returns self."""
        from dream.inputs import fit_frame

        resolution = (int(resolution[0]), int(resolution[1]))
        if self.goal_source is None:  # goal poses given (`for_poses`)
            if resolution != (96, 96):
                raise InputValidationError(f"a Push-T pose goal reads 96×96 frames; the model draws {resolution}")
            self._kind = "pose"
            if stride is not None:
                self._bound_stride = int(stride)
            return self
        kind = self.kind or ("pose" if runner in (None, "pusht") and resolution == (96, 96) else "pixels")
        goal = fit_frame(self.goal_source, tuple(resolution))
        if kind == "pose":
            if tuple(resolution) != (96, 96):
                raise InputValidationError(f"the Push-T pose distance reads 96×96 frames; the model draws {tuple(resolution)}")
            if self.goal is None or not np.array_equal(goal, self.goal) or self.goal_agent is None:
                from dream.engine.models.pusht.posefit import read_scene

                reading = read_scene(goal)
                if not (reading.agent_visible[0] and reading.block_visible[0]):
                    raise InputValidationError(
                        "goal_frame shows no Push-T agent and block to reach (nothing of their colours was found); "
                        "pass kind='pixels' for a pixel distance"
                    )
                self.goal_agent, self.goal_block = reading.agent[0], reading.block[0]
        self.goal, self._kind = goal, kind
        if stride is not None:
            self._bound_stride = int(stride)
        return self

    @property
    def uses_poses(self) -> bool:
        """Whether this cost is a function of Push-T poses (`score_poses` applies)."""
        return self._kind == "pose"

    def steps(self, T: int) -> list[int]:
        """The frame indices (1..T) this cost scores for a horizon of T actions."""
        stride = self.stride or self._bound_stride or 1
        out = list(range(stride, T + 1, stride))
        if not out or out[-1] != T:
            out.append(T)
        return out

    def _weights(self, n: int) -> np.ndarray:
        w = np.full(n, self.running)
        w[-1] = self.terminal
        return w / w.sum()

    # ------------------------------------------------------------------ scoring

    def pose_distance(self, agent: np.ndarray, block: np.ndarray, agent_weight: Any = None) -> np.ndarray:
        """Per-state distance to the goal from agent (..., 2) and block (..., 3) poses (`agent_weight`
        broadcast against the leading axes; None: the terminal weight)."""
        assert self.goal_agent is not None and self.goal_block is not None
        weight = self.agent_weight if agent_weight is None else np.asarray(agent_weight)[..., None]
        da = (agent - self.goal_agent) * weight
        db = block[..., :2] - self.goal_block[:2]
        dist = np.sqrt((da**2).sum(-1) + (db**2).sum(-1))
        angle = np.degrees(np.abs(_wrap(block[..., 2] - self.goal_block[2])))
        out = dist + self.angle_weight * angle
        return np.where(np.isfinite(out), out, MISSING_PENALTY)

    def score_poses(self, agent: np.ndarray, block: np.ndarray) -> np.ndarray:
        """The cost of K candidates from their poses at `steps(T)`: agent (K, n, 2), block (K, n, 3)."""
        n = np.shape(agent)[1]
        weights = np.full(n, self.agent_running)
        weights[-1] = self.agent_weight
        d = self.pose_distance(np.asarray(agent, np.float64), np.asarray(block, np.float64), weights)
        return d @ self._weights(d.shape[1]) if d.shape[1] > 1 else d[:, 0]

    def score_steps(self, frames: np.ndarray) -> np.ndarray:
        """The cost of K candidates from their frames at `steps(T)` only: uint8 (K, n, H, W, 3)."""
        if self.goal is None or self.goal.shape[:2] != frames.shape[2:4]:
            self.bind(frames.shape[2:4])
        k, n = frames.shape[:2]
        if self.uses_poses:
            from dream.engine.models.pusht.posefit import read_scene

            reading = read_scene(frames.reshape(k * n, *frames.shape[2:]))
            return self.score_poses(reading.agent.reshape(k, n, 2), reading.block.reshape(k, n, 3))
        assert self.goal is not None
        diff = np.abs(frames.astype(np.float32) - self.goal.astype(np.float32)).mean(axis=(2, 3, 4))
        return diff.astype(np.float64) @ self._weights(n)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """The cost of K candidates' predicted frames uint8 (K, T + 1, H, W, 3) → (K,)."""
        frames = np.asarray(frames)
        if frames.ndim != 5 or frames.shape[-1] != 3 or frames.shape[1] < 2:
            raise InputValidationError(f"a cost takes frames (K, T + 1, H, W, 3) with T >= 1; got shape {tuple(frames.shape)}")
        return self.score_steps(frames[:, self.steps(frames.shape[1] - 1)])

    def __repr__(self) -> str:
        return (f"GoalImageCost(kind={self._kind or self.kind!r}, stride={self.stride}, running={self.running}, "
                f"terminal={self.terminal}, angle_weight={self.angle_weight}, agent_weight={self.agent_weight})")


def goal_image_cost(goal_frame: Any, **options: Any) -> GoalImageCost:
    """The cost of reaching `goal_frame` (see `GoalImageCost` for the options)."""
    return GoalImageCost(goal_frame, **options)


def check_costs(values: Any, k: int, what: str = "cost") -> np.ndarray:
    """A cost's output as float64 (K,), or `InputValidationError` naming the bad shape or value."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputValidationError(f"{what} must return K={k} numbers; got {type(values).__name__} ({exc})") from None
    if arr.shape != (k,):
        raise InputValidationError(f"{what} must return shape ({k},) for K={k} candidates; got shape {tuple(arr.shape)}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputValidationError(
            f"{what} returned {int(bad.sum())} non-finite value(s) (NaN or inf); first at candidate {i}: {arr[i]}"
        )
    return arr


def frames_needed(cost: Any, T: int) -> Sequence[int] | None:
    """The frame indices a cost reads for horizon T (None: all T + 1 frames, frame 0 included)."""
    steps = getattr(cost, "steps", None)
    return steps(T) if callable(steps) and hasattr(cost, "score_steps") else None
