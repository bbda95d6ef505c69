"""Push-T geometry and the agent's motion: what is known of the scene without learning.

The scene is the agent (a disc of radius `AGENT_RADIUS`, in workspace px) and the
T-block (two rectangles; its pose is its centre of gravity and angle). The action is
the agent's target: gym-pusht documents it as the set point of a PD controller that
runs `substeps` substeps of `dt` seconds per action, ``v += (k_p·(target − p) −
k_v·v)·dt; p += v·dt`` — `agent_path` computes exactly that. How the block responds
is learned (`dynamics.BlockDynamics`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AGENT_RADIUS", "PhysicsParams", "agent_path", "t_polygons_local"]

AGENT_RADIUS = 15.0
WALL_LOW, WALL_HIGH, WALL_RADIUS = 5.0, 506.0, 2.0


def t_polygons_local(scale: float = 30.0, length: float = 4.0) -> list[list[tuple[float, float]]]:
    """The T's two rectangles in body coordinates (the bar, then the stem), counter-clockwise in y-down axes."""
    bar = [(-length * scale / 2, scale), (length * scale / 2, scale), (length * scale / 2, 0.0), (-length * scale / 2, 0.0)]
    stem = [(-scale / 2, scale), (-scale / 2, length * scale), (scale / 2, length * scale), (scale / 2, scale)]
    return [bar, stem]


@dataclass(frozen=True)
class PhysicsParams:
    """The known constants: the agent's PD controller (gym-pusht's) and the bodies' shapes (workspace px, s)."""

    k_p: float = 100.0
    k_v: float = 20.0
    dt: float = 0.01
    substeps: int = 10
    cog_local: tuple[float, float] = (0.0, 45.0)  # the block's centre of gravity in body coordinates
    agent_radius: float = AGENT_RADIUS


def agent_path(
    agent: tuple[float, float], velocity: list[float], target: tuple[float, float], params: PhysicsParams
) -> list[tuple[float, float]]:
    """The agent's positions after each of the `params.substeps` substeps towards `target`.

    `velocity` (x, y) is the agent's velocity at the start of the action; it is updated
    in place to the velocity at its end.
    """
    x, y = float(agent[0]), float(agent[1])
    tx, ty = float(target[0]), float(target[1])
    out = []
    for _ in range(params.substeps):
        velocity[0] += (params.k_p * (tx - x) + params.k_v * (0.0 - velocity[0])) * params.dt
        velocity[1] += (params.k_p * (ty - y) + params.k_v * (0.0 - velocity[1])) * params.dt
        x += velocity[0] * params.dt
        y += velocity[1] * params.dt
        out.append((x, y))
    return out
