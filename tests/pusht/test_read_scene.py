"""read_scene: poses read off many frames at once, against the simulator's and the model's own poses."""

from __future__ import annotations

import numpy as np
import pytest

from dream.engine.models.pusht.physics import PhysicsParams
from dream.engine.models.pusht.posefit import read_scene


def _angle_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(np.degrees(np.remainder(a - b + np.pi, 2 * np.pi) - np.pi))


@pytest.fixture(scope="module")
def sim_frames():
    pytest.importorskip("gym_pusht")
    from dream.sim.pusht import VAL_SEED_OFFSET, PushTSim, generate_episode

    sim = PushTSim()
    frames, agents, blocks = [], [], []
    gx, gy = PhysicsParams().cog_local
    for i in range(8):
        ep = generate_episode(VAL_SEED_OFFSET + 700 + i, 30, sim=sim)
        for t in range(0, 31, 3):
            x, y, a = (float(v) for v in ep.block_pose[t])
            frames.append(ep.frames[t])
            agents.append(ep.agent_pos[t])
            blocks.append([x + np.cos(a) * gx - np.sin(a) * gy, y + np.sin(a) * gx + np.cos(a) * gy, a])
    sim.close()
    return np.stack(frames), np.array(agents, np.float64), np.array(blocks)


def test_simulator_frames_are_read_to_about_a_pixel(sim_frames) -> None:
    frames, agents, blocks = sim_frames
    reading = read_scene(frames)
    assert reading.agent_visible.all() and reading.block_visible.all()
    block_error = np.hypot(*(reading.block[:, :2] - blocks[:, :2]).T)
    angle_error = _angle_error_deg(reading.block[:, 2], blocks[:, 2])
    agent_error = np.hypot(*(reading.agent - agents).T)
    assert np.median(block_error) < 0.7 and block_error.max() < 2.5
    assert np.median(angle_error) < 0.4 and angle_error.max() < 2.0
    assert np.median(agent_error) < 1.0 and agent_error.max() < 2.5


def test_each_frame_is_read_on_its_own_and_a_wrong_prior_does_no_harm(sim_frames) -> None:
    frames, _, blocks = sim_frames
    together = read_scene(frames[:12])
    for i in (0, 5, 11):
        alone = read_scene(frames[i])
        np.testing.assert_array_equal(alone.block[0], together.block[i])
        np.testing.assert_array_equal(alone.agent[0], together.agent[i])
    turned = blocks[:12] + np.array([25.0, -20.0, np.pi / 2])
    guided = read_scene(frames[:12], prior=(None, turned))
    assert np.hypot(*(guided.block[:, :2] - together.block[:, :2]).T).max() < 0.5
    assert _angle_error_deg(guided.block[:, 2], together.block[:, 2]).max() < 0.5


def test_the_models_frames_read_as_the_poses_it_holds() -> None:
    from dream.engine.engine import Engine
    from dream.examples.pusht import pusht_episode

    engine = Engine(["pusht-96"])
    rng = np.random.default_rng(0)
    ep = pusht_episode(1)
    steps = engine.begin(ep.start_frame, k=6)
    actions = np.clip(ep.actions[None, :20] + rng.normal(0, 50, (6, 20, 2)), 0, 512).astype(np.float32)
    last = steps.advance(actions, draw=[19])[:, 0]
    held = steps.readout()
    reading = read_scene(last)
    assert np.hypot(*(reading.block[:, :2] - held["block"][:, :2]).T).max() < 1.0
    assert _angle_error_deg(reading.block[:, 2], held["block"][:, 2]).max() < 1.0
    assert np.hypot(*(reading.agent - held["agent"]).T).max() < 2.0


def test_an_empty_scene_and_bad_shapes() -> None:
    from dream.engine.models.pusht.render import SceneRenderer

    renderer = SceneRenderer()
    empty = np.clip(np.rint(renderer.resize(renderer.static)), 0, 255).astype(np.uint8)
    reading = read_scene(empty)
    assert not reading.block_visible[0] and not reading.agent_visible[0]
    assert np.isnan(reading.block).all() and np.isnan(reading.agent).all()
    with pytest.raises(ValueError, match=r"\(N, 96, 96, 3\) frames; got shape \(64, 64, 3\)"):
        read_scene(np.zeros((64, 64, 3), np.uint8))
