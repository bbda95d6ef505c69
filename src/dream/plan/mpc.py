"""Receding-horizon control with a planner: `MPC`."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from dream.errors import InputValidationError
from dream.plan.planners import Planner, PlanResult

__all__ = ["MPC"]


class MPC:
    """Acts from frames by replanning: plan, execute the first `replan_every` actions, plan again.

    ``act(frame)`` returns the next action, float32 (action_dim,): when the queue of
    planned actions is empty it plans from `frame` (warm-started from the previous plan
    shifted by the actions executed since) and queues the first `replan_every` actions.
    ``reset()`` starts a new episode (empty queue, no warm start, the planner's random
    stream from its start).

    Args:
        planner: a `CEM` or `MPPI`.
        replan_every: actions executed per plan, 1..horizon; None: the planner's knot
            length (`repeat`).
    """

    def __init__(self, planner: Planner, *, replan_every: int | None = None) -> None:
        if not isinstance(planner, Planner):
            raise InputValidationError(f"planner must be a dream.plan CEM or MPPI; got {type(planner).__name__}")
        every = planner.repeat if replan_every is None else replan_every
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or not 1 <= int(every) <= planner.horizon:
            raise InputValidationError(
                f"replan_every must be an int in 1..horizon={planner.horizon}; got {replan_every!r}"
            )
        self.planner = planner
        self.replan_every = int(every)
        self.plans: list[PlanResult] = []  # every plan of this episode
        self._queue: deque[np.ndarray] = deque()
        self._executed = 0  # actions of the last plan handed out

    def reset(self) -> None:
        self.planner.reset()
        self.plans = []
        self._queue.clear()
        self._executed = 0

    def act(self, frame: Any) -> np.ndarray:
        if not self._queue:
            if self.plans:
                self.planner.shift(self._executed)
            actions = self.planner.plan(frame)
            assert self.planner.last is not None
            self.plans.append(self.planner.last)
            self._queue.extend(actions[: self.replan_every])
            self._executed = 0
        self._executed += 1
        return np.array(self._queue.popleft(), np.float32)

    @property
    def last(self) -> PlanResult | None:
        """The most recent plan."""
        return self.plans[-1] if self.plans else None
