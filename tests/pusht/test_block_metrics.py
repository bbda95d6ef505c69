"""Block-mask IoU and centroid error on frames whose answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dream.eval.metrics import (
    BLOCK_COLOR_THRESHOLD,
    BLOCK_FILL_RGB,
    BLOCK_OUTLINE_RGB,
    block_centroid,
    block_centroid_error,
    block_iou,
    block_mask,
)

BACKGROUND = (255, 255, 255)


def _frame(x0: int, y0: int, w: int, h: int, colour=BLOCK_FILL_RGB) -> np.ndarray:
    f = np.full((96, 96, 3), BACKGROUND, np.uint8)
    f[y0 : y0 + h, x0 : x0 + w] = colour
    return f


def test_mask_takes_both_colours_within_the_threshold_and_nothing_else():
    f = np.full((4, 4, 3), BACKGROUND, np.uint8)
    f[0, 0] = BLOCK_FILL_RGB
    f[0, 1] = BLOCK_OUTLINE_RGB
    f[0, 2] = np.add(BLOCK_FILL_RGB, (int(BLOCK_COLOR_THRESHOLD), 0, 0))  # exactly on the threshold
    f[0, 3] = np.add(BLOCK_FILL_RGB, (18, 18, 18))  # distance 31.2: outside
    f[1, 0] = (144, 238, 144)  # the goal's LightGreen
    f[1, 1] = (65, 105, 225)  # the agent's RoyalBlue
    expected = np.zeros((4, 4), bool)
    expected[0, :3] = True
    np.testing.assert_array_equal(block_mask(f), expected)


def test_iou_of_overlapping_rectangles_is_their_area_ratio():
    a = _frame(10, 10, 20, 10)  # 200 px
    b = _frame(20, 10, 20, 10)  # shares 100 px; union 300 px
    assert block_iou(a, b) == pytest.approx(1 / 3)
    assert block_iou(a, a) == 1.0
    assert block_iou(a, _frame(60, 60, 5, 5)) == 0.0
    empty = np.full((96, 96, 3), BACKGROUND, np.uint8)
    assert block_iou(empty, empty) == 1.0  # no block anywhere: nothing to get wrong


def test_iou_batches_per_image():
    a = np.stack([_frame(10, 10, 20, 10), _frame(10, 10, 20, 10)])
    b = np.stack([_frame(10, 10, 20, 10), _frame(20, 10, 20, 10, BLOCK_OUTLINE_RGB)])
    np.testing.assert_allclose(block_iou(a, b), [1.0, 1 / 3])


def test_centroid_and_its_error_in_pixels():
    a = _frame(10, 20, 11, 5)  # x 10..20, y 20..24
    np.testing.assert_allclose(block_centroid(a), [15.0, 22.0])
    b = _frame(13, 24, 11, 5)  # moved by (3, 4): 5 px
    assert block_centroid_error(a, b) == pytest.approx(5.0)
    empty = np.full((96, 96, 3), BACKGROUND, np.uint8)
    assert math.isnan(block_centroid_error(a, empty))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="uint8"):
        block_mask(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        block_iou(_frame(0, 0, 2, 2), _frame(0, 0, 2, 2)[:48])
