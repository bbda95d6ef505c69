"""A small `dream eval` run and the scoring it relies on."""

from __future__ import annotations

import numpy as np
import pytest

from dream.eval.pusht_eval import EvalResult, HorizonScores, changed_pixel_mask, score_rollouts


def test_score_rollouts_of_ground_truth_is_perfect_on_changed_pixels():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (2, 5, 96, 96, 3), dtype=np.uint8)
    scores = score_rollouts(gt, gt, horizons=(1, 4))
    assert [s.horizon for s in scores] == [1, 4]
    assert all(
        s.psnr_db == np.inf and s.changed_psnr_db == np.inf and s.ssim == pytest.approx(1.0) for s in scores
    )
    assert all(s.block_iou == 1.0 for s in scores)  # random noise: an empty or identical mask, IoU 1 either way


def test_score_rollouts_block_metrics_on_a_shifted_block():
    gt = np.full((1, 2, 96, 96, 3), 255, np.uint8)
    gt[0, :, 10:20, 10:30] = (143, 163, 184)  # 10×20 block, unmoved
    pred = gt.copy()
    pred[0, 1] = 255
    pred[0, 1, 10:20, 20:40] = (143, 163, 184)  # shifted 10 px right: half overlaps
    (score,) = score_rollouts(pred, gt, horizons=(1,))
    assert score.block_iou == pytest.approx(1 / 3)
    assert score.block_centroid_px == pytest.approx(10.0)


def test_changed_pixel_mask_marks_any_channel():
    start = np.zeros((2, 2, 3), np.uint8)
    gt = start.copy()
    gt[1, 0, 2] = 1
    np.testing.assert_array_equal(changed_pixel_mask(gt, start), [[False, False], [True, False]])


def test_markdown_table_lists_every_predictor_and_horizon():
    rows = [HorizonScores(1, 40.0, 20.0, 0.99, 2), HorizonScores(8, 30.0, 15.0, 0.95, 2)]
    result = EvalResult(
        num_episodes=2,
        horizons=(1, 8),
        seed_offset=2_000_000,
        scores={"model": rows, "repeat-start": rows, "no-action": rows},
    )
    table = result.to_markdown()
    assert "| h=1 | h=8 |" in table
    assert table.count("| model |") == 5 and table.count("| no-action |") == 5
    assert "| model | block IoU |" in table and "| model | block centroid error (px) |" in table
    assert result.margin_db() == [0.0, 0.0]


def test_small_eval_run_beats_repeat_start_on_changed_pixels_and_block_iou():
    pytest.importorskip("gym_pusht")
    pytest.importorskip("torch")
    from dream.eval.pusht_eval import run_pusht_eval

    result = run_pusht_eval(num_episodes=4, horizons=(1, 16), progress=False)
    assert set(result.scores) == {"model", "repeat-start", "no-action"}
    assert all(margin > 0 for margin in result.margin_db("changed_psnr_db"))
    model, repeat = result.scores["model"], result.scores["repeat-start"]
    # the finding: the block must not be lost (a model that blurs it scores below repeat-start)
    assert model[0].block_iou >= repeat[0].block_iou
    assert model[1].block_iou > repeat[1].block_iou + 0.15
    assert model[1].block_centroid_px < repeat[1].block_centroid_px
