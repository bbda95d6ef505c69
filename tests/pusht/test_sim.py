"""The gym-pusht wrapper: reset determinism, episode shapes, seeded policies."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gym_pusht")

from dream.sim.pusht import PushTSim, generate_episode, policy_for_seed, replay_actions


@pytest.fixture(scope="module")
def sim() -> PushTSim:
    return PushTSim()


def test_reset_is_deterministic_per_seed(sim):
    a = sim.reset(123)
    b = sim.reset(123)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sim.reset(124))


def test_generated_episode_replays_bit_identically(sim):
    ep = generate_episode(7, 6, sim=sim)
    assert ep.frames.shape == (7, 96, 96, 3)
    assert ep.actions.shape == (6, 2) and ep.actions.dtype == np.float32
    frames, actions = replay_actions(7, ep.actions, sim=sim)
    np.testing.assert_array_equal(frames, ep.frames)
    np.testing.assert_array_equal(actions, ep.actions)


def test_policy_kind_and_stream_come_from_the_seed():
    assert policy_for_seed(5).name == policy_for_seed(5).name
    assert policy_for_seed(5, "random_walk").name == "random_walk"
    with pytest.raises(ValueError, match="unknown policy"):
        policy_for_seed(5, "teleport")


def test_seek_push_policy_moves_the_block(sim):
    ep = generate_episode(1, 24, sim=sim, policy="seek_push")
    assert np.abs(ep.block_pose[-1] - ep.block_pose[0]).max() > 1.0
