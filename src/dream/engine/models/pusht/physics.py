"""Push-T dynamics in pose space: the agent's PD controller and the block's contact response.

The state of the scene is the agent (a kinematic disc, radius `AGENT_RADIUS`) and the
T-block (a rigid body of two rectangles, pose = its centre of gravity and angle). One
action is `SUBSTEPS` substeps of `DT` seconds:

1. the agent's velocity follows the PD law ``v += (K_P·(target − p) − K_V·v)·dt``;
2. positions advance by their velocities (the block's plus its last position-correction
   velocity);
3. contacts are found: the disc against each rectangle of the T, the T's corners against
   the four walls;
4. the block's velocity is reset (the floor stops it: a pushed block moves only while
   pushed) and sequential impulses (`ITERATIONS` passes, warm-started from the previous
   substep's impulses of contacts that persist) make every contact's normal velocity
   non-negative, and a separate position-correction impulse removes a share of the
   penetration (`BIAS_RATE`, `SLOP`).

Contacts are frictionless and inelastic. This mirrors what the simulator's rigid-body
solver does, written here in plain Python floats so that each rollout is computed on
its own, in a fixed order: the result never depends on batch neighbours or threads.
The numbers (`PhysicsParams`) are the model's parameters; `training/fit_pusht.py`
checks them against simulated episodes and stores them with the shipped file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

__all__ = ["PhysicsParams", "PushTState", "rollout_poses", "t_polygons_local"]

AGENT_RADIUS = 15.0
WALL_LOW, WALL_HIGH, WALL_RADIUS = 5.0, 506.0, 2.0


def t_polygons_local(scale: float = 30.0, length: float = 4.0) -> list[list[tuple[float, float]]]:
    """The T's two rectangles in body coordinates (the bar, then the stem), counter-clockwise in y-down axes."""
    bar = [(-length * scale / 2, scale), (length * scale / 2, scale), (length * scale / 2, 0.0), (-length * scale / 2, 0.0)]
    stem = [(-scale / 2, scale), (-scale / 2, length * scale), (scale / 2, length * scale), (scale / 2, scale)]
    return [bar, stem]


@dataclass(frozen=True)
class PhysicsParams:
    """The dynamics' constants (workspace px, seconds, kg)."""

    k_p: float = 100.0
    k_v: float = 20.0
    dt: float = 0.01
    substeps: int = 10
    iterations: int = 10
    block_mass: float = 1.0
    block_moment: float = 3000.0
    cog_local: tuple[float, float] = (0.0, 45.0)  # centre of gravity in body coordinates
    bias_rate: float = 1.0 - 0.0017970074436457143**0.01  # share of penetration corrected per substep
    slop: float = 0.1  # penetration tolerated without correction
    agent_radius: float = AGENT_RADIUS


@dataclass
class PushTState:
    """Agent position/velocity, block centre of gravity/angle/velocities, warm-start impulses."""

    agent: list[float]
    agent_vel: list[float] = field(default_factory=lambda: [0.0, 0.0])
    block: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # cog x, y, angle
    block_vel: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # vx, vy, w
    bias_vel: tuple[float, float, float] = (0.0, 0.0, 0.0)  # last position-correction velocity
    cache: dict[tuple, float] = field(default_factory=dict)  # contact key -> accumulated normal impulse


def _world_polys(block: list[float], params: PhysicsParams) -> list[list[tuple[float, float]]]:
    cx, cy, a = block
    c, s = math.cos(a), math.sin(a)
    gx, gy = params.cog_local
    out = []
    for poly in t_polygons_local():
        out.append([(cx + c * (x - gx) - s * (y - gy), cy + s * (x - gx) + c * (y - gy)) for x, y in poly])
    return out


def _circle_poly_contact(px: float, py: float, r: float, poly: list[tuple[float, float]]):
    """Contact of a disc with a convex polygon: (normal from disc to polygon, point on disc, point on polygon, key)."""
    n = len(poly)
    inside = True
    best = None  # closest point when outside
    best_edge = None  # least-penetrated edge when inside
    for i in range(n):
        ax, ay = poly[i]
        bx, by = poly[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        length = math.hypot(ex, ey)
        # outward normal for this winding (area sign decides)
        nx, ny = ey / length, -ex / length
        side = (px - ax) * nx + (py - ay) * ny
        if side > 0:
            inside = False
        t = max(0.0, min(1.0, ((px - ax) * ex + (py - ay) * ey) / (length * length)))
        qx, qy = ax + t * ex, ay + t * ey
        d2 = (px - qx) ** 2 + (py - qy) ** 2
        if best is None or d2 < best[0]:
            best = (d2, qx, qy, i)
        if best_edge is None or -side < best_edge[0]:
            best_edge = (-side, nx, ny, i)
    if inside:
        depth, nx, ny, i = best_edge
        qx, qy = px + nx * depth, py + ny * depth  # the disc centre projected onto that edge
        n_x, n_y = -nx, -ny
        return n_x, n_y, (px + n_x * r, py + n_y * r), (qx, qy), i
    d2, qx, qy, i = best
    d = math.sqrt(d2)
    if d >= r or d == 0.0:
        return None
    n_x, n_y = (qx - px) / d, (qy - py) / d
    return n_x, n_y, (px + n_x * r, py + n_y * r), (qx, qy), i


def _polygon_sign(poly: list[tuple[float, float]]) -> float:
    return sum(poly[i][0] * poly[(i + 1) % len(poly)][1] - poly[(i + 1) % len(poly)][0] * poly[i][1] for i in range(len(poly)))


# (outward normal, direction from the segment's a end to its b end) of the four walls
_WALLS = (
    (-1.0, 0.0, (0.0, -1.0)),  # left: (5, 506) → (5, 5)
    (1.0, 0.0, (0.0, 1.0)),  # right: (506, 5) → (506, 506)
    (0.0, -1.0, (1.0, 0.0)),  # top: (5, 5) → (506, 5)
    (0.0, 1.0, (1.0, 0.0)),  # bottom: (5, 506) → (506, 506)
)


def _wall_depth(w: int, x: float, y: float) -> float:
    if w == 0:
        return WALL_LOW + WALL_RADIUS - x
    if w == 1:
        return x - (WALL_HIGH - WALL_RADIUS)
    if w == 2:
        return WALL_LOW + WALL_RADIUS - y
    return y - (WALL_HIGH - WALL_RADIUS)


def _contacts(state: PushTState, params: PhysicsParams) -> list[tuple]:
    """Contacts as (key, normal x, normal y, contact point − cog x, y, signed distance, is-the-agent)."""
    cx, cy, _ = state.block
    out = []
    pushes = []
    ax, ay = state.agent
    for k, poly in enumerate(_world_polys(state.block, params)):
        if _polygon_sign(poly) < 0:
            poly = poly[::-1]
        hit = _circle_poly_contact(ax, ay, params.agent_radius, poly)
        if hit is not None:
            nx, ny, p1, p2, edge = hit
            dist = (p2[0] - p1[0]) * nx + (p2[1] - p1[1]) * ny
            pushes.append((("agent", k, edge), nx, ny, p2[0] - cx, p2[1] - cy, dist, True))
        # walls: static segments of radius WALL_RADIUS along x = 5, x = 506, y = 5, y = 506,
        # each drawn from a to b; a wall's contacts are ordered from its a end to its b end
        for w, (nx, ny, along) in enumerate(_WALLS):
            hits = []
            for j, (vx, vy) in enumerate(poly):
                depth = _wall_depth(w, vx, vy)
                if depth > 0:
                    hits.append((along[0] * vx + along[1] * vy, j, vx, vy, depth))
            for _, j, vx, vy, depth in sorted(hits):
                # normal from the wall (body a) into the block (body b)
                out.append((("wall", k, j, w), -nx, -ny, vx - cx, vy - cy, -depth, False))
    # when the agent pins the block against a wall the constraints conflict and the
    # solving order decides; pushes first matched the simulator best on training episodes
    return pushes + out


def step(state: PushTState, target: tuple[float, float], params: PhysicsParams) -> None:
    """Advance `state` in place by one action (`params.substeps` substeps) towards `target`."""
    m_inv = 1.0 / params.block_mass
    i_inv = 1.0 / params.block_moment
    dt = params.dt
    tx, ty = target
    for _ in range(params.substeps):
        av = state.agent_vel
        ap = state.agent
        av[0] += (params.k_p * (tx - ap[0]) + params.k_v * (0.0 - av[0])) * dt
        av[1] += (params.k_p * (ty - ap[1]) + params.k_v * (0.0 - av[1])) * dt
        # positions advance by the velocities plus the last position correction
        ap[0] += av[0] * dt
        ap[1] += av[1] * dt
        b, bv = state.block, state.block_vel
        bias_v = state.bias_vel
        b[0] += (bv[0] + bias_v[0]) * dt
        b[1] += (bv[1] + bias_v[1]) * dt
        b[2] += (bv[2] + bias_v[2]) * dt
        contacts = _contacts(state, params)
        # the floor: no velocity survives a substep (the simulator's damping of 0)
        vx = vy = w = 0.0
        bvx = bvy = bw = 0.0
        prepared = []
        new_cache = {}
        for key, nx, ny, rx, ry, dist, kinematic in contacts:
            rn = rx * ny - ry * nx
            n_mass = 1.0 / (m_inv + i_inv * rn * rn)
            bias = -params.bias_rate * min(0.0, dist + params.slop) / dt
            if kinematic:
                # relative velocity b − a: the agent (a) moves, the block (b) responds
                avx, avy = av[0], av[1]
            else:
                avx = avy = 0.0
            jn = state.cache.get(key, 0.0)
            prepared.append([key, nx, ny, rx, ry, n_mass, bias, avx, avy, jn, 0.0])
            if jn:
                vx += nx * jn * m_inv
                vy += ny * jn * m_inv
                w += i_inv * (rx * ny * jn - ry * nx * jn)
        for _ in range(params.iterations):
            for c in prepared:
                _, nx, ny, rx, ry, n_mass, bias, avx, avy, jn_acc, jb_acc = c
                # bias (position correction) impulse
                vbn = (bvx - ry * bw) * nx + (bvy + rx * bw) * ny
                jbn = (bias - vbn) * n_mass
                jb_new = max(jb_acc + jbn, 0.0)
                djb = jb_new - jb_acc
                c[10] = jb_new
                bvx += nx * djb * m_inv
                bvy += ny * djb * m_inv
                bw += i_inv * (rx * ny - ry * nx) * djb
                # velocity impulse
                vrn = ((vx - ry * w) - avx) * nx + ((vy + rx * w) - avy) * ny
                jn = -vrn * n_mass
                jn_new = max(jn_acc + jn, 0.0)
                dj = jn_new - jn_acc
                c[9] = jn_new
                vx += nx * dj * m_inv
                vy += ny * dj * m_inv
                w += i_inv * (rx * ny - ry * nx) * dj
        for c in prepared:
            new_cache[c[0]] = c[9]
        state.cache = new_cache
        state.block_vel = [vx, vy, w]
        state.bias_vel = (bvx, bvy, bw)


def rollout_poses(
    agent: tuple[float, float], block: tuple[float, float, float], targets, params: PhysicsParams | None = None
) -> tuple[list[tuple[float, float]], list[tuple[float, float, float]]]:
    """Agent positions and block poses (cog x, y, angle) at frames 0..T for T targets, from rest."""
    params = params or PhysicsParams()
    state = PushTState(agent=[float(agent[0]), float(agent[1])], block=[float(v) for v in block])
    # the simulator's reset ends with one substep with the agent at rest: an agent that
    # starts inside the block gives it a velocity that shows only from frame 1 on
    step(state, (state.agent[0], state.agent[1]), replace(params, substeps=1))
    agents = [tuple(state.agent)]
    blocks = [tuple(state.block)]
    for tx, ty in targets:
        step(state, (float(tx), float(ty)), params)
        agents.append(tuple(state.agent))
        blocks.append(tuple(state.block))
    return agents, blocks
