"""dream.plan over HTTP: a planner on ``dream.Client(base_url=...)`` against a real ``dream serve``
on loopback speaks the public predict_batch protocol and plans like the embedded engine."""

from __future__ import annotations

import numpy as np
import pytest

import dream
from dream.plan import CEM, goal_image_cost
from dream.plan.models import BatchImagination, EmbeddedImagination
from tests.server.conftest import SPEC

pytest.importorskip("av")


def test_a_planner_over_http_uses_predict_batch_and_ranks_like_the_embedded_engine(live_server) -> None:
    from dream.examples.pusht import pusht_episode

    episode = pusht_episode(0)
    start, goal = episode.start_frame, episode.frames[20]
    options = {"samples": 12, "iterations": 2, "elites": 3, "horizon": 10, "seed": 5}
    with dream.Client(base_url=live_server.url, api_key=live_server.keys["rich"]) as http:
        before = http.billing.balance().balance_mils
        remote = CEM(http.models.get(SPEC), goal_image_cost(goal), **options)
        assert isinstance(remote.imagination, BatchImagination)
        actions = remote.plan(start)
        assert actions.shape == (10, 2) and actions.dtype == np.float32
        assert remote.last.rollouts == 24
        # every candidate was a predicted frame on the server: 24 rollouts x 11 frames at 1 mil each
        assert before - http.billing.balance().balance_mils == 24 * 11
        np.testing.assert_array_equal(CEM(http.models.get(SPEC), goal_image_cost(goal), **options).plan(start), actions)

        # the same candidates scored both ways: only mp4 loss and the pose reader separate the costs
        cost = goal_image_cost(goal).bind((96, 96), "pusht", stride=5)
        knots = np.random.default_rng(2).uniform(80, 430, (12, 2, 2))
        candidates = np.repeat(knots, 5, axis=1).astype(np.float32)
        over_http = BatchImagination(http.models.get(SPEC)).costs(start, candidates, cost)
    local = CEM(dream.Client().models.get(SPEC), goal_image_cost(goal), **options)
    assert isinstance(local.imagination, EmbeddedImagination)
    embedded = local.imagination.costs(start, candidates, cost)
    assert np.abs(over_http - embedded).max() < 4.0
    assert set(np.argsort(over_http)[:3]) == set(np.argsort(embedded)[:3])
