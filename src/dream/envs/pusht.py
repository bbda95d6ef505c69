"""Push-T's reward read off frames: how much of the goal zone the T-block covers.

gym-pusht scores a state by its *coverage*: the area of the goal T (fixed at body
position (256, 256), angle π/4) that the block's T overlaps, over the goal's area; the
reward is ``clip(coverage / 0.95, 0, 1)`` and an episode succeeds (terminates) once
``coverage > 0.95``. The simulator computes it from its state; a world model has only
frames. `pusht_coverage` reads the block's pose off a 96×96 frame
(`dream.engine.models.pusht.posefit.read_scene`) and intersects that T with the goal T
exactly (`block_coverage`), so what it estimates is the simulator's own quantity.
`PushTCoverage`, the environments' reward, skips the reading where the model's own block
pose is at hand (the embedded engine): pusht-96 draws the frame from that pose.

Its error against the simulator's coverage, on test-split frames, is measured by
``python bench/coverage.py`` (README, "Policy evaluation").

Numpy only: no simulator, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "GOAL_POSE",
    "SUCCESS_THRESHOLD",
    "PushTCoverage",
    "block_coverage",
    "pusht_coverage",
    "pusht_reward",
]

GOAL_POSE = (256.0, 256.0, math.pi / 4)  # gym-pusht's goal: body origin x, y and angle
SUCCESS_THRESHOLD = 0.95  # gym-pusht: success (and termination) once coverage > 0.95
_COG_LOCAL_Y = 45.0  # the block's centre of gravity in its body coordinates: (0, 45)
# The T's two rectangles in body coordinates (gym-pusht's add_tee, scale 30, length 4):
# x0, x1, y0, y1 of the bar and of the stem.
_RECTS = ((-60.0, 60.0, 0.0, 30.0), (-15.0, 15.0, 30.0, 120.0))
_T_AREA = 120.0 * 30.0 + 30.0 * 90.0


def _corners(origin: np.ndarray) -> np.ndarray:
    """The T's rectangles for body-origin poses (N, 3): corners (N, 2, 4, 2), counter-clockwise."""
    x, y, a = origin[:, 0, None], origin[:, 1, None], origin[:, 2, None]
    c, s = np.cos(a), np.sin(a)
    out = np.empty((len(origin), 2, 4, 2))
    for i, (x0, x1, y0, y1) in enumerate(_RECTS):
        lx = np.array([x0, x1, x1, x0])
        ly = np.array([y0, y0, y1, y1])
        out[:, i, :, 0] = x + c * lx - s * ly
        out[:, i, :, 1] = y + s * lx + c * ly
    return out


_GOAL_CORNERS = _corners(np.array([GOAL_POSE]))[0]  # (2, 4, 2)
_GOAL_BOX = (_GOAL_CORNERS[..., 0].min(), _GOAL_CORNERS[..., 0].max(),
             _GOAL_CORNERS[..., 1].min(), _GOAL_CORNERS[..., 1].max())  # the goal T's bounding box


def _clipped_boundary_area(a: np.ndarray, b: np.ndarray, *, shared_edges: bool) -> np.ndarray:
    """Σ over the edges of convex polygons `a` (N, 4, 2) of ½(x0·y1 − x1·y0) for the part of
    the edge inside convex polygons `b` (N, 4, 2) (both wound the same way).

    The boundary of a ∩ b is the parts of a's edges inside b and of b's edges inside a,
    so this plus the same with a and b swapped is the intersection's area (Green's theorem).
    An edge of a lying on an edge of b is part of that boundary once: it counts where
    `shared_edges` is True and both edges run the same way, never otherwise.
    """
    p0 = a
    d = np.roll(a, -1, axis=1) - a  # (N, 4, 2): edge i runs p0 + t·d, t in [0, 1]
    q0 = b
    e = np.roll(b, -1, axis=1) - b
    # inside b: cross(e_j, p − q_j) has the winding's sign for every edge j of b
    winding = np.sign(np.sum(e[:, :, 0] * np.roll(e, -1, axis=1)[:, :, 1] - e[:, :, 1] * np.roll(e, -1, axis=1)[:, :, 0], 1))
    winding = np.where(winding == 0, 1.0, winding)[:, None, None]
    # value of the half-plane function along each edge of a: f(t) = f0 + t·df (edges i × half-planes j)
    f0 = winding * (e[:, None, :, 0] * (p0[:, :, None, 1] - q0[:, None, :, 1]) - e[:, None, :, 1] * (p0[:, :, None, 0] - q0[:, None, :, 0]))
    df = winding * (e[:, None, :, 0] * d[:, :, None, 1] - e[:, None, :, 1] * d[:, :, None, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        t_cross = -f0 / df
    entering = df > 0  # f rises along the edge: inside from t_cross on
    leaving = df < 0
    t_lo = np.max(np.where(entering, t_cross, 0.0), axis=2, initial=0.0)
    t_hi = np.min(np.where(leaving, t_cross, 1.0), axis=2, initial=1.0)
    collinear = (df == 0) & (f0 == 0)
    if shared_edges:
        collinear &= (d[:, :, None, 0] * e[:, None, :, 0] + d[:, :, None, 1] * e[:, None, :, 1]) < 0
    outside_always = np.any(((df == 0) & (f0 < 0)) | collinear, axis=2)
    t_lo = np.clip(t_lo, 0.0, 1.0)
    t_hi = np.clip(t_hi, 0.0, 1.0)
    keep = (t_hi > t_lo) & ~outside_always
    s0 = p0 + t_lo[..., None] * d
    s1 = p0 + t_hi[..., None] * d
    part = 0.5 * (s0[..., 0] * s1[..., 1] - s1[..., 0] * s0[..., 1])
    return np.sum(np.where(keep, part, 0.0), axis=1)


def block_coverage(block: np.ndarray | Sequence[float]) -> np.ndarray | float:
    """gym-pusht's coverage of the goal by a block at pose(s) (..., 3): centre of gravity x, y
    (workspace px) and angle (rad), as `read_scene` and `pusht-96`'s readout give them.

    Exact polygon intersection (the simulator uses shapely on the same polygons). NaN
    poses give NaN. Returns a float for one pose, else an array of the leading shape.
    """
    arr = np.asarray(block, np.float64)
    if arr.shape[-1:] != (3,):
        raise ValueError(f"block poses must be (..., 3) (x, y, angle); got shape {arr.shape}")
    flat = arr.reshape(-1, 3)
    a = flat[:, 2]
    origin = np.stack([flat[:, 0] + np.sin(a) * _COG_LOCAL_Y, flat[:, 1] - np.cos(a) * _COG_LOCAL_Y, a], -1)
    blocks = _corners(origin)  # (N, 2, 4, 2)
    # a T whose bounding box misses the goal's covers none of it: only the others are intersected
    # (each pose on its own, so a pose's coverage does not depend on the others given with it)
    x0, x1, y0, y1 = _GOAL_BOX
    near = ((blocks[..., 0].min((1, 2)) <= x1) & (blocks[..., 0].max((1, 2)) >= x0)
            & (blocks[..., 1].min((1, 2)) <= y1) & (blocks[..., 1].max((1, 2)) >= y0))
    cover = np.zeros(len(flat))
    if near.any():
        n = int(near.sum())
        # the four (goal rectangle, block rectangle) pairs of every pose, intersected in one go
        goal = np.broadcast_to(_GOAL_CORNERS[None, :, None], (n, 2, 2, 4, 2)).reshape(4 * n, 4, 2)
        block_rects = np.broadcast_to(blocks[near][:, None], (n, 2, 2, 4, 2)).reshape(4 * n, 4, 2)
        area = (_clipped_boundary_area(goal, block_rects, shared_edges=True)
                + _clipped_boundary_area(block_rects, goal, shared_edges=False)).reshape(n, 4).sum(1)
        cover[near] = np.abs(area) / _T_AREA
    cover[~np.isfinite(flat).all(1)] = np.nan
    out = cover.reshape(arr.shape[:-1])
    return float(out) if out.ndim == 0 else out


def _frames(frames: Any) -> tuple[np.ndarray, bool]:
    arr = np.asarray(frames)
    single = arr.ndim == 3
    stacked = arr[None] if single else arr
    if stacked.ndim != 4 or stacked.shape[1:] != (96, 96, 3) or stacked.dtype != np.uint8:
        raise ValueError(
            f"Push-T frames must be uint8 (96, 96, 3) or (N, 96, 96, 3), as pusht-96 and gym-pusht draw them; "
            f"got {arr.dtype} {tuple(arr.shape)}"
        )
    return stacked, single


def pusht_coverage(frames: Any, prior: np.ndarray | None = None) -> float | np.ndarray:
    """gym-pusht's coverage estimated from uint8 frames (96, 96, 3) → float, or (N, 96, 96, 3) → (N,).

    Reads the block's pose off each frame (`read_scene`) and intersects its T with the
    goal's. prior: block poses (N, 3) near the answer (the previous frame's reading) to
    start the fit from. A frame without a visible block scores 0.
    """
    from dream.engine.models.pusht.posefit import read_scene

    stacked, single = _frames(frames)
    reading = read_scene(stacked, None if prior is None else (np.full((len(stacked), 2), np.nan), prior))
    cover = np.nan_to_num(np.asarray(block_coverage(reading.block), np.float64).reshape(-1), nan=0.0)
    return float(cover[0]) if single else cover


def pusht_reward(coverage: float) -> float:
    """gym-pusht's reward for a coverage: ``clip(coverage / 0.95, 0, 1)``."""
    return float(np.clip(coverage / SUCCESS_THRESHOLD, 0.0, 1.0))


_AGENT_COLOURS = np.array([(65, 105, 225), (78, 126, 255)], np.int32)  # gym-pusht's agent: disc and core
_AGENT_REACH_PX = 15.0 * 96 / 512 + 2.5  # the disc's radius in frame px, plus its blended rim and the reading's slack


def _agent_centre(frame: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
    """The centroid (x, y) in frame px of the agent's blue pixels, or None when there are none.

    near: bool (H, W) pixels the agent is known to touch (e.g. where the frame changed):
    only a window around them is searched, unless the blob reaches the window's edge.
    """
    h, w = frame.shape[:2]
    y0, y1, x0, x1 = 0, h, 0, w
    if near is not None and near.any():
        ys, xs = np.nonzero(near)
        y0, y1 = max(int(ys.min()) - 9, 0), min(int(ys.max()) + 10, h)
        x0, x1 = max(int(xs.min()) - 9, 0), min(int(xs.max()) + 10, w)
    x = frame[y0:y1, x0:x1].astype(np.int32)
    blue = np.zeros(x.shape[:2], bool)
    for c in _AGENT_COLOURS:
        d = x - c
        blue |= np.einsum("hwc,hwc->hw", d, d) <= 40 * 40
    ys, xs = np.nonzero(blue)
    if not len(xs):
        return None if (y0, y1, x0, x1) == (0, h, 0, w) else _agent_centre(frame)
    clipped = ((ys.min() == 0 and y0 > 0) or (ys.max() == y1 - y0 - 1 and y1 < h)
               or (xs.min() == 0 and x0 > 0) or (xs.max() == x1 - x0 - 1 and x1 < w))
    if clipped:  # the blob runs past the window: look at the whole frame
        return _agent_centre(frame)
    return np.array([xs.mean() + x0, ys.mean() + y0])


def _to_workspace(centre: np.ndarray | None) -> np.ndarray:
    """A frame-pixel centre as workspace px (NaN for None), where pixel centres sample the drawing."""
    if centre is None:
        return np.full(2, np.nan)
    return (centre + 0.5) * 512.0 / 96.0 - 0.5


def _scored(cover: np.ndarray) -> list[tuple[float, dict[str, Any]]]:
    return [(pusht_reward(float(c)), {"coverage": float(c), "is_success": bool(c > SUCCESS_THRESHOLD)})
            for c in cover.tolist()]


class PushTCoverage:
    """The Push-T reward of `WorldModelEnv`: gym-pusht's reward, success and coverage.

    Calling it on one frame gives ``(reward, {"coverage": c, "is_success": c > 0.95})``,
    read off the frame (`pusht_coverage`).

    In an environment it scores from what it can see:

    * ``state_reward(state, rows)``, on the embedded engine: from the block poses the
      model holds (`dream.engine.engine.SteppedRollouts.readout`), intersected with the
      goal exactly (`block_coverage`). pusht-96 draws each frame from exactly these
      poses, so this is the quantity that reading the frame estimates, without the
      reader's error (≈ 0.7 px, 0.2°) or its cost; tests check the two agree on
      predicted frames. ``source="frames"`` turns it off (it then returns None);
    * ``env_reward(frames, rows)``, where only frames exist (a ``dream serve`` session, a
      model without a readout, or ``source="frames"``): scores the frames of many
      episodes at once and remembers each episode's last frame and reading: where the
      new frame differs from the last only around the agent (the block did not move),
      the block's reading and coverage carry over without reading the frame again; the
      others are fitted in one batch from their episode's previous pose on a crop around
      it (`track_blocks`), and read whole (`read_scene`) where that loses the block or
      there is no previous pose (an episode's first frame).

    Args:
        source: "auto" (the model's poses where the environment has them, else the
            frames) or "frames" (always read the frames).
    """

    batched = True

    def __init__(self, source: str = "auto") -> None:
        if source not in ("auto", "frames"):
            raise ValueError(f"source must be 'auto' or 'frames'; got {source!r}")
        self.source = source
        self._last: dict[int, tuple[np.ndarray, np.ndarray, float, np.ndarray | None]] = {}
        self._poses: dict[int, tuple[list[float], float]] = {}  # state_reward: each row's last pose, coverage
        self.reads = 0  # frames read so far (the rest carried over)

    def __call__(self, frame: np.ndarray) -> tuple[float, dict[str, Any]]:
        c = float(pusht_coverage(frame))
        return pusht_reward(c), {"coverage": c, "is_success": c > SUCCESS_THRESHOLD}

    def state_reward(self, state: dict[str, np.ndarray], rows: Sequence[int]) -> list[tuple[float, dict[str, Any]]] | None:
        """Rewards of environment rows `rows` from the model's readout (``state["block"]`` (N, 3):
        the poses the frames are drawn from); None when this reward reads frames only."""
        block = state.get("block") if self.source == "auto" else None
        if block is None:
            return None
        rows = [int(r) for r in rows]
        poses = np.asarray(block, np.float64)[rows]
        cover = np.empty(len(rows))
        todo = []
        for i, (row, pose) in enumerate(zip(rows, poses.tolist(), strict=True)):
            held = self._poses.get(row)
            if held is not None and held[0] == pose:  # the block did not move: nor did its coverage
                cover[i] = held[1]
            else:
                todo.append(i)
        if todo:
            cover[todo] = np.nan_to_num(np.asarray(block_coverage(poses[todo]), np.float64).reshape(-1), nan=0.0)
            for i in todo:
                self._poses[rows[i]] = (poses[i].tolist(), float(cover[i]))
        return _scored(cover)

    def _unmoved(self, row: int, frame: np.ndarray) -> tuple[bool, np.ndarray | None]:
        """Whether the block is where it was in this row's last frame: every changed pixel lies
        within the agent's reach of where it was or is now. Also returns the agent's centre."""
        last = self._last.get(row)
        if last is None:
            return False, None
        changed = np.any(frame != last[0], axis=-1)
        if not changed.any():
            return True, last[3]
        centre = _agent_centre(frame, changed)
        centres = [c for c in (centre, last[3]) if c is not None]
        if not centres:
            return False, centre
        ys, xs = np.nonzero(changed)
        near = np.zeros(len(xs), bool)
        for cx, cy in centres:
            near |= (xs - cx) ** 2 + (ys - cy) ** 2 <= _AGENT_REACH_PX**2
        return bool(near.all()), centre

    def env_reward(self, frames: np.ndarray, rows: Sequence[int]) -> list[tuple[float, dict[str, Any]]]:
        """Rewards of frames (n, 96, 96, 3) of environment rows `rows` (n,)."""
        from dream.engine.models.pusht.posefit import read_scene, track_blocks

        stacked, _ = _frames(frames)
        rows = [int(r) for r in rows]
        cover = np.zeros(len(rows))
        blocks = np.full((len(rows), 3), np.nan)
        centres: list[np.ndarray | None] = []
        todo = []
        for i, (row, frame) in enumerate(zip(rows, stacked, strict=True)):
            same, centre = self._unmoved(row, frame)
            centres.append(centre)
            if same:
                _, blocks[i], cover[i], _ = self._last[row]
            else:
                todo.append(i)
        if todo:
            prior = np.array([self._last[rows[i]][1] if rows[i] in self._last else np.full(3, np.nan) for i in todo])
            for i in todo:
                if centres[i] is None:
                    centres[i] = _agent_centre(stacked[i])
            agents = np.array([_to_workspace(centres[i]) for i in todo])
            tracked, ok = track_blocks(stacked[todo], prior, agents)  # near last step's pose: a fast fit on a crop
            lost = [j for j in range(len(todo)) if not ok[j]]
            if lost:  # no prior, or the tracker lost the block: read the whole frame
                reading = read_scene(stacked[[todo[j] for j in lost]], (np.full((len(lost), 2), np.nan), prior[lost]))
                tracked[lost] = reading.block
            blocks[todo] = tracked
            cover[todo] = np.nan_to_num(np.asarray(block_coverage(tracked)).reshape(-1), nan=0.0)
            self.reads += len(todo)
        out = []
        for i, row in enumerate(rows):
            self._last[row] = (stacked[i].copy(), blocks[i], float(cover[i]), centres[i])
            c = float(cover[i])
            out.append((pusht_reward(c), {"coverage": c, "is_success": bool(c > SUCCESS_THRESHOLD)}))
        return out

    def forget(self, rows: Sequence[int]) -> None:
        """Drop what is remembered of rows whose episode starts again."""
        for r in rows:
            self._last.pop(int(r), None)
            self._poses.pop(int(r), None)
