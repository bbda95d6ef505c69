"""pusht-96's batched drawing (`_block_labels_many`, `render_windows`) equals the one-scene drawing byte for byte."""

from __future__ import annotations

import numpy as np

from dream.engine.models.pusht import render as R


def _random_cogs(rng: np.random.Generator, n: int) -> list[tuple[float, float, float]]:
    # anywhere in and around the workspace (blocks cut by the frame's edges included), any angle
    return [(float(rng.uniform(-40, 552)), float(rng.uniform(-40, 552)), float(rng.uniform(-7, 7))) for _ in range(n)]


def test_batched_block_raster_equals_one_block_at_a_time():
    renderer = R.SceneRenderer()
    rng = np.random.default_rng(0)
    for batch in (1, 3, 8, 40):
        cogs = _random_cogs(rng, batch)
        polys = [[R._rounded(p) for p in R.body_polygons(*renderer.cog_to_origin(c))] for c in cogs]
        labels, r0, c0, nr, nc = R._block_labels_many(np.array(polys, np.int64), renderer.coords)
        for i, block in enumerate(polys):
            ref = R.block_labels_at(block, renderer.coords[r0[i] : r0[i] + nr[i]], renderer.coords[c0[i] : c0[i] + nc[i]])
            np.testing.assert_array_equal(labels[i, : nr[i], : nc[i]], ref)
            assert not labels[i, nr[i] :].any() and not labels[i, :, nc[i] :].any()
            assert ref.any() == bool(labels[i].any())


def test_batched_raster_handles_a_degenerate_edge_as_pygame_draws_it():
    renderer = R.SceneRenderer()
    # a collapsed rectangle (two vertices equal: a zero-length edge, drawn as the line alone)
    polys = [[(200, 200), (200, 200), (260, 230), (230, 260)], [(230, 230), (250, 230), (250, 300), (230, 300)]]
    labels, r0, c0, nr, nc = R._block_labels_many(np.array([polys], np.int64), renderer.coords)
    ref = R.block_labels_at(polys, renderer.coords[r0[0] : r0[0] + nr[0]], renderer.coords[c0[0] : c0[0] + nc[0]])
    np.testing.assert_array_equal(labels[0, : nr[0], : nc[0]], ref)


def test_render_windows_equals_render_layers_per_crop_in_random_batches():
    renderer = R.SceneRenderer()
    rng = np.random.default_rng(1)
    for trial in range(40):
        p = int(rng.integers(1, 10))
        h, w = int(rng.integers(1, 50)), int(rng.integers(1, 50))
        cogs = _random_cogs(rng, p)
        blocks = [None if rng.random() < 0.15 else c for c in cogs]
        agents: list = []
        for c in cogs:  # mostly near the block, so the agent's disc overlaps the T
            near = rng.random() < 0.5
            agents.append(None if rng.random() < 0.15 else
                          (c[0] + rng.uniform(-60, 60), c[1] + rng.uniform(-60, 60)) if near else
                          (rng.uniform(-20, 530), rng.uniform(-20, 530)))
        windows = np.stack([rng.integers(0, 96 - h + 1, p), rng.integers(0, 96 - w + 1, p)], 1)
        for i, c in enumerate(cogs):
            if rng.random() < 0.7:  # a crop about the block
                windows[i] = (int(np.clip(c[1] * 96 / 512 - h // 2, 0, 96 - h)), int(np.clip(c[0] * 96 / 512 - w // 2, 0, 96 - w)))
        if trial % 2:
            renderer._blocks.clear()  # rasterised in the batched call, or already kept
        img, block_t, agent_t = R.render_windows(renderer, agents, blocks, windows, (h, w))
        for i in range(p):
            y0, x0 = (int(v) for v in windows[i])
            ref_img, ref_block, ref_agent = renderer.render_layers(agents[i], blocks[i], (y0, y0 + h, x0, x0 + w))
            assert img[i].tobytes() == ref_img.tobytes()
            np.testing.assert_array_equal(block_t[i], ref_block)
            np.testing.assert_array_equal(agent_t[i], ref_agent)


def test_block_rasters_keep_what_they_rasterise():
    renderer = R.SceneRenderer()
    cogs = _random_cogs(np.random.default_rng(2), 5)
    first = renderer.block_rasters(cogs + cogs[:2])  # a pose twice in one call
    again = renderer.block_rasters(cogs)
    for a, b in zip(first, again, strict=False):
        assert a[0] is b[0] and a[1:] == b[1:]
    for cog, (labels, r0, c0) in zip(cogs, again, strict=True):
        window = (r0 // 2, (r0 + labels.shape[0] + 1) // 2, c0 // 2, (c0 + labels.shape[1] + 1) // 2)
        renderer._blocks.clear()
        assert renderer.block_labels(cog, window).any() == labels.any()


def test_touched_pixels_are_the_blended_masks_above_zero():
    renderer = R.SceneRenderer()
    assert renderer._masks_by_or
    rng = np.random.default_rng(3)
    for _ in range(20):
        y0, x0 = (int(v) for v in rng.integers(0, 60, 2))
        h, w = (int(v) for v in rng.integers(1, 37, 2))
        mask = rng.random((2 * h, 2 * w)) < rng.uniform(0.01, 0.5)
        window = (y0, y0 + h, x0, x0 + w)
        np.testing.assert_array_equal(renderer.touched(mask, window), renderer.resize(mask.astype(np.float64), window) > 0)
