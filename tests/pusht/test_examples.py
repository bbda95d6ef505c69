"""The shipped example episodes load offline."""

from __future__ import annotations

import numpy as np
import pytest

from dream.examples.pusht import NUM_EPISODES, pusht_episode, pusht_episodes
from dream.sim.pusht import EXAMPLE_SEED_OFFSET


def test_example_episode_shapes_and_dtypes():
    ep = pusht_episode(0)
    assert ep.start_frame.shape == (96, 96, 3) and ep.start_frame.dtype == np.uint8
    assert ep.actions.shape == (48, 2) and ep.actions.dtype == np.float32
    assert ep.frames.shape == (49, 96, 96, 3) and ep.frames.dtype == np.uint8
    np.testing.assert_array_equal(ep.start_frame, ep.frames[0])
    assert ep.index == 0


def test_examples_come_from_the_held_out_example_seeds():
    episodes = pusht_episodes()
    assert len(episodes) == NUM_EPISODES == 8
    assert [e.index for e in episodes] == list(range(8))
    assert all(e.seed >= EXAMPLE_SEED_OFFSET for e in episodes)
    assert len({e.seed for e in episodes}) == 8
    assert all(np.all((e.actions >= 0) & (e.actions <= 512)) for e in episodes)


def test_unknown_example_index_names_the_range():
    with pytest.raises(IndexError, match=r"0\.\.7"):
        pusht_episode(8)


def test_example_matches_the_simulator():
    pytest.importorskip("gym_pusht")
    from dream.sim.pusht import replay_actions

    ep = pusht_episode(1)
    frames, _ = replay_actions(ep.seed, ep.actions[:5])
    np.testing.assert_array_equal(frames, ep.frames[:6])
