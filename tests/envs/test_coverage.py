"""Push-T coverage: exact polygon intersection, and its estimate from frames against the simulator's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dream.envs.pusht import GOAL_POSE, PushTCoverage, block_coverage, pusht_coverage, pusht_reward


def _cog(origin_x: float, origin_y: float, angle: float) -> np.ndarray:
    return np.array([origin_x - math.sin(angle) * 45.0, origin_y + math.cos(angle) * 45.0, angle])


def test_block_coverage_is_the_exact_intersection() -> None:
    shapely = pytest.importorskip("shapely.geometry")
    from dream.envs.pusht import _corners

    def t_shape(origin):
        c = _corners(np.array([origin], np.float64))[0]
        return shapely.MultiPolygon([shapely.Polygon(c[0]), shapely.Polygon(c[1])])

    goal = t_shape(GOAL_POSE)
    rng = np.random.default_rng(0)
    origins = np.concatenate([
        np.array(GOAL_POSE) + rng.normal(0, [6, 6, 0.1], (200, 3)),
        np.stack([rng.uniform(0, 512, 200), rng.uniform(0, 512, 200), rng.uniform(-np.pi, np.pi, 200)], 1),
    ])
    truth = np.array([goal.intersection(t_shape(o)).area / goal.area for o in origins])
    got = block_coverage(np.array([_cog(*o) for o in origins]))
    np.testing.assert_allclose(got, truth, atol=1e-9)
    assert block_coverage(_cog(*GOAL_POSE)) == pytest.approx(1.0)  # edges on edges count once
    assert block_coverage(_cog(100.0, 100.0, 0.0)) == 0.0
    assert np.isnan(block_coverage([np.nan, 1.0, 2.0]))
    assert pusht_reward(0.5) == pytest.approx(0.5 / 0.95) and pusht_reward(0.99) == 1.0
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        block_coverage(np.zeros((4, 2)))


@pytest.fixture(scope="module")
def sim_frames():
    """Test-split frames with the simulator's coverage: pushed blocks and blocks placed near the goal."""
    pytest.importorskip("gym_pusht")
    from dream.eval.policies import make_policy
    from dream.sim.pusht import TEST_SEED_OFFSET, PushTSim

    sim = PushTSim()
    frames, cover, episode_of = [], [], []
    for e in range(3):
        seed = TEST_SEED_OFFSET + 40 + e
        frame = sim.reset(seed)
        policy = make_policy("pusher")
        policy.start([seed])
        for _ in range(60):
            frames.append(frame)
            cover.append(sim.env._get_coverage())
            episode_of.append(e)
            obs, _, terminated, _, _ = sim.env.step(policy.act(frame[None])[0])
            frame = obs["pixels"]
            if terminated:
                break
    for i in range(30):
        rng = np.random.default_rng(TEST_SEED_OFFSET + 80 + i)
        angle = math.pi / 4 + rng.normal(0, math.radians(3))
        # gym-pusht sets the block's origin at angle 0, then turns it about its centre of gravity (0, 45)
        cog = _cog(256.0, 256.0, angle)[:2] + rng.normal(0, 4, 2)
        state = np.array([*rng.uniform(50, 450, 2), cog[0], cog[1] - 45.0, angle])
        obs, _ = sim.env.reset(seed=TEST_SEED_OFFSET + 80 + i, options={"reset_to_state": state})
        frames.append(obs["pixels"])
        cover.append(sim.env._get_coverage())
        episode_of.append(100 + i)
    sim.close()
    return np.stack(frames), np.array(cover), np.array(episode_of)


def test_coverage_read_off_frames_matches_the_simulators(sim_frames) -> None:
    frames, truth, _ = sim_frames
    est = pusht_coverage(frames)
    err = np.abs(est - truth)
    assert err.mean() <= 0.02 and err.max() < 0.06  # the target: mean abs error ≤ 0.02
    near = truth > 0.8
    assert near.sum() >= 20 and np.abs(est - truth)[near].mean() < 0.01
    assert np.mean((est > 0.95) == (truth > 0.95)) >= 0.95
    assert pusht_coverage(frames[0]) == pytest.approx(est[0])  # one frame → a float, the same as in a batch


def test_the_envs_reward_carries_over_unmoved_blocks_and_tracks_moved_ones(sim_frames) -> None:
    frames, truth, episode_of = sim_frames
    reward = PushTCoverage()
    got = []
    for i, frame in enumerate(frames):
        if i == 0 or episode_of[i] != episode_of[i - 1]:
            reward.forget([3])
        r, info = reward.env_reward(frame[None], [3])[0]
        assert r == pytest.approx(min(info["coverage"] / 0.95, 1.0)) and info["is_success"] == (info["coverage"] > 0.95)
        got.append(info["coverage"])
    err = np.abs(np.array(got) - truth)
    assert err.mean() <= 0.02
    assert reward.reads < len(frames)  # frames where only the agent moved were not read again
    # a frame identical to the last is never read
    before = reward.reads
    reward.env_reward(frames[-1][None], [3])
    assert reward.reads == before
    with pytest.raises(ValueError, match=r"uint8 \(96, 96, 3\)"):
        pusht_coverage(np.zeros((64, 64, 3), np.uint8))
