"""Drawing the Push-T scene at 96×96 as gym-pusht draws it.

gym-pusht draws its scene with pygame on a 512×512 surface and resizes it to 96×96 with
OpenCV's bilinear filter, so each output pixel blends the 2×2 surface pixels around
``(i + 0.5)·512/96 − 0.5``. `SceneRenderer` evaluates the drawing only at those sample
pixels, reproducing pygame's integer rasterisation of each primitive:

* filled polygons (`pygame.draw.polygon`): vertices rounded to integers, scanlines at
  integer rows, each edge's crossing truncated to an integer column, spans inclusive;
* lines of width 4 (`pygame.draw.lines`): the Bresenham pixels from one rounded end to
  the other, each widened to a run of four pixels (one before, two after) across the
  line's major axis;
* filled discs (`pygame.draw.circle`): the midpoint circle's rows, which span
  ``[x0 − w, x0 + w − 1]``.

The scene, in gym-pusht's drawing order: the white floor and the green goal T; then
pymunk's debug drawing: the block (each rectangle filled with 1.2× its colour, then its
edges as 2-px "fat segments": a width-4 line, a quadrilateral and a disc of radius 2 at
each end), the agent (a blue disc of radius 15 with a lighter disc of radius 11), and
the walls last (grey fat segments). What is not drawn: the red marks pymunk's debug
drawing puts on contact points (a few surface pixels) and the clipping of lines that
leave the surface. All in numpy; a frame depends only on the poses it is given.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from dream.engine.models.pusht.physics import PhysicsParams

__all__ = ["SceneRenderer", "body_polygons"]

WORKSPACE = 512
WHITE = (255.0, 255.0, 255.0)
GOAL_RGB = (144.0, 238.0, 144.0)  # pygame's LightGreen
WALL_RGB = (211.0, 211.0, 211.0)  # LightGray
BLOCK_OUTLINE = (119.0, 136.0, 153.0)  # LightSlateGray
BLOCK_FILL = (143.0, 163.0, 184.0)  # 1.2 × the outline colour, rounded
AGENT_RGB = (65.0, 105.0, 225.0)  # RoyalBlue
AGENT_CORE = (78.0, 126.0, 255.0)  # 1.2 × RoyalBlue, capped at 255
GOAL_POSE = (256.0, 256.0, math.pi / 4)  # body origin x, y, angle
FAT_RADIUS = 2.0  # pymunk's pygame drawing outlines every polygon with this radius
WALLS = (((5.0, 506.0), (5.0, 5.0)), ((5.0, 5.0), (506.0, 5.0)), ((506.0, 5.0), (506.0, 506.0)), ((5.0, 506.0), (506.0, 506.0)))
# The T's rectangles in body coordinates, in the order pymunk draws them (the bar, then
# the stem), each with its vertices in pymunk's order (which way each edge is drawn
# decides Bresenham's pixels).
_T_DRAWN = (
    ((-60.0, 0.0), (60.0, 0.0), (60.0, 30.0), (-60.0, 30.0)),
    ((-15.0, 30.0), (15.0, 30.0), (15.0, 120.0), (-15.0, 120.0)),
)


def body_polygons(origin_x: float, origin_y: float, angle: float) -> list[list[tuple[float, float]]]:
    """The T's rectangles (bar, stem) in workspace px for a body-origin pose, vertices in pymunk's order."""
    c, s = math.cos(angle), math.sin(angle)
    return [[(origin_x + c * x - s * y, origin_y + s * x + c * y) for x, y in poly] for poly in _T_DRAWN]


def _round(v: float) -> int:
    return round(v)  # Python's round, as pymunk's pygame_util does (half to even)


# ----------------------------------------------------------------- primitives
# Each returns a bool mask (len(ys), len(xs)) of the integer surface pixels (xs, ys) it paints.


def _poly(ys: np.ndarray, xs: np.ndarray, vx: list[int], vy: list[int]) -> np.ndarray:
    """pygame.draw.polygon(width=0) with integer vertices (the closing vertex need not be repeated)."""
    miny, maxy = min(vy), max(vy)
    yf = ys.astype(np.float64)[:, None]
    if miny == maxy:
        row = ys == miny
        return row[:, None] & (xs >= min(vx))[None] & (xs <= max(vx))[None]
    crossings = []
    n = len(vx)
    for i in range(n):
        j = i - 1 if i else n - 1
        y1, y2, x1, x2 = float(vy[j]), float(vy[i]), float(vx[j]), float(vx[i])
        if y1 == y2:
            continue
        if y1 > y2:
            y1, y2, x1, x2 = y2, y1, x2, x1
        active = ((yf >= y1) & (yf < y2)) | ((yf == maxy) & (y2 == maxy))
        crossings.append(np.where(active, np.trunc((yf - y1) * (x2 - x1) / (y2 - y1) + x1), np.inf))
    cross = np.sort(np.concatenate(crossings, axis=1), axis=1)
    out = np.zeros((len(ys), len(xs)), bool)
    for k in range(0, cross.shape[1] - 1, 2):
        lo, hi = cross[:, k : k + 1], cross[:, k + 1 : k + 2]
        out |= (xs[None] >= lo) & (xs[None] <= hi) & np.isfinite(hi)
    return out


def _thick_line(ys: np.ndarray, xs: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """pygame.draw.lines(width=4) of one segment between integer points (inside the surface)."""
    dx, dy = abs(x2 - x1), abs(y2 - y1)
    sx = 1 if x1 < x2 else -1
    sy = 1 if y1 < y2 else -1
    if dx <= dy:  # steps along y; each row gets a run of 4 columns
        k = (ys - y1) * sy
        minor = np.maximum(0, -((dy // 2 - k * dx) // dy)) if dy else np.zeros_like(k)
        centre = x1 + sx * minor
        valid = (k >= 0) & (k <= dy)
        return valid[:, None] & (xs[None] >= (centre - 1)[:, None]) & (xs[None] <= (centre + 2)[:, None])
    k = (xs - x1) * sx
    minor = np.maximum(0, -((dx // 2 - k * dy) // dx))
    centre = y1 + sy * minor
    valid = (k >= 0) & (k <= dx)
    return valid[None, :] & (ys[:, None] >= (centre - 1)[None]) & (ys[:, None] <= (centre + 2)[None])


@lru_cache(maxsize=None)
def _disc_spans(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(row offsets, half widths w): pygame's filled disc covers [x0 − w, x0 + w − 1] on row y0 + offset."""
    widths: dict[int, int] = {}

    def span(dy: int, w: int) -> None:
        widths[dy] = max(widths.get(dy, 0), w)

    f, ddf_y, x, y = 1 - radius, -2 * radius, 0, radius
    while x < y:
        if f >= 0:
            y -= 1
            ddf_y += 2
            f += ddf_y
        x += 1
        f += 2 * x + 1
        if f >= 0:
            span(y - 1, x)
            span(-y, x)
        span(x - 1, y)
        span(-x, y)
    rows = np.array(sorted(widths), np.int64)
    return rows, np.array([widths[r] for r in rows], np.int64)


def _disc(ys: np.ndarray, xs: np.ndarray, cx: int, cy: int, radius: int) -> np.ndarray:
    """pygame.draw.circle(width=0) centred on integer (cx, cy)."""
    rows, widths = _disc_spans(radius)
    half = np.zeros(len(ys), np.int64)
    offset = ys - cy
    inside = (offset >= rows[0]) & (offset <= rows[-1])
    half[inside] = widths[offset[inside] - rows[0]]
    return (half > 0)[:, None] & (xs[None] >= (cx - half)[:, None]) & (xs[None] <= (cx + half - 1)[:, None])


def _fat_segment(ys: np.ndarray, xs: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """pymunk's pygame_util fat segment of radius 2 from `a` to `b` (workspace px)."""
    x1, y1, x2, y2 = _round(a[0]), _round(a[1]), _round(b[0]), _round(b[1])
    out = _thick_line(ys, xs, x1, y1, x2, y2)
    ox, oy = abs(y2 - y1), abs(x2 - x1)  # sic: pymunk's "orthogonal" offset takes absolute values
    if ox == 0 and oy == 0:
        return out
    scale = FAT_RADIUS / (ox * ox + oy * oy) ** 0.5
    ox, oy = _round(ox * scale), _round(oy * scale)
    out |= _poly(ys, xs, [x1 - ox, x1 + ox, x2 + ox, x2 - ox], [y1 - oy, y1 + oy, y2 + oy, y2 - oy])
    r = _round(FAT_RADIUS)
    return out | _disc(ys, xs, x1, y1, r) | _disc(ys, xs, x2, y2, r)


def _polygon_drawing(ys: np.ndarray, xs: np.ndarray, verts: list[tuple[float, float]], outline: bool):
    """(fill mask, outline mask) of one block rectangle as pymunk's pygame_util draws it."""
    fill = _poly(ys, xs, [_round(x) for x, _ in verts], [_round(y) for _, y in verts])
    edge = np.zeros_like(fill)
    if outline:
        for i in range(len(verts)):
            edge |= _fat_segment(ys, xs, verts[i], verts[(i + 1) % len(verts)])
    return fill, edge


class SceneRenderer:
    """Draws 96×96 frames of the scene from poses (see the module docstring)."""

    def __init__(self, size: int = 96, params: PhysicsParams | None = None) -> None:
        self.size = size
        self.params = params or PhysicsParams()
        src = (np.arange(size) + 0.5) * WORKSPACE / size - 0.5
        lo = np.floor(src).astype(np.int64)
        self.frac = src - lo  # weight of the second sample
        self.coords = np.stack([lo, lo + 1], axis=1).reshape(-1)  # (2·size,) integer surface pixels sampled
        self.static = self._background(self.coords, self.coords)
        self.walls = np.zeros((2 * size, 2 * size), bool)
        for a, b in WALLS:
            self.walls |= _fat_segment(self.coords, self.coords, a, b)
        self.static[self.walls] = WALL_RGB

    @staticmethod
    def _background(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        img = np.empty((len(ys), len(xs), 3), np.float64)
        img[:] = WHITE
        for poly in body_polygons(*GOAL_POSE):
            img[_poly(ys, xs, [_round(x) for x, _ in poly], [_round(y) for _, y in poly])] = GOAL_RGB
        return img

    def cog_to_origin(self, cog: tuple[float, float, float]) -> tuple[float, float, float]:
        gx, gy = self.params.cog_local
        x, y, a = cog
        c, s = math.cos(a), math.sin(a)
        return x - (c * gx - s * gy), y - (s * gx + c * gy), a

    def draw_samples(
        self,
        agent: tuple[float, float] | None,
        block_cog: tuple[float, float, float] | None,
        window: tuple[int, int, int, int] | None = None,
        outline: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The drawing at the sample grid, float (2S, 2S, 3), and bool grids of block and agent coverage.

        window: (y0, y1, x0, x1) in output pixels, to draw only the samples of that crop.
        outline: False draws the block without its outline (cheaper; for coarse pose search).
        """
        y0, y1, x0, x1 = window or (0, self.size, 0, self.size)
        crop = (slice(2 * y0, 2 * y1), slice(2 * x0, 2 * x1))
        ys, xs = self.coords[crop[0]], self.coords[crop[1]]
        img = self.static[crop].copy()
        walls = self.walls[crop]
        block_covered = np.zeros((len(ys), len(xs)), bool)
        if block_cog is not None:
            for verts in body_polygons(*self.cog_to_origin(block_cog)):
                fill, edge = _polygon_drawing(ys, xs, verts, outline)
                img[fill] = BLOCK_FILL
                img[edge] = BLOCK_OUTLINE
                block_covered |= fill | edge
        agent_covered = np.zeros_like(block_covered)
        if agent is not None:
            cx, cy = _round(agent[0]), _round(agent[1])
            agent_covered = _disc(ys, xs, cx, cy, _round(self.params.agent_radius))
            img[agent_covered] = AGENT_RGB
            img[_disc(ys, xs, cx, cy, _round(self.params.agent_radius - 4))] = AGENT_CORE
        img[walls] = WALL_RGB  # the walls are drawn last
        return img, block_covered & ~walls, agent_covered & ~walls

    def resize(self, samples: np.ndarray, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Blend the (2h, 2w, ...) sample grid of `window` (default: the frame) to (h, w, ...) bilinearly."""
        y0, y1, x0, x1 = window or (0, self.size, 0, self.size)
        h, w = y1 - y0, x1 - x0
        g = samples.reshape(h, 2, w, 2, *samples.shape[2:])
        wy = self.frac[y0:y1].reshape(h, 1, *([1] * (samples.ndim - 2)))
        wx = self.frac[x0:x1].reshape(1, w, *([1] * (samples.ndim - 2)))
        top = g[:, 0, :, 0] * (1 - wx) + g[:, 0, :, 1] * wx
        bottom = g[:, 1, :, 0] * (1 - wx) + g[:, 1, :, 1] * wx
        return top * (1 - wy) + bottom * wy

    def render(
        self, agent: tuple[float, float] | None, block_cog: tuple[float, float, float] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(float RGB frame (S, S, 3) in 0..255, bool (S, S) mask of pixels touched by the agent or block)."""
        img, block, agent = self.render_layers(agent, block_cog)
        return img, block | agent

    def render_layers(
        self,
        agent: tuple[float, float] | None,
        block_cog: tuple[float, float, float] | None,
        window: tuple[int, int, int, int] | None = None,
        outline: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(float RGB frame (S, S, 3), bool (S, S) pixels touched by the block, the same for the agent).

        window: (y0, y1, x0, x1) to render only that crop (the arrays are then the crop's).
        outline: False draws the block without its outline (cheaper; for coarse pose search).
        """
        samples, block, disc = self.draw_samples(agent, block_cog, window, outline)
        return (
            self.resize(samples, window),
            self.resize(block.astype(np.float64), window) > 0,
            self.resize(disc.astype(np.float64), window) > 0,
        )
