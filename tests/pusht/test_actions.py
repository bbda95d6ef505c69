"""Action distributions for Push-T (`dream.sim.pusht_actions`) and `dream eval --task distributions`."""

from __future__ import annotations

import numpy as np
import pytest

from dream.sim.pusht_actions import DISTRIBUTIONS, episode_seed, make_driver


def test_seeds_keep_splits_and_distributions_apart():
    seen = {}
    for split in ("train", "val", "test"):
        for d in DISTRIBUTIONS:
            for i in (0, 99_999):
                seed = episode_seed(d, split, i)
                assert seed not in seen
                seen[seed] = (split, d)
    assert episode_seed("scripted", "train", 5) == 5  # the scripted training episodes keep their seeds
    assert episode_seed("scripted", "val", 5) == 1_000_005


@pytest.mark.parametrize("bad", [("nope", "val", 0), ("aimed", "holdout", 0), ("aimed", "val", 100_000)])
def test_bad_names_and_indices_are_named(bad):
    with pytest.raises(ValueError, match=str(bad[0] if bad[0] == "nope" else bad[1] if bad[1] == "holdout" else bad[2])):
        episode_seed(*bad)


def test_unknown_distribution_driver_is_named():
    with pytest.raises(ValueError, match="'wobble'"):
        make_driver("wobble", 1)


sim = pytest.importorskip("gym_pusht")


def test_every_distribution_is_deterministic_and_moves_the_block():
    from dream.sim.pusht_actions import simulate_distribution

    for d in DISTRIBUTIONS:
        seeds = [episode_seed(d, "val", i) for i in range(3)]
        a = simulate_distribution(d, seeds, 24)
        b = simulate_distribution(d, seeds, 24)
        np.testing.assert_array_equal(a["actions"], b["actions"])
        np.testing.assert_array_equal(a["block"], b["block"])
        assert a["actions"].min() >= 0 and a["actions"].max() <= 512
        moved = np.abs(np.diff(a["block"], axis=1)).max() > 1e-3
        assert moved, d


def test_distribution_eval_scores_model_and_repeat_start():
    from dream.eval.pusht_distributions import run_distribution_eval

    result = run_distribution_eval(episodes=2, distributions=["near-goal"], horizons=(1, 4), split="val",
                                   progress=False)
    rows = result.scores["near-goal"]
    assert [r.horizon for r in rows["model"]] == [1, 4]
    for r in rows["model"] + rows["repeat-start"]:
        assert 0.0 <= r.iou_worst <= r.iou_mean <= 1.0
        assert 0.0 <= r.pos_median <= r.pos_worst and 0.0 <= r.angle_median <= r.angle_worst <= 180.0
    table = result.to_markdown()
    assert "| near-goal | model |" in table and "| near-goal | repeat-start |" in table
    assert set(result.must_show()) == {"near-goal"}
    with pytest.raises(ValueError, match="'train'"):
        run_distribution_eval(episodes=1, split="train", progress=False)
    with pytest.raises(ValueError, match="'nope'"):
        run_distribution_eval(episodes=1, distributions=["nope"], progress=False)
