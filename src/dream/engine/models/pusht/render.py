"""Drawing the Push-T scene at 96×96, and fitting the agent and block pose to a frame.

The observation is a 512×512 drawing resized to 96×96 bilinearly, so each output pixel
blends the 2×2 drawing pixels around ``(i + 0.5)·512/96 − 0.5``. `SceneRenderer`
evaluates the drawing only at those sample pixels: the white floor, the green goal T,
the grey walls, the block (a light fill inside a 2-px outline per rectangle) and the
agent (a blue disc with a lighter core). All in numpy, row by row of nothing shared:
a frame depends only on the poses it is given.
"""

from __future__ import annotations

import math

import numpy as np

from dream.engine.models.pusht.physics import PhysicsParams, t_polygons_local

__all__ = ["SceneRenderer"]

WORKSPACE = 512
WHITE = (255.0, 255.0, 255.0)
GOAL_RGB = (144.0, 238.0, 144.0)
WALL_RGB = (211.0, 211.0, 211.0)
BLOCK_OUTLINE = (119.0, 136.0, 153.0)
BLOCK_FILL = (142.8, 163.2, 183.6)  # 1.2 × the outline colour
AGENT_RGB = (65.0, 105.0, 225.0)
AGENT_CORE = (78.0, 126.0, 255.0)
GOAL_POSE = (256.0, 256.0, math.pi / 4)  # body origin x, y, angle


def _grid_block(px: np.ndarray, py: np.ndarray, x_lo: float, x_hi: float, y_lo: float, y_hi: float
                ) -> tuple[slice, slice]:
    """The rows and columns of a sample grid (x along columns, y along rows, both non-decreasing)
    whose samples lie in [x_lo, x_hi] × [y_lo, y_hi], with a margin far above rounding."""
    ys, xs = py[:, 0], px[0, :]
    rows = slice(int(np.searchsorted(ys, y_lo - 1e-6, "left")), int(np.searchsorted(ys, y_hi + 1e-6, "right")))
    cols = slice(int(np.searchsorted(xs, x_lo - 1e-6, "left")), int(np.searchsorted(xs, x_hi + 1e-6, "right")))
    return rows, cols


def _inside_convex(px: np.ndarray, py: np.ndarray, poly: list[tuple[float, float]]) -> np.ndarray:
    """Samples of a grid (`_grid_block`'s layout) inside a convex polygon, edges included.

    Only the samples in the polygon's bounding box are tested (no other can be inside),
    with the same arithmetic as testing them all.
    """
    sign = 0.0
    n = len(poly)
    for i in range(n):
        sign += poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1]
    out = np.zeros(px.shape, bool)
    rows, cols = _grid_block(px, py, min(x for x, _ in poly), max(x for x, _ in poly),
                             min(y for _, y in poly), max(y for _, y in poly))
    bx_, by_ = px[rows, cols], py[rows, cols]
    if bx_.size == 0:
        return out
    inside = np.ones(bx_.shape, bool)
    for i in range(n):
        ax, ay = poly[i]
        bx, by = poly[(i + 1) % n]
        cross = (bx - ax) * (by_ - ay) - (by - ay) * (bx_ - ax)
        inside &= cross * sign >= 0
    out[rows, cols] = inside
    return out


def _near_boundary(px: np.ndarray, py: np.ndarray, poly: list[tuple[float, float]], radius: float) -> np.ndarray:
    """Samples of a grid within `radius` of the polygon's outline: squared distance to an edge ≤ radius².

    Each edge is measured only over the samples in its bounding box grown by `radius` (no
    other sample can be that close), with the same arithmetic as measuring them all.
    """
    near = np.zeros(px.shape, bool)
    n = len(poly)
    r2 = radius * radius
    for i in range(n):
        ax, ay = poly[i]
        bx, by = poly[(i + 1) % n]
        rows, cols = _grid_block(px, py, min(ax, bx) - radius, max(ax, bx) + radius,
                                 min(ay, by) - radius, max(ay, by) + radius)
        sx, sy = px[rows, cols], py[rows, cols]
        if sx.size == 0:
            continue
        ex, ey = bx - ax, by - ay
        t = np.clip(((sx - ax) * ex + (sy - ay) * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        near[rows, cols] |= (sx - ax - t * ex) ** 2 + (sy - ay - t * ey) ** 2 <= r2
    return near


def body_polygons(origin_x: float, origin_y: float, angle: float) -> list[list[tuple[float, float]]]:
    """The T's rectangles in workspace px for a body-origin pose."""
    c, s = math.cos(angle), math.sin(angle)
    return [[(origin_x + c * x - s * y, origin_y + s * x + c * y) for x, y in poly] for poly in t_polygons_local()]


class SceneRenderer:
    """Draws 96×96 frames of the scene from poses (see the module docstring)."""

    def __init__(self, size: int = 96, params: PhysicsParams | None = None, offset: float = 0.0) -> None:
        self.size = size
        self.params = params or PhysicsParams()
        src = (np.arange(size) + 0.5) * WORKSPACE / size - 0.5
        lo = np.floor(src).astype(np.int64)
        self.frac = src - lo  # weight of the second sample
        coords = np.stack([lo, lo + 1], axis=1).reshape(-1).astype(np.float64) + offset  # (2·size,)
        self.sy, self.sx = np.meshgrid(coords, coords, indexing="ij")  # sample grid (2·size, 2·size)
        self.static = self._static_layer()

    def _static_layer(self) -> np.ndarray:
        img = np.empty((*self.sx.shape, 3), np.float64)
        img[:] = WHITE
        for poly in body_polygons(*GOAL_POSE):
            poly = [(round(x), round(y)) for x, y in poly]
            img[_inside_convex(self.sx, self.sy, poly)] = GOAL_RGB
        low, high = 5.0, 506.0
        wall = (
            ((np.abs(self.sx - low) <= 2) | (np.abs(self.sx - high) <= 2)) & (self.sy >= low - 2) & (self.sy <= high + 2)
        ) | (((np.abs(self.sy - low) <= 2) | (np.abs(self.sy - high) <= 2)) & (self.sx >= low - 2) & (self.sx <= high + 2))
        img[wall] = WALL_RGB
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
        sx, sy = self.sx[crop], self.sy[crop]
        img = self.static[crop].copy()
        covered = np.zeros(sx.shape, bool)
        if block_cog is not None:
            for poly in body_polygons(*self.cog_to_origin(block_cog)):
                poly = [(round(x), round(y)) for x, y in poly]
                fill = _inside_convex(sx, sy, poly)
                img[fill] = BLOCK_FILL
                covered |= fill
                if outline:
                    edge = _near_boundary(sx, sy, poly, 2.0)
                    img[edge] = BLOCK_OUTLINE
                    covered |= edge
        block_covered = covered
        covered = np.zeros(sx.shape, bool)
        if agent is not None:
            cx, cy = round(agent[0]), round(agent[1])
            d2 = (sx - cx) ** 2 + (sy - cy) ** 2
            disc = d2 <= self.params.agent_radius**2
            img[disc] = AGENT_RGB
            img[d2 <= (self.params.agent_radius - 4) ** 2] = AGENT_CORE
            covered |= disc
        return img, block_covered, covered

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


def render_windows(
    renderer: SceneRenderer,
    agents: list[tuple[float, float] | None],
    blocks: list[tuple[float, float, float] | None],
    windows: np.ndarray,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`SceneRenderer.render_layers` for P scenes at once, each in its own crop.

    agents / blocks: P poses (or None); windows: (P, 2) top-left (y0, x0) of crops of one
    `size` (h, w), inside the frame. Every sample and pixel goes through the same
    arithmetic as `render_layers`' (element-wise, the polygons' vertices rounded by the
    same Python code), so each crop's pixels are bit-identical to ``render_layers(agent,
    block, (y0, y0 + h, x0, x0 + w))``: fusing scenes changes no byte.
    Returns (img (P, h, w, 3), block-touched (P, h, w), agent-touched (P, h, w)).
    """
    p = len(agents)
    h, w = size
    ys = 2 * windows[:, 0, None] + np.arange(2 * h)  # (P, 2h) sample rows
    xs = 2 * windows[:, 1, None] + np.arange(2 * w)
    sy = renderer.sy[ys[:, :, None], xs[:, None, :]]  # (P, 2h, 2w)
    sx = renderer.sx[ys[:, :, None], xs[:, None, :]]
    img = renderer.static[ys[:, :, None], xs[:, None, :]]  # a copy: fancy indexing
    block_cov = np.zeros(sx.shape, bool)
    agent_cov = np.zeros(sx.shape, bool)
    has_block = [i for i in range(p) if blocks[i] is not None]
    if has_block:
        # vertices exactly as render_layers rounds them, per scene, in Python
        polys = [[[(round(x), round(y)) for x, y in poly] for poly in body_polygons(*renderer.cog_to_origin(blocks[i]))]
                 for i in has_block]
        bx, by = sx[has_block], sy[has_block]
        sub_img = img[has_block]
        sub_cov = np.zeros(bx.shape, bool)
        for k in range(2):
            verts = np.array([pl[k] for pl in polys], np.float64)  # (B, 4, 2), whole numbers
            sign = np.array([_winding(pl[k]) for pl in polys], np.float64)[:, None, None]
            ax, ay = verts[:, :, 0, None, None], verts[:, :, 1, None, None]  # (B, 4, 1, 1)
            fill = np.ones(bx.shape, bool)
            near = np.zeros(bx.shape, bool)
            for e in range(4):
                x0, y0 = ax[:, e], ay[:, e]
                x1, y1 = ax[:, (e + 1) % 4], ay[:, (e + 1) % 4]
                cross = (x1 - x0) * (by - y0) - (y1 - y0) * (bx - x0)
                fill &= cross * sign >= 0
                ex, ey = x1 - x0, y1 - y0
                t = np.clip(((bx - x0) * ex + (by - y0) * ey) / (ex * ex + ey * ey), 0.0, 1.0)
                near |= (bx - x0 - t * ex) ** 2 + (by - y0 - t * ey) ** 2 <= 4.0
            sub_img[fill] = BLOCK_FILL
            sub_cov |= fill
            sub_img[near] = BLOCK_OUTLINE
            sub_cov |= near
        img[has_block] = sub_img
        block_cov[has_block] = sub_cov
    has_agent = [i for i in range(p) if agents[i] is not None]
    if has_agent:
        centres = np.array([(round(agents[i][0]), round(agents[i][1])) for i in has_agent], np.float64)
        cx, cy = centres[:, 0, None, None], centres[:, 1, None, None]
        d2 = (sx[has_agent] - cx) ** 2 + (sy[has_agent] - cy) ** 2
        disc = d2 <= renderer.params.agent_radius**2
        sub_img = img[has_agent]
        sub_img[disc] = AGENT_RGB
        sub_img[d2 <= (renderer.params.agent_radius - 4) ** 2] = AGENT_CORE
        img[has_agent] = sub_img
        agent_cov[has_agent] = disc
    wy = renderer.frac[windows[:, 0, None] + np.arange(h)]  # (P, h)
    wx = renderer.frac[windows[:, 1, None] + np.arange(w)]  # (P, w)

    def blend(samples: np.ndarray) -> np.ndarray:
        g = samples.reshape(p, h, 2, w, 2, *samples.shape[3:])
        extra = (1,) * (samples.ndim - 3)
        fy = wy.reshape(p, h, 1, *extra)
        fx = wx.reshape(p, 1, w, *extra)
        top = g[:, :, 0, :, 0] * (1 - fx) + g[:, :, 0, :, 1] * fx
        bottom = g[:, :, 1, :, 0] * (1 - fx) + g[:, :, 1, :, 1] * fx
        return top * (1 - fy) + bottom * fy

    return blend(img), blend(block_cov.astype(np.float64)) > 0, blend(agent_cov.astype(np.float64)) > 0


def _winding(poly: list[tuple[int, int]]) -> int:
    """Twice the signed area of a polygon with whole-number vertices (`_inside_convex`'s `sign`)."""
    n = len(poly)
    return sum(poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1] for i in range(n))
