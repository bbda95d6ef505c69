"""Drawing the Push-T scene at 96×96 as gym-pusht draws it.

gym-pusht draws a 512×512 scene with pygame 2.6 (pymunk's debug draw as gym-pusht
overrides it) and resizes it to 96×96 bilinearly, so each output pixel blends the 2×2
drawing pixels around ``(i + 0.5)·512/96 − 0.5``. `SceneRenderer` computes the drawing
only at those sample pixels, with pygame's own rasterisation re-implemented in integer
and float64 arithmetic (so a drawing at the simulator's poses is the simulator's,
pixel for pixel, before the resize):

* vertices and centres are rounded to whole pixels (``round``, as pymunk's
  ``to_pygame``);
* a polygon is filled by pygame's scanline rule (`fill_polygon_spans`: per row, the
  edges' crossings ``(int)((y − y1)·(x2 − x1)/(y2 − y1) + x1)``, sorted and paired, plus
  horizontal edges strictly inside);
* each edge of a body is a "fat segment" of radius 2 (`fat_segment_pixels`): a
  Bresenham line of width 4, the quad pygame spans around it and two discs of radius 2;
* discs by pygame's midpoint rule (`disc_spans`), the agent's light core (radius 11)
  over its body (radius 15);
* order: floor, goal T, the block's two rectangles (bar, then stem; each filled, then
  outlined), the agent over them, and the walls over everything (pymunk draws static
  shapes last); colours are pymunk's rounded ones (the T's fill is 1.2 × its outline
  colour, rounded: (143, 163, 184)). Not drawn: pymunk's red marks at contact points
  (a few anti-aliased pixels where the agent presses the block).

All in numpy and Python integers: a frame depends only on the poses it is given.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from dream.engine.models.pusht.physics import PhysicsParams, t_polygons_local

__all__ = ["SceneRenderer", "block_labels_at", "disc_spans", "fat_segment_pixels", "fill_polygon_spans"]

WORKSPACE = 512
WHITE = (255.0, 255.0, 255.0)
GOAL_RGB = (144.0, 238.0, 144.0)
WALL_RGB = (211.0, 211.0, 211.0)
BLOCK_OUTLINE = (119.0, 136.0, 153.0)
BLOCK_FILL = (143.0, 163.0, 184.0)  # pymunk's light colour: 1.2 × the outline colour, rounded
AGENT_RGB = (65.0, 105.0, 225.0)
AGENT_CORE = (78.0, 126.0, 255.0)
GOAL_POSE = (256.0, 256.0, math.pi / 4)  # body origin x, y, angle
WALLS = (((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506)))
# the T's rectangles in body coordinates, in the vertex order pymunk keeps them (its convex hull's)
_PYMUNK_ORDER = ((3, 2, 1, 0), (0, 3, 2, 1))


def _c_div2(v: int) -> int:
    """C's ``v / 2`` for ints (truncation toward zero)."""
    return v // 2 if v >= 0 else -((-v) // 2)


def fill_polygon_spans(xs: list[int], ys: list[int]) -> np.ndarray:
    """The rows pygame's ``draw.polygon`` (filled) sets for whole-number vertices: spans (k, 3) of (y, x_lo, x_hi)."""
    return _fill_many(np.array([xs], np.int64), np.array([ys], np.int64))


def _fill_many(xs: np.ndarray, ys: np.ndarray, index: bool = False, only_rows: np.ndarray | None = None,
               rows: np.ndarray | None = None) -> np.ndarray:
    """`fill_polygon_spans` of P polygons of n vertices each (xs, ys (P, n)), every one by pygame's rule
    (``draw_fillpoly``), element-wise; their spans concatenated (with `index`, a 4th column: the polygon's).

    only_rows: compute only these rows (sorted whole pixels; every row is computed on its own,
    so they get the same spans as in the whole polygon's); the one-row special cases and
    horizontal edges may still add spans on other rows. rows: (P, R) whole pixels, the rows
    to compute per polygon (a row outside a polygon's adds nothing), instead of only_rows."""
    p, n = xs.shape
    miny, maxy = ys.min(1), ys.max(1)
    if rows is not None:
        rows = np.asarray(rows, np.int64)
    elif only_rows is None:
        rows = miny[:, None] + np.arange(int((maxy - miny).max()) + 1)[None]  # (P, R)
    else:
        lo = int(np.searchsorted(only_rows, int(miny.min()), side="left"))
        hi = int(np.searchsorted(only_rows, int(maxy.max()), side="right"))
        rows = np.broadcast_to(np.asarray(only_rows[lo:hi], np.int64)[None], (p, hi - lo))
    in_poly = (rows <= maxy[:, None]) & (rows >= miny[:, None])
    rows_f = rows.astype(np.float64)[None]  # (1, P, R)
    # edge i runs from vertex i − 1 (the last for i = 0) to vertex i; all edges at once, as (n, P, 1)
    xa, ya = np.roll(xs, 1, axis=1).T, np.roll(ys, 1, axis=1).T
    xb, yb = xs.T, ys.T
    up = ya < yb
    y1 = np.where(up, ya, yb)[..., None].astype(np.float64)
    y2 = np.where(up, yb, ya)[..., None].astype(np.float64)
    x1 = np.where(up, xa, xb)[..., None].astype(np.float64)
    x2 = np.where(up, xb, xa)[..., None].astype(np.float64)
    slanted = (ya != yb)[..., None]
    last = (rows_f == maxy[None, :, None]) & (y2 == maxy[None, :, None])
    active = slanted & in_poly[None] & (((rows_f >= y1) & (rows_f < y2)) | last)
    x = np.trunc((rows_f - y1) * (x2 - x1) / np.where(slanted, y2 - y1, 1.0) + x1)
    crossings = np.where(active, x, np.inf)
    crossings = np.sort(crossings, axis=0)  # (n, P, R)
    parts = []
    for k in range(0, n - 1, 2):
        pi, ri = np.nonzero(np.isfinite(crossings[k]) & np.isfinite(crossings[k + 1]))
        parts.append(np.stack([rows[pi, ri], crossings[k, pi, ri].astype(np.int64),
                               crossings[k + 1, pi, ri].astype(np.int64), pi], 1))
    # horizontal edges strictly between the top and bottom rows
    ei, pi = np.nonzero((miny[None] < yb) & (yb < maxy[None]) & (ya == yb))
    if len(ei):
        parts.append(np.stack([yb[ei, pi], np.minimum(xa[ei, pi], xb[ei, pi]), np.maximum(xa[ei, pi], xb[ei, pi]), pi], 1))
    flat = np.nonzero(miny == maxy)[0]  # one row high: pygame spans the vertices' x range
    if len(flat):
        parts.append(np.stack([miny[flat], xs[flat].min(1), xs[flat].max(1), flat], 1))
    out = np.concatenate(parts) if parts else np.zeros((0, 4), np.int64)
    return out if index else out[:, :3]


@lru_cache(maxsize=8)
def disc_spans(radius: int) -> np.ndarray:
    """pygame's filled circle of `radius` about (0, 0): spans (k, 3) of (dy, dx_lo, dx_hi). Read-only (cached)."""
    f, ddf_x, ddf_y, x, y = 1 - radius, 0, -2 * radius, 0, radius
    spans = []
    while x < y:
        if f >= 0:
            y -= 1
            ddf_y += 2
            f += ddf_y
        x += 1
        ddf_x += 2
        f += ddf_x + 1
        if f >= 0:
            spans += [(y - 1, -x, x - 1), (-y, -x, x - 1)]
        spans += [(x - 1, -y, y - 1), (-x, -y, y - 1)]
    out = np.array(spans, np.int64).reshape(-1, 3)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=4096)
def _line_points(dx_signed: int, dy_signed: int) -> np.ndarray:
    """pygame's Bresenham walk (draw_line_width's) from (0, 0) to (dx, dy), both ends included: (m, 2) x, y."""
    x1, y1, x2, y2 = 0, 0, dx_signed, dy_signed
    dx, dy = abs(x2 - x1), abs(y2 - y1)
    sx = 1 if x1 < x2 else -1
    sy = 1 if y1 < y2 else -1
    err = _c_div2(dx if dx > dy else -dy)
    pts = []
    while (x1 != x2 and (x1 - x2 > 0) != (sx > 0)) or (y1 != y2 and (y1 - y2 > 0) != (sy > 0)):
        pts.append((x1, y1))
        e2 = err
        if e2 > -dx:
            err -= dy
            x1 += sx
        if e2 < dy:
            err += dx
            y1 += sy
    pts.append((x1, y1))
    out = np.array(pts, np.int64)
    out.flags.writeable = False
    return out


def _paint_spans(canvas: np.ndarray, ox: int, oy: int, spans: np.ndarray, value: int) -> None:
    """Set `value` on a canvas (whose top-left drawing pixel is (ox, oy)) over spans (k, 3) of (y, x_lo, x_hi)."""
    spans = np.asarray(spans, np.int64).reshape(-1, 3)
    h, w = canvas.shape
    r = spans[:, 0] - oy
    a = np.maximum(spans[:, 1] - ox, 0)
    b = np.minimum(spans[:, 2] - ox, w - 1)
    keep = (r >= 0) & (r < h) & (a <= b)
    r, a, b = r[keep], a[keep], b[keep]
    size = h * (w + 1)
    diff = np.bincount(r * (w + 1) + a, minlength=size) - np.bincount(r * (w + 1) + b + 1, minlength=size)
    canvas[np.cumsum(diff.reshape(h, w + 1)[:, :w], axis=1) > 0] = value


def fat_segment_pixels(p1: tuple[int, int], p2: tuple[int, int]) -> np.ndarray:
    """The spans (k, 3) of (y, x_lo, x_hi) gym-pusht's ``draw_fat_segment`` (radius 2) sets between whole-number ends."""
    return _fat_segments([(p1, p2)])[:, :3]


@lru_cache(maxsize=4096)
def _line_spans(dx: int, dy: int) -> np.ndarray:
    """The spans (y, x_lo, x_hi) of pygame's width-4 line from (0, 0) to (dx, dy) (draw_line_width's). Read-only."""
    pts = _line_points(dx, dy)
    if abs(dx) <= abs(dy):  # pygame grows the line sideways (x)
        out = np.stack([pts[:, 1], pts[:, 0] - 1, pts[:, 0] + 2], 1)
    else:
        out = np.concatenate([np.stack([pts[:, 1] + k, pts[:, 0], pts[:, 0]], 1) for k in (-1, 0, 1, 2)])
    out.flags.writeable = False
    return out


def _fat_segment_parts(segments: list[tuple[tuple[int, int], tuple[int, int]]], groups: list[int]
                       ) -> tuple[list[np.ndarray], list[list[tuple[int, int]]], list[int]]:
    """The lines' and end discs' spans of gym-pusht's fat segments (with a 4th column: the segment's
    group), and the quads still to fill (4 vertices each) with their groups."""
    parts = []
    quads, quad_groups = [], []
    disc = disc_spans(2)
    for ((x1, y1), (x2, y2)), g in zip(segments, groups, strict=True):
        line = _line_spans(x2 - x1, y2 - y1)
        ends = [disc + np.array([y1, x1, x1]), disc + np.array([y2, x2, x2])]
        o0, o1 = abs(y2 - y1), abs(x2 - x1)
        if o0 == 0 and o1 == 0:
            ends = []  # gym-pusht returns before the quad and the end discs
        else:
            scale = 2.0 / (o0 * o0 + o1 * o1) ** 0.5
            o0, o1 = round(o0 * scale), round(o1 * scale)
            quads.append([(x1 - o0, y1 - o1), (x1 + o0, y1 + o1), (x2 + o0, y2 + o1), (x2 - o0, y2 - o1)])
            quad_groups.append(g)
        spans = np.concatenate([line + np.array([y1, x1, x1]), *ends])
        parts.append(np.concatenate([spans, np.full((len(spans), 1), g)], 1))
    return parts, quads, quad_groups


def _fat_segments(segments: list[tuple[tuple[int, int], tuple[int, int]]], groups: list[int] | None = None,
                  only_rows: np.ndarray | None = None) -> np.ndarray:
    """`fat_segment_pixels` of several segments, their spans concatenated (the quads filled in one call).

    groups: a group number per segment, in a 4th column of the spans; only_rows: as `_fill_many`'s."""
    parts, quads, quad_groups = _fat_segment_parts(segments, groups or [0] * len(segments))
    if quads:
        q = np.array(quads, np.int64)
        spans = _fill_many(q[:, :, 0], q[:, :, 1], index=True, only_rows=only_rows)
        spans[:, 3] = np.asarray(quad_groups)[spans[:, 3]]
        parts.append(spans)
    return np.concatenate(parts)


def _rounded(poly: list[tuple[float, float]]) -> list[tuple[int, int]]:
    return [(round(x), round(y)) for x, y in poly]


def _paint_samples(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, spans: np.ndarray, value: int) -> None:
    """Set `value` in `labels` (len(rows), len(cols)) wherever a span (y, x_lo, x_hi) covers a sampled pixel.

    rows, cols: the sorted, distinct whole drawing pixels the labels sample."""
    spans = np.asarray(spans, np.int64).reshape(-1, 3)
    h, w = labels.shape
    ri = np.searchsorted(rows, spans[:, 0])
    ok = ri < h
    ok[ok] = rows[ri[ok]] == spans[ok, 0]
    j0 = np.searchsorted(cols, spans[:, 1], side="left")
    j1 = np.searchsorted(cols, spans[:, 2], side="right")
    ok &= j0 < j1
    ri, j0, j1 = ri[ok], j0[ok], j1[ok]
    size = h * (w + 1)
    diff = np.bincount(ri * (w + 1) + j0, minlength=size) - np.bincount(ri * (w + 1) + j1, minlength=size)
    labels[np.cumsum(diff.reshape(h, w + 1)[:, :w], axis=1) > 0] = value


def block_labels_at(polys: list[list[tuple[int, int]]], rows: np.ndarray, cols: np.ndarray,
                    outline: bool = True) -> np.ndarray:
    """The block as gym-pusht draws its whole-number polygons, at drawing rows × columns (sorted,
    distinct whole pixels): labels (len(rows), len(cols)) uint8, 0 nothing, 1 fill, 2 outline.

    The polygons are drawn in order, each filled and then outlined (gym-pusht's order);
    only the sampled rows are rasterised."""
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    labels = np.zeros((len(rows), len(cols)), np.uint8)
    # one scanline fill for the rectangles (closed by a repeated first vertex, as gym-pusht passes them) and
    # the outline's quads (their last vertex repeated: a zero-length edge, which adds no pixel)
    shapes = [[*poly, poly[0]] for poly in polys]
    groups = list(range(len(polys)))
    lines = np.zeros((0, 4), np.int64)
    if outline:
        edges = [(poly[i], poly[(i + 1) % len(poly)]) for poly in polys for i in range(len(poly))]
        parts, quads, quad_groups = _fat_segment_parts(edges, [k for k, poly in enumerate(polys) for _ in poly])
        shapes += [[*q, q[-1]] for q in quads]
        groups += [len(polys) + g for g in quad_groups]
        lines = np.concatenate(parts)
    v = np.array(shapes, np.int64)
    spans = _fill_many(v[:, :, 0], v[:, :, 1], index=True, only_rows=rows)
    spans[:, 3] = np.asarray(groups)[spans[:, 3]]
    fills = spans[spans[:, 3] < len(polys)]
    quad_spans = spans[spans[:, 3] >= len(polys)]
    quad_spans[:, 3] -= len(polys)
    lines = np.concatenate([lines, quad_spans])
    for k in range(len(polys)):
        _paint_samples(labels, rows, cols, fills[fills[:, 3] == k, :3], 1)
        if outline:
            _paint_samples(labels, rows, cols, lines[lines[:, 3] == k, :3], 2)
    return labels


@lru_cache(maxsize=4096)
def _edge_shape(dx: int, dy: int) -> tuple[np.ndarray, int, int]:
    """A fat segment's edge from (0, 0) to (dx, dy) ≠ (0, 0): its width-4 line's spans and the
    half-widths (o0, o1) of the quad gym-pusht fills around it (as `_fat_segment_parts` computes them)."""
    o0, o1 = abs(dy), abs(dx)
    scale = 2.0 / (o0 * o0 + o1 * o1) ** 0.5
    return _line_spans(dx, dy), round(o0 * scale), round(o1 * scale)


_NO_ROW = -(1 << 40)  # a row no polygon reaches (padding of `_block_labels_many`'s rows)


def _block_labels_many(verts: np.ndarray, coords: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`block_labels_at` (outlined) of J blocks at once, each over the samples of its bounding box
    grown by 4 px (as `SceneRenderer.block_labels` rasterises it), vectorised across blocks.

    verts: (J, 2, 4, 2) whole-pixel (x, y) vertices of each block's two polygons (pymunk's
    order); coords: the sorted, distinct whole pixels sampled (rows and columns alike).
    Every polygon, line and disc is rasterised by the same rules and arithmetic as in
    `block_labels_at`, element-wise per block, so each block's labels equal its own call's.
    Returns (labels (J, R, C) uint8, r0, c0, nr, nc (J,)): block j's labels are
    ``labels[j, :nr[j], :nc[j]]``, over samples ``coords[r0[j]:r0[j] + nr[j]]`` ×
    ``coords[c0[j]:c0[j] + nc[j]]``.
    """
    verts = np.asarray(verts, np.int64)
    j = len(verts)
    xs, ys = verts[..., 0], verts[..., 1]
    r0 = np.searchsorted(coords, ys.min((1, 2)) - 4, side="left")
    nr = np.searchsorted(coords, ys.max((1, 2)) + 4, side="right") - r0
    c0 = np.searchsorted(coords, xs.min((1, 2)) - 4, side="left")
    nc = np.searchsorted(coords, xs.max((1, 2)) + 4, side="right") - c0
    big_r, big_c = int(nr.max()), int(nc.max())
    ar = np.arange(big_r)
    rows = np.where(ar[None] < nr[:, None], coords[np.minimum(r0[:, None] + ar, len(coords) - 1)], _NO_ROW)  # (J, R)
    # layers, drawn in this order per block: bar fill (1), bar outline (2), stem fill (1), stem outline (2)
    layer_of_poly = 4 * np.arange(j)[:, None] + 2 * np.arange(2)[None]  # (J, 2): the fill's layer
    # the edges of each polygon, i to i + 1 (as gym-pusht outlines them)
    p1 = verts.reshape(-1, 2)
    p2 = np.roll(verts, -1, axis=2).reshape(-1, 2)
    edge_layer = np.repeat(layer_of_poly.reshape(-1) + 1, 4)
    d = p2 - p1
    lines, offsets = [], []
    for dx, dy in d.tolist():
        if dx == 0 and dy == 0:  # gym-pusht draws the line alone (no quad, no end discs)
            lines.append(_line_spans(0, 0))
            offsets.append((0, 0))
        else:
            line, o0, o1 = _edge_shape(dx, dy)
            lines.append(line)
            offsets.append((o0, o1))
    counts = [len(line) for line in lines]
    starts = np.repeat(np.stack([p1[:, 1], p1[:, 0], p1[:, 0]], 1), counts, axis=0)
    line_spans = np.concatenate(lines) + starts
    line_layers = np.repeat(edge_layer, counts)
    real = np.any(d != 0, axis=1)
    e1, e2, el = p1[real], p2[real], edge_layer[real]
    disc = disc_spans(2)
    ends = np.stack([e1[:, 1], e1[:, 0], e1[:, 0], e2[:, 1], e2[:, 0], e2[:, 0]], 1).reshape(-1, 2, 1, 3)
    disc_all = (ends + disc[None, None]).reshape(-1, 3)
    disc_layers = np.repeat(el, 2 * len(disc))
    o = np.array(offsets, np.int64).reshape(-1, 2)[real]  # (o0, o1): x and y half-widths
    q = np.stack([e1 - o, e1 + o, e2 + o, e2 - o, e2 - o], 1)  # (E, 5, 2), the last vertex repeated
    # one scanline fill for the rectangles (closed by a repeated first vertex, as gym-pusht passes
    # them) and the outlines' quads (their last vertex repeated, as `block_labels_at` passes them)
    closed = np.concatenate([verts, verts[:, :, :1]], axis=2).reshape(-1, 5, 2)
    shapes = np.concatenate([closed, q])
    shape_layer = np.concatenate([layer_of_poly.reshape(-1), el])
    fills = _fill_many(shapes[:, :, 0], shapes[:, :, 1], index=True, rows=rows[shape_layer // 4])
    spans = np.concatenate([line_spans, disc_all, fills[:, :3]])
    layer = np.concatenate([line_layers, disc_layers, shape_layer[fills[:, 3]]])
    block = layer // 4
    # to sample indices within each block's window (as `_paint_samples` maps them)
    gi = np.searchsorted(coords, spans[:, 0])
    ok = gi < len(coords)
    ok[ok] = coords[gi[ok]] == spans[ok, 0]
    ri = gi - r0[block]
    ok &= (ri >= 0) & (ri < nr[block])
    j0 = np.clip(np.searchsorted(coords, spans[:, 1], side="left") - c0[block], 0, nc[block])
    j1 = np.clip(np.searchsorted(coords, spans[:, 2], side="right") - c0[block], 0, nc[block])
    ok &= j0 < j1
    flat = (layer[ok] * big_r + ri[ok]) * (big_c + 1)
    size = 4 * j * big_r * (big_c + 1)
    diff = np.bincount(flat + j0[ok], minlength=size) - np.bincount(flat + j1[ok], minlength=size)
    cover = np.cumsum(diff.reshape(j, 4, big_r, big_c + 1)[..., :big_c], axis=3) > 0
    labels = np.zeros((j, big_r, big_c), np.uint8)
    for k, value in enumerate((1, 2, 1, 2)):
        labels[cover[:, k]] = value
    return labels, r0, c0, nr, nc


@lru_cache(maxsize=4)
def _agent_canvas(r: int) -> np.ndarray:
    """The agent's disc of radius `r` (1) with its light core of radius r − 4 (2), centred at (r, r). Read-only."""
    canvas = np.zeros((2 * r + 1, 2 * r + 1), np.uint8)
    _paint_spans(canvas, -r, -r, disc_spans(r), 1)
    _paint_spans(canvas, -r, -r, disc_spans(r - 4), 2)
    canvas.flags.writeable = False
    return canvas


def _lookup(canvas: np.ndarray, ox: int, oy: int, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """Labels of a canvas at whole-pixel columns `ix` (w,) and rows `iy` (h,) of the 512² drawing: (h, w), 0 outside."""
    h, w = canvas.shape
    cx, cy = ix - ox, iy - oy
    okx, oky = (cx >= 0) & (cx < w), (cy >= 0) & (cy < h)
    out = canvas[np.ix_(np.clip(cy, 0, h - 1), np.clip(cx, 0, w - 1))]
    return np.where(oky[:, None] & okx[None, :], out, 0)


def body_polygons(origin_x: float, origin_y: float, angle: float) -> list[list[tuple[float, float]]]:
    """The T's rectangles (bar, stem) in workspace px for a body-origin pose, in pymunk's vertex order."""
    c, s = math.cos(angle), math.sin(angle)
    local = [[poly[i] for i in order] for poly, order in zip(t_polygons_local(), _PYMUNK_ORDER, strict=True)]
    return [[(origin_x + c * x - s * y, origin_y + s * x + c * y) for x, y in poly] for poly in local]


class SceneRenderer:
    """Draws 96×96 frames of the scene from poses (see the module docstring)."""

    def __init__(self, size: int = 96, params: PhysicsParams | None = None) -> None:
        self.size = size
        self.params = params or PhysicsParams()
        src = (np.arange(size) + 0.5) * WORKSPACE / size - 0.5
        lo = np.floor(src).astype(np.int64)
        self.frac = src - lo  # weight of the second sample
        # every weight strictly between 0 and 1: a blended mask is > 0 exactly where one of its 2×2 samples is set
        self._masks_by_or = bool(np.all((self.frac > 0) & (1 - self.frac > 0)))
        self.coords = np.stack([lo, lo + 1], axis=1).reshape(-1)  # (2·size,) whole drawing pixels sampled
        self.sy, self.sx = np.meshgrid(self.coords.astype(np.float64), self.coords.astype(np.float64), indexing="ij")
        self.static = self._static_layer()
        self._blocks: dict[tuple, tuple[np.ndarray, int, int]] = {}  # block labels per drawn shape (bounded)

    def _static_layer(self) -> np.ndarray:
        """Floor, goal T and walls at the sample grid, float (2S, 2S, 3)."""
        canvas = np.zeros((WORKSPACE, WORKSPACE), np.uint8)
        for poly in body_polygons(*GOAL_POSE):
            closed = [*_rounded(poly), _rounded(poly)[0]]
            _paint_spans(canvas, 0, 0, fill_polygon_spans([p[0] for p in closed], [p[1] for p in closed]), 1)
        for a, b in WALLS:
            _paint_spans(canvas, 0, 0, fat_segment_pixels(a, b), 2)
        labels = canvas[np.ix_(self.coords, self.coords)]
        img = np.empty((*labels.shape, 3), np.float64)
        img[:] = WHITE
        img[labels == 1] = GOAL_RGB
        img[labels == 2] = WALL_RGB
        self.walls = labels == 2  # drawn over the bodies too (static shapes come last)
        self.static_labels = labels  # 0 floor, 1 goal, 2 wall
        return img

    def cog_to_origin(self, cog: tuple[float, float, float]) -> tuple[float, float, float]:
        gx, gy = self.params.cog_local
        x, y, a = cog
        c, s = math.cos(a), math.sin(a)
        return x - (c * gx - s * gy), y - (s * gx + c * gy), a

    def _block_key(self, block_cog: tuple[float, float, float]) -> tuple[list[list[tuple[int, int]]], tuple]:
        """The block's whole-pixel polygons at `block_cog` and its key in the raster cache."""
        polys = [_rounded(poly) for poly in body_polygons(*self.cog_to_origin(block_cog))]
        return polys, (tuple(v for poly in polys for v in poly), True)

    def block_rasters(self, block_cogs: list[tuple[float, float, float]]) -> list[tuple[np.ndarray, int, int]]:
        """The outlined block's labels over the samples of its bounding box (as `block_labels` keeps
        them: (labels, first sample row, first sample column)) at each pose; those not kept yet
        are rasterised in one call (`_block_labels_many`), with the same labels as one by one."""
        keyed = [self._block_key(cog) for cog in block_cogs]
        out: list[tuple[np.ndarray, int, int] | None] = [self._blocks.get(key) for _, key in keyed]
        missing: dict[tuple, list[list[tuple[int, int]]]] = {}
        for (polys, key), got in zip(keyed, out, strict=True):
            if got is None:
                missing[key] = polys
        if missing:
            labels, r0, c0, nr, nc = _block_labels_many(np.array(list(missing.values()), np.int64), self.coords)
            if len(self._blocks) + len(missing) > 512:
                self._blocks.clear()
            fresh = {key: (labels[i, : nr[i], : nc[i]].copy(), int(r0[i]), int(c0[i])) for i, key in enumerate(missing)}
            self._blocks.update(fresh)
            out = [got if got is not None else fresh[key] for (_, key), got in zip(keyed, out, strict=True)]
        return out  # type: ignore[return-value]

    def block_labels(self, block_cog: tuple[float, float, float], window: tuple[int, int, int, int],
                     outline: bool = True) -> np.ndarray:
        """The block's labels (0 none, 1 fill, 2 outline) at the sample grid of `window` (y0, y1, x0, x1 in
        output pixels): (2·(y1 − y0), 2·(x1 − x0)) uint8.

        The block is rasterised once per drawn shape (its whole-pixel vertices) over the samples
        of its bounding box and kept for the next windows that ask (a frame draws one pose in
        several crops; a pose fit revisits poses): the labels are a function of the vertices.
        """
        polys = [_rounded(poly) for poly in body_polygons(*self.cog_to_origin(block_cog))]
        key = (tuple(v for poly in polys for v in poly), outline)
        cached = self._blocks.get(key)
        if cached is None:
            xs = [x for poly in polys for x, _ in poly]
            ys = [y for poly in polys for _, y in poly]
            r0 = int(np.searchsorted(self.coords, min(ys) - 4, side="left"))
            r1 = int(np.searchsorted(self.coords, max(ys) + 4, side="right"))
            c0 = int(np.searchsorted(self.coords, min(xs) - 4, side="left"))
            c1 = int(np.searchsorted(self.coords, max(xs) + 4, side="right"))
            cached = (block_labels_at(polys, self.coords[r0:r1], self.coords[c0:c1], outline), r0, c0)
            if len(self._blocks) >= 512:
                self._blocks.clear()
            self._blocks[key] = cached
        labels, r0, c0 = cached
        y0, y1, x0, x1 = window
        out = np.zeros((2 * (y1 - y0), 2 * (x1 - x0)), np.uint8)
        ra, rb = max(2 * y0, r0), min(2 * y1, r0 + labels.shape[0])
        ca, cb = max(2 * x0, c0), min(2 * x1, c0 + labels.shape[1])
        if ra < rb and ca < cb:
            out[ra - 2 * y0 : rb - 2 * y0, ca - 2 * x0 : cb - 2 * x0] = labels[ra - r0 : rb - r0, ca - c0 : cb - c0]
        return out

    def agent_labels(self, agent: tuple[float, float], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The agent's labels (0 none, 1 body, 2 light core) at drawing rows × columns (whole pixels)."""
        r = round(self.params.agent_radius)
        return _lookup(_agent_canvas(r), round(agent[0]) - r, round(agent[1]) - r, cols, rows)

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
        rows, cols = self.coords[2 * y0 : 2 * y1], self.coords[2 * x0 : 2 * x1]
        img = self.static[2 * y0 : 2 * y1, 2 * x0 : 2 * x1].copy()
        agent_cov = np.zeros((len(rows), len(cols)), bool)
        block_cov = np.zeros((len(rows), len(cols)), bool)
        if block_cog is not None:
            lab = self.block_labels(block_cog, (y0, y1, x0, x1), outline)
            img[lab == 1] = BLOCK_FILL
            img[lab == 2] = BLOCK_OUTLINE
            block_cov = lab > 0
        if agent is not None:
            lab = self.agent_labels(agent, rows, cols)
            img[lab == 1] = AGENT_RGB
            img[lab == 2] = AGENT_CORE
            agent_cov = lab > 0
        if block_cov.any() or agent_cov.any():
            walls = self.walls[2 * y0 : 2 * y1, 2 * x0 : 2 * x1]
            img[walls & (block_cov | agent_cov)] = WALL_RGB
        return img, block_cov, agent_cov

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
        return self.resize(samples, window), self.touched(block, window), self.touched(disc, window)

    def touched(self, mask: np.ndarray, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """``resize(mask) > 0`` of a bool sample grid (2h, 2w): the output pixels a set sample
        reaches. With every blend weight strictly between 0 and 1 (96×96 frames) that is
        "any of the pixel's 2×2 samples", which is computed so (the same bools, cheaper)."""
        if not self._masks_by_or:
            return self.resize(mask.astype(np.float64), window) > 0
        h, w = mask.shape[0] // 2, mask.shape[1] // 2
        g = mask.reshape(h, 2, w, 2)
        return g[:, 0, :, 0] | g[:, 0, :, 1] | g[:, 1, :, 0] | g[:, 1, :, 1]


def render_windows(
    renderer: SceneRenderer,
    agents: list[tuple[float, float] | None],
    blocks: list[tuple[float, float, float] | None],
    windows: np.ndarray,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`SceneRenderer.render_layers` for P scenes at once, each in its own crop.

    agents / blocks: P poses (or None); windows: (P, 2) top-left (y0, x0) of crops of one
    `size` (h, w), inside the frame. The blocks not rasterised yet are rasterised in one
    call (`SceneRenderer.block_rasters`, vectorised across blocks), the agents' discs looked
    up, and the samples of all crops coloured (by `draw_samples`' rule: the static layer,
    the block, the agent, the walls over them) and blended at once, element by element
    with `resize`'s float arithmetic, so each crop's pixels are bit-identical to
    ``render_layers(agent, block, (y0, y0 + h, x0, x0 + w))``: fusing scenes changes no
    byte (tests/pusht/test_render_batched.py).
    Returns (img (P, h, w, 3), block-touched (P, h, w), agent-touched (P, h, w)).
    """
    p = len(agents)
    h, w = size
    windows = np.asarray(windows, np.int64).reshape(p, 2)
    sr = 2 * windows[:, 0, None] + np.arange(2 * h)  # (P, 2h) sample rows
    sc = 2 * windows[:, 1, None] + np.arange(2 * w)  # (P, 2w) sample columns
    static = renderer.static_labels[sr[:, :, None], sc[:, None, :]]  # (P, 2h, 2w)
    block_lab = np.zeros((p, 2 * h, 2 * w), np.uint8)
    with_block = [i for i in range(p) if blocks[i] is not None]
    if with_block:
        rasters = renderer.block_rasters([blocks[i] for i in with_block])  # type: ignore[misc]
        for i, (labels, r0, c0) in zip(with_block, rasters, strict=True):
            ya, xa = 2 * int(windows[i, 0]), 2 * int(windows[i, 1])
            ra, rb = max(ya, r0), min(ya + 2 * h, r0 + labels.shape[0])
            ca, cb = max(xa, c0), min(xa + 2 * w, c0 + labels.shape[1])
            if ra < rb and ca < cb:
                block_lab[i, ra - ya : rb - ya, ca - xa : cb - xa] = labels[ra - r0 : rb - r0, ca - c0 : cb - c0]
    r = round(renderer.params.agent_radius)
    canvas = _agent_canvas(r)
    n_can = canvas.shape[0]
    origin = np.array([(round(a[1]) - r, round(a[0]) - r) if a is not None else (-(1 << 30), -(1 << 30))
                       for a in agents], np.int64).reshape(p, 2)  # (y, x) of the canvas' top-left
    cy = renderer.coords[sr] - origin[:, :1]
    cx = renderer.coords[sc] - origin[:, 1:]
    inside = ((cy >= 0) & (cy < n_can))[:, :, None] & ((cx >= 0) & (cx < n_can))[:, None, :]
    agent_lab = np.where(inside, canvas[np.clip(cy, 0, n_can - 1)[:, :, None], np.clip(cx, 0, n_can - 1)[:, None, :]], 0)
    # draw_samples' order: the static layer, the block (fill 3, outline 4), the agent (body 5, core 6),
    # then the walls over whatever covers them (they are the static layer's walls already elsewhere)
    colour = np.where(block_lab > 0, block_lab + 2, static)
    colour = np.where(agent_lab > 0, agent_lab + 4, colour)
    colour = np.where(static == 2, 2, colour)
    img = _PALETTE[colour]
    block_cov, agent_cov = block_lab > 0, agent_lab > 0
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

    if renderer._masks_by_or:  # as `SceneRenderer.touched`
        def touched(mask: np.ndarray) -> np.ndarray:
            g = mask.reshape(p, h, 2, w, 2)
            return g[:, :, 0, :, 0] | g[:, :, 0, :, 1] | g[:, :, 1, :, 0] | g[:, :, 1, :, 1]

        return blend(img), touched(block_cov), touched(agent_cov)
    return blend(img), blend(block_cov.astype(np.float64)) > 0, blend(agent_cov.astype(np.float64)) > 0


# render_windows' colours by index: the static layer's labels (floor, goal, wall), block fill, outline, agent body, core
_PALETTE = np.array([WHITE, GOAL_RGB, WALL_RGB, BLOCK_FILL, BLOCK_OUTLINE, AGENT_RGB, AGENT_CORE], np.float64)
