"""pusht-96 draws the scene as gym-pusht's pygame does: primitives pixel for pixel at 512², frames at 96²."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gym_pusht")

from dream.engine.models.pusht import render as R
from dream.eval.metrics import block_iou
from dream.sim.pusht import PushTState
from dream.sim.pusht_actions import DISTRIBUTIONS, _reset, _sim_state, episode_seed, make_driver


def _surface_mask(draw) -> np.ndarray:
    import pygame

    screen = pygame.Surface((512, 512))
    screen.fill((255, 255, 255))
    draw(screen)
    return np.transpose(np.array(pygame.surfarray.pixels3d(screen)), (1, 0, 2))[..., 0] != 255


def _our_mask(spans) -> np.ndarray:
    canvas = np.zeros((512, 512), np.uint8)
    R._paint_spans(canvas, 0, 0, spans, 1)
    return canvas > 0


def test_fat_segments_and_polygons_match_pygame_pixel_for_pixel():
    import pygame
    from gym_pusht.envs.pymunk_override import DrawOptions
    from pymunk.space_debug_draw_options import SpaceDebugColor

    colour = SpaceDebugColor(119, 136, 153, 255)
    rng = np.random.default_rng(0)
    for k in range(60):
        a = tuple(rng.uniform(100, 400, 2))
        b = (a[0] + rng.integers(-3, 4), rng.uniform(100, 400)) if k % 3 == 0 else tuple(rng.uniform(100, 400, 2))
        ref = _surface_mask(lambda s, a=a, b=b: DrawOptions(s).draw_fat_segment(a, b, 2, colour, colour))
        ours = _our_mask(R.fat_segment_pixels((round(a[0]), round(a[1])), (round(b[0]), round(b[1]))))
        np.testing.assert_array_equal(ours, ref)
        pts = [(int(x), int(y)) for x, y in rng.integers(100, 400, (4, 2))]
        closed = [*pts, pts[0]]
        ref = _surface_mask(lambda s, closed=closed: pygame.draw.polygon(s, (0, 0, 0), closed))
        ours = _our_mask(R.fill_polygon_spans([p[0] for p in closed], [p[1] for p in closed]))
        np.testing.assert_array_equal(ours, ref)
    for radius in (2, 11, 15):
        ref = _surface_mask(lambda s, r=radius: pygame.draw.circle(s, (0, 0, 0), (200, 300), r))
        ours = _our_mask(R.disc_spans(radius) + np.array([300, 200, 200]))
        np.testing.assert_array_equal(ours, ref)


def test_frames_at_the_simulators_poses_match_its_observations():
    from dream.sim.pusht import PushTSim

    sim = PushTSim()
    renderer = R.SceneRenderer()
    ious, diffs = [], []
    for d in DISTRIBUTIONS:
        seed = episode_seed(d, "val", 0)
        driver = make_driver(d, seed)
        obs = _reset(sim.env, d, seed)
        for t in range(20):
            agent, block = _sim_state(sim.env)
            if t % 4 == 0:
                img, _ = renderer.render(tuple(agent), tuple(block))
                drawn = np.clip(np.rint(img), 0, 255).astype(np.uint8)
                ious.append(block_iou(drawn[None], obs["pixels"][None])[0])
                diffs.append(np.abs(drawn.astype(int) - obs["pixels"].astype(int)))
            obs, *_ = sim.env.step(np.clip(driver(PushTState(agent, block[:2], float(block[2]))), 0, 512))
    sim.close()
    assert min(ious) > 0.99 and np.mean(ious) > 0.998
    # only the resize's rounding (cv2 resizes in fixed point) and pymunk's contact marks differ
    assert np.mean([np.mean(d) for d in diffs]) < 0.1
    assert np.median([d.max() for d in diffs]) <= 1


def test_the_block_matches_pygame_at_every_pixel_and_at_a_sample_grid():
    from gym_pusht.envs.pymunk_override import DrawOptions
    from pymunk.space_debug_draw_options import SpaceDebugColor

    colour = SpaceDebugColor(119, 136, 153, 255)
    rng = np.random.default_rng(1)
    every = np.arange(512)
    grid = R.SceneRenderer().coords
    for _ in range(12):
        polys = R.body_polygons(rng.uniform(120, 380), rng.uniform(120, 380), rng.uniform(0, 2 * np.pi))

        def draw(s, polys=polys):
            for poly in polys:
                DrawOptions(s).draw_polygon(poly, 2, colour, colour)

        ref = _surface_mask(draw)
        rounded = [R._rounded(p) for p in polys]
        full = R.block_labels_at(rounded, every, every)
        np.testing.assert_array_equal(full > 0, ref)
        np.testing.assert_array_equal(R.block_labels_at(rounded, grid, grid), full[np.ix_(grid, grid)])
