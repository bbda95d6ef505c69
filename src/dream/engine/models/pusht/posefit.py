"""Reading the agent's position and the block's pose off a 96×96 frame by render-and-compare.

The agent: the centroid of its blue pixels, refined by a pattern search on the squared
error between `SceneRenderer`'s drawing and the frame around it. The block: the best of
72 angles (every 5°) with the T's area centroid placed on the centroid of the block's
pixels, then the same pattern search over (x, y, angle). Deterministic: fixed starting
points, fixed step schedule, ties broken by evaluation order.
"""

from __future__ import annotations

import math

import numpy as np

from dream.engine.models.pusht.render import AGENT_CORE, AGENT_RGB, WORKSPACE, SceneRenderer

__all__ = ["fit_start_pose"]

# The T's area centroid in body coordinates: the bar (120×30, centroid y=15) and the
# stem (30×90, centroid y=75).
_AREA_CENTROID_Y = (3600 * 15 + 2700 * 75) / 6300
_BLOCK_RGB = ((143, 163, 184), (119, 136, 153))


def _colour_mask(frame: np.ndarray, colours, radius: float) -> np.ndarray:
    x = frame.astype(np.int32)
    mask = np.zeros(frame.shape[:2], bool)
    for c in colours:
        d = x - np.asarray(c, np.int32)
        mask |= np.sum(d * d, axis=-1) <= radius * radius
    return mask


def _to_workspace(pixel: float, size: int) -> float:
    return (pixel + 0.5) * WORKSPACE / size - 0.5


def _pattern_search(score, x0: list[float], steps: list[float], shrink: int = 7) -> list[float]:
    best = list(x0)
    best_score = score(best)
    steps = list(steps)
    for _ in range(shrink):
        improved = True
        while improved:
            improved = False
            for i in range(len(best)):
                for sign in (1.0, -1.0):
                    trial = list(best)
                    trial[i] += sign * steps[i]
                    s = score(trial)
                    if s < best_score:
                        best, best_score, improved = trial, s, True
        steps = [s / 2 for s in steps]
    return best


def fit_start_pose(
    frame: np.ndarray, renderer: SceneRenderer
) -> tuple[tuple[float, float], tuple[float, float, float]]:
    """(agent x, y) and block (cog x, cog y, angle) in workspace px/rad that best redraw `frame`."""
    size = renderer.size
    target = frame.astype(np.float64)
    ys, xs = np.nonzero(_colour_mask(frame, (AGENT_RGB, AGENT_CORE), 40.0))
    if len(xs):
        agent0 = [_to_workspace(xs.mean(), size), _to_workspace(ys.mean(), size)]
    else:
        agent0 = [WORKSPACE / 2, WORKSPACE / 2]
    block_mask = _colour_mask(frame, _BLOCK_RGB, 30.0)
    by, bx = np.nonzero(block_mask)
    if len(bx) == 0:
        agent = _fit_agent(target, renderer, agent0, None)
        return (agent[0], agent[1]), (-1000.0, -1000.0, 0.0)
    centroid = (_to_workspace(bx.mean(), size), _to_workspace(by.mean(), size))
    pad = 4
    y0, y1 = max(by.min() - pad, 0), min(by.max() + pad + 1, size)
    x0, x1 = max(bx.min() - pad, 0), min(bx.max() + pad + 1, size)
    window = (int(y0), int(y1), int(x0), int(x1))

    gy = renderer.params.cog_local[1]

    def cog_from_centroid(angle: float) -> list[float]:
        # place the area centroid on the observed one; the cog lies (gy − area y) further along the body's y axis
        d = gy - _AREA_CENTROID_Y
        return [centroid[0] - math.sin(angle) * d, centroid[1] + math.cos(angle) * d, angle]

    crop = target[window[0] : window[1], window[2] : window[3]]

    def block_score(pose: list[float], agent=None, outline: bool = True) -> float:
        img = renderer.render_layers(agent, (pose[0], pose[1], pose[2]), window, outline)[0]
        diff = img - crop
        return float(np.sum(diff * diff))

    candidates = [cog_from_centroid(math.radians(5 * k)) for k in range(72)]
    block = min(candidates, key=lambda p: (block_score(p, tuple(agent0), outline=False), candidates.index(p)))
    agent = _fit_agent(target, renderer, agent0, block)
    block = _pattern_search(lambda p: block_score(p, tuple(agent)), block, [4.0, 4.0, math.radians(4)], shrink=6)
    agent = _fit_agent(target, renderer, agent, block)
    block[2] = math.remainder(block[2], 2 * math.pi)
    return (agent[0], agent[1]), (block[0], block[1], block[2])


def _fit_agent(target: np.ndarray, renderer: SceneRenderer, agent0: list[float], block) -> list[float]:
    size = renderer.size
    cx = round((agent0[0] + 0.5) * size / WORKSPACE - 0.5)
    cy = round((agent0[1] + 0.5) * size / WORKSPACE - 0.5)
    window = (max(cy - 6, 0), min(cy + 7, size), max(cx - 6, 0), min(cx + 7, size))
    crop = target[window[0] : window[1], window[2] : window[3]]
    blk = None if block is None else (block[0], block[1], block[2])

    def score(p: list[float]) -> float:
        img = renderer.render_layers((p[0], p[1]), blk, window)[0]
        diff = img - crop
        return float(np.sum(diff * diff))

    return _pattern_search(score, list(agent0), [2.0, 2.0], shrink=4)
