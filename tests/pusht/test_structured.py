"""The structured pusht-96 parts against the simulator: pose fit, agent law, learned block dynamics, drawing."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("gym_pusht")

from dream.engine import specs
from dream.engine.models.pusht import dynamics
from dream.engine.models.pusht.dynamics import BlockDynamics, rollout_poses
from dream.engine.models.pusht.physics import PhysicsParams
from dream.engine.models.pusht.posefit import fit_start_pose
from dream.engine.models.pusht.render import SceneRenderer
from dream.eval.metrics import block_iou
from dream.sim.pusht import VAL_SEED_OFFSET, PushTSim, generate_episode


@pytest.fixture(scope="module")
def episodes():
    sim = PushTSim()
    # validation seeds: never the test seeds that `dream eval` reports on
    eps = [generate_episode(VAL_SEED_OFFSET + i, 24, sim=sim) for i in range(6)]
    sim.close()
    return eps


@pytest.fixture(scope="module")
def learned() -> BlockDynamics:
    from dream.engine.models.pusht.runner import PushTRunner

    return BlockDynamics.load(PushTRunner.weights_path(specs.get("pusht-96")))


def _cog(block_pose: np.ndarray) -> np.ndarray:
    gx, gy = PhysicsParams().cog_local
    x, y, a = (block_pose[..., i].astype(np.float64) for i in range(3))
    return np.stack([x + np.cos(a) * gx - np.sin(a) * gy, y + np.sin(a) * gx + np.cos(a) * gy, a], axis=-1)


def test_the_agent_follows_the_pd_law_exactly(episodes, learned):
    for ep in episodes:
        agents, _ = rollout_poses(tuple(ep.agent_pos[0]), tuple(_cog(ep.block_pose[0])), ep.actions.tolist(), learned)
        np.testing.assert_allclose(np.asarray(agents), ep.agent_pos, atol=1e-3)


def _t_points(cog: np.ndarray) -> np.ndarray:
    """The T's bar ends and stem foot (workspace px) for cog poses (..., 3)."""
    out = []
    for px, py in ((-60.0, -30.0), (60.0, -30.0), (0.0, 60.0)):
        c, s = np.cos(cog[..., 2]), np.sin(cog[..., 2])
        out.append(np.stack([cog[..., 0] + c * px - s * py, cog[..., 1] + s * px + c * py], -1))
    return np.stack(out, -2)


def test_the_learned_block_dynamics_track_the_simulator_from_true_poses(episodes, learned):
    # validation seeds; the block stays exactly put while nothing touches it, and where
    # it is pushed the network predicts far better than assuming it stays put
    pushed = stay_error = model_error = 0.0
    for ep in episodes:
        truth = _cog(ep.block_pose)
        _, blocks = rollout_poses(tuple(ep.agent_pos[0]), tuple(truth[0]), ep.actions.tolist(), learned)
        blocks = np.asarray(blocks)
        if np.array_equal(truth[-1], truth[0]):
            assert np.array_equal(blocks, np.repeat(truth[:1], len(truth), axis=0))
            continue
        pushed += 1
        model_error += np.linalg.norm(_t_points(blocks[8]) - _t_points(truth[8]), axis=-1).mean()
        stay_error += np.linalg.norm(_t_points(truth[0]) - _t_points(truth[8]), axis=-1).mean()
    assert pushed >= 2
    assert model_error < 0.6 * stay_error


def test_features_are_the_same_in_numpy_and_torch():
    # training unrolls the torch path; inference runs the numpy one
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    block = rng.uniform([60, 60, -3], [450, 450, 3], (16, 3))
    last = rng.normal(0, 1, (16, 3))
    path = block[:, None, :2] + rng.normal(0, 60, (16, 11, 2))
    ours, clearance = dynamics.features(np, block, last, path)
    theirs, clearance_t = dynamics.features(torch, *(torch.tensor(a) for a in (block, last, path)))
    assert ours.shape == (16, dynamics.N_FEATURES)
    np.testing.assert_allclose(theirs.numpy(), ours, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(clearance_t.numpy(), clearance, rtol=1e-12, atol=1e-12)


def test_signed_distance_of_the_t():
    lx = np.array([0.0, 0.0, 75.0, 0.0, 30.0])
    ly = np.array([-30.0, 60.0, -30.0, 90.0, 30.0])
    # inside the bar (15 px from its long sides), inside the stem, right of the bar, below the stem, beside the stem
    np.testing.assert_allclose(dynamics.t_distance(np, lx, ly), [-15.0, -15.0, 15.0, 15.0, 15.0], atol=1e-5)


def test_the_start_pose_is_read_off_the_frame_to_a_pixel(episodes):
    renderer = SceneRenderer()
    for ep in episodes:
        agent, block = fit_start_pose(ep.frames[0], renderer)
        truth = _cog(ep.block_pose[0])
        assert math.hypot(agent[0] - ep.agent_pos[0, 0], agent[1] - ep.agent_pos[0, 1]) < 2.0
        assert math.hypot(block[0] - truth[0], block[1] - truth[1]) < 2.0
        assert abs(math.remainder(block[2] - truth[2], 2 * math.pi)) < math.radians(1.5)


def test_the_scene_is_drawn_as_the_simulator_draws_it(episodes):
    renderer = SceneRenderer()
    for ep in episodes:
        for t in (0, len(ep.frames) - 1):
            img, _ = renderer.render(tuple(ep.agent_pos[t]), tuple(_cog(ep.block_pose[t])))
            drawn = np.clip(np.rint(img), 0, 255).astype(np.uint8)
            assert block_iou(drawn, ep.frames[t]) > 0.93
            assert np.mean(np.abs(drawn.astype(int) - ep.frames[t].astype(int))) < 1.0


def _leave_after_a_push(block: tuple[float, float, float]) -> np.ndarray:
    """Agent targets: from below the T's bar, 4 actions pushing 30 px into it, then 30
    actions walking away to the far corner and waiting there."""
    x, y, _ = block
    push = [[x, y - 60.0 + 8.0 * i] for i in range(4)]
    away = [[x + 10.0 * i, y - 60.0 - 10.0 * i] for i in range(1, 11)] + [[480.0, 30.0]] * 20
    return np.array(push + away, np.float64)


def test_a_block_the_agent_has_left_comes_to_rest(learned):
    # gym-pusht's block keeps no momentum: once the agent leaves it settles within a few
    # actions. The network alone kept moving it 0.15-0.3 px every action, forever.
    block = (256.0, 300.0, 0.0)
    targets = _leave_after_a_push(block)
    _, blocks = rollout_poses((256.0, 200.0), block, targets, learned)
    blocks = np.asarray(blocks)
    assert np.hypot(*(blocks[4, :2] - blocks[0, :2])) > 5.0  # the push moved it
    tail = blocks[20:]  # 16 actions after the agent left
    assert np.array_equal(tail, np.repeat(tail[:1], len(tail), axis=0)), np.abs(np.diff(tail, axis=0)).max()
    assert np.hypot(*(blocks[-1, :2] - blocks[8, :2])) < 1.0


def test_settling_shrinks_each_change_and_contact_does_not():
    last = np.array([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    change = np.array([[3.0, 4.0, 0.0], [3.0, 4.0, 0.0], [0.5, 0.0, 0.0]])
    out = dynamics.settle(np, change, last, np.array([False, True, False]))
    np.testing.assert_allclose(out[0], change[0] * dynamics.SETTLE * 2.0 / 5.0)
    np.testing.assert_array_equal(out[1], change[1])
    np.testing.assert_array_equal(out[2], [0.0, 0.0, 0.0])


def test_a_near_miss_does_not_move_the_block(learned):
    # From rest, gym-pusht never moved the block when the agent's disc passed the T
    # without overlapping it; the network, asked within 3 px, moved it 0.3-1.5 px.
    block = (256.0, 300.0, 0.0)  # the bar's lower face is at y = 255 (cog frame y = -45)
    for gap in (0.2, 1.0, 2.5):
        y = 300.0 - 45.0 - 15.0 - gap  # the disc's edge `gap` px below the bar
        _, blocks = rollout_poses((100.0, y), block, [[412.0, y]] * 8, learned)
        assert np.array_equal(np.asarray(blocks), np.repeat(np.asarray([block]), 9, axis=0)), gap
    # and the same path 1 px into the bar does move it
    y = 300.0 - 45.0 - 15.0 + 1.0
    _, blocks = rollout_poses((100.0, y), block, [[412.0, y]] * 8, learned)
    assert not np.array_equal(np.asarray(blocks[-1]), np.asarray(block))
