"""Visual model-predictive control over a world model: planners, costs, an MPC loop.

    import dream
    from dream.plan import CEM, MPC, goal_image_cost

    model = dream.Client().models.get("pusht-96")
    planner = CEM(model, goal_image_cost(goal_frame))     # defaults tuned for the spec
    actions = planner.plan(frame)                         # (horizon, 2) float32
    mpc = MPC(planner)                                    # replans every 5 actions
    action = mpc.act(frame)

A planner talks to the model only through what a handle offers: on the embedded engine
a fast path of raw frames (`dream.plan.models`), elsewhere ``predict_batch``.
"""

from __future__ import annotations

from dream.plan.costs import GoalImageCost, check_costs, goal_image_cost
from dream.plan.models import BatchImagination, EmbeddedImagination, Imagination, SimulatorModel
from dream.plan.mpc import MPC
from dream.plan.planners import CEM, DEFAULTS, MPPI, PlanDefaults, Planner, PlanResult, defaults_for

__all__ = [
    "CEM",
    "DEFAULTS",
    "MPC",
    "MPPI",
    "BatchImagination",
    "EmbeddedImagination",
    "GoalImageCost",
    "Imagination",
    "PlanDefaults",
    "PlanResult",
    "Planner",
    "SimulatorModel",
    "check_costs",
    "defaults_for",
    "goal_image_cost",
]
