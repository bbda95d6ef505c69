"""dream.envs on the embedded engine: gymnasium conformance, O(1) steps, fused = single, bad inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

import dream  # noqa: E402
from dream.envs import ResetNeededError, WorldModelEnv, WorldModelVectorEnv  # noqa: E402
from dream.errors import InputValidationError  # noqa: E402
from dream.examples.pusht import pusht_episode  # noqa: E402


@pytest.fixture(scope="module")
def client() -> dream.Client:
    c = dream.Client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def model(client):
    return client.models.get("pusht-96")


def test_check_env_passes(model) -> None:
    from gymnasium.utils.env_checker import check_env

    # made through gymnasium (a spec, so the checker also tries the other render modes)
    env = gymnasium.make("dream.envs:dream/WorldModel-v0", model="pusht-96", render_mode="rgb_array").unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
        check_env(WorldModelEnv(model))
    # gymnasium only recommends a [-1, 1] action space (pusht-96's is the simulator's 512² workspace) and,
    # for the env made directly, says it cannot try other render modes without a spec
    known = ("symmetric and normalized", "not having a spec")
    assert [str(w.message) for w in caught if not any(k in str(w.message) for k in known)] == []
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (96, 96, 3), np.uint8)
    assert env.action_space == gymnasium.spaces.Box(0.0, 512.0, (2,), np.float32)


def test_an_episode_steps_the_model_and_scores_coverage(model) -> None:
    ep = pusht_episode(0)
    env = WorldModelEnv(model, max_episode_steps=20)
    obs, info = env.reset(options={"start_frame": ep.start_frame})
    np.testing.assert_array_equal(obs, ep.start_frame)
    assert 0.0 <= info["coverage"] <= 1.0 and info["steps"] == 0
    frames = []
    for t in range(20):
        obs, reward, terminated, truncated, info = env.step(ep.actions[t])
        frames.append(obs)
        assert reward == pytest.approx(min(info["coverage"] / 0.95, 1.0)) and not terminated
        assert truncated == (t == 19) and info["steps"] == t + 1 and info["action_clipped"] is False
    whole = model._client.engine.predict(ep.start_frame, ep.actions[:20]).frames[0]
    np.testing.assert_array_equal(np.stack(frames), whole[1:])  # the frames of one predict, byte for byte


def test_each_step_costs_one_action_of_engine_work(model, monkeypatch) -> None:
    """O(1) steps: a 300-step episode makes 300 runner calls of one action each (linear work), never a
    rollout from the start frame (quadratic)."""
    from dream.engine.models.pusht.runner import PushTRunner

    calls: list[tuple[str, int]] = []
    advance, rollout = PushTRunner.advance, PushTRunner.rollout

    def counted_advance(self, state, actions, *, draw=True):
        calls.append(("advance", int(actions.shape[1])))
        return advance(self, state, actions, draw=draw)

    def counted_rollout(self, frames, actions, **kw):
        calls.append(("rollout", int(actions.shape[1])))
        return rollout(self, frames, actions, **kw)

    monkeypatch.setattr(PushTRunner, "advance", counted_advance)
    monkeypatch.setattr(PushTRunner, "rollout", counted_rollout)
    env = WorldModelEnv(model, max_episode_steps=300)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    steps = 0
    truncated = terminated = False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(rng.uniform(0, 512, 2).astype(np.float32))
        steps += 1
    assert calls == [("advance", 1)] * steps and (steps == 300 or terminated)


def test_fused_envs_are_byte_identical_to_single_ones(model) -> None:
    eps = [pusht_episode(i) for i in range(4)]
    vec = WorldModelVectorEnv(model, 4, max_episode_steps=30)
    obs, _ = vec.reset(options={"start_frames": [ep.start_frame for ep in eps]})
    fused = [obs]
    rewards = []
    for t in range(24):
        obs, reward, *_ = vec.step(np.stack([ep.actions[t] for ep in eps]))
        fused.append(obs)
        rewards.append(reward)
    fused = np.stack(fused, 1)
    for i, ep in enumerate(eps):
        env = WorldModelEnv(model, max_episode_steps=30)
        obs, _ = env.reset(options={"start_frame": ep.start_frame})
        alone, alone_rewards = [obs], []
        for t in range(24):
            obs, reward, *_ = env.step(ep.actions[t])
            alone.append(obs)
            alone_rewards.append(reward)
        np.testing.assert_array_equal(fused[i], np.stack(alone))
        assert [r[i] for r in rewards] == alone_rewards


def test_the_pose_reward_is_what_reading_the_frame_estimates(model) -> None:
    """On the embedded engine pusht-96's reward is the coverage of the block pose the model drew the
    frame from; reading the predicted frame (the HTTP path, source="frames") agrees up to the reader's error."""
    from dream.envs import block_coverage, pusht_coverage
    from dream.envs.pusht import PushTCoverage
    from dream.examples.pusht import pusht_episodes

    eps = pusht_episodes()
    starts = {"start_frames": [ep.start_frame for ep in eps]}
    by_pose = WorldModelVectorEnv(model, len(eps), max_episode_steps=None)
    by_frame = WorldModelVectorEnv(model, len(eps), max_episode_steps=None, reward=PushTCoverage(source="frames"))
    obs, info = by_pose.reset(options=starts)
    _, frame_info = by_frame.reset(options=starts)
    diffs = [np.abs(info["coverage"] - frame_info["coverage"])]
    covers = [info["coverage"]]
    for t in range(min(len(ep.actions) for ep in eps)):
        act = np.stack([ep.actions[t] for ep in eps])
        obs, _, _, _, info = by_pose.step(act)
        frame_obs, _, _, _, frame_info = by_frame.step(act)
        np.testing.assert_array_equal(obs, frame_obs)  # the reward changes no frame
        held = by_pose._core.stepper.steps.readout()["block"]
        np.testing.assert_array_equal(info["coverage"], block_coverage(held))
        diffs.append(np.abs(info["coverage"] - frame_info["coverage"]))  # the env's frame reward (tracked)
        diffs.append(np.abs(info["coverage"] - pusht_coverage(obs)))  # each frame read whole
        covers.append(info["coverage"])
    assert by_frame._core.reward.reads > 0 and by_pose._core.reward.reads == 0  # the frames were read only there
    assert np.ptp(np.concatenate(covers)) > 0.2  # the blocks were pushed: coverage changed
    assert np.max(diffs) < 0.02, f"pose vs frame coverage: max abs diff {np.max(diffs):.4f}"
    with pytest.raises(ValueError, match="source must be"):
        PushTCoverage(source="pixels")


def test_bad_actions_are_named_and_lose_nothing(model) -> None:
    env = WorldModelEnv(model)
    with pytest.raises(ResetNeededError, match="before reset"):
        env.step(np.zeros(2, np.float32))
    obs0, _ = env.reset(seed=0)
    for bad, match in [
        (np.zeros(3, np.float32), r"shape \(2,\) for pusht-96; got shape \(3,\)"),
        (np.zeros((1, 2), np.float32), r"got shape \(1, 2\)"),
        (np.array([np.nan, 1.0]), r"non-finite.*first at \(0,\): nan"),
        (np.array([1.0, np.inf]), r"first at \(1,\): inf"),
        ("left", "numeric"),
    ]:
        with pytest.raises(InputValidationError, match=match):
            env.step(bad)
    assert env.steps == 0
    np.testing.assert_array_equal(env.render() if env.render_mode else env._core.frames[0], obs0)
    # outside the Box: clipped to it (gymnasium's ClipAction convention) and said so
    obs, _, _, _, info = env.step(np.array([-50.0, 900.0]))
    assert info["action_clipped"] is True
    other = WorldModelEnv(model)
    other.reset(seed=0)
    np.testing.assert_array_equal(other.step(np.array([0.0, 512.0]))[0], obs)


def test_step_after_the_episode_ended_raises(model) -> None:
    env = WorldModelEnv(model, max_episode_steps=2)
    env.reset(seed=1)
    env.step(np.array([100.0, 100.0]))
    *_, truncated, _ = env.step(np.array([100.0, 100.0]))
    assert truncated
    with pytest.raises(ResetNeededError, match="after the episode ended"):
        env.step(np.array([100.0, 100.0]))
    env.reset(seed=1)
    env.step(np.array([100.0, 100.0]))  # a new episode steps again


def test_success_terminates_as_gym_pusht_does(model) -> None:
    """A reward whose info says is_success ends the episode (terminated, not truncated)."""
    calls = []

    def reward(frame):
        calls.append(frame.shape)
        return 1.0, {"is_success": len(calls) >= 3}

    env = WorldModelEnv(model, reward=reward)
    env.reset(seed=2)  # call 1: the start frame's info
    assert env.step(np.array([200.0, 200.0]))[2] is False
    _, r, terminated, truncated, info = env.step(np.array([200.0, 200.0]))
    assert (r, terminated, truncated, info["is_success"]) == (1.0, True, False, True)
    assert calls == [(96, 96, 3)] * 3


def test_reset_options_and_seeded_start_frames(model) -> None:
    env = WorldModelEnv(model)
    a, _ = env.reset(seed=5)
    b, _ = env.reset(seed=5)
    np.testing.assert_array_equal(a, b)
    big = np.kron(pusht_episode(2).start_frame, np.ones((2, 2, 1), np.uint8))  # 192×192: fitted like any start frame
    obs, _ = env.reset(options={"start_frame": big})
    assert obs.shape == (96, 96, 3)
    with pytest.raises(InputValidationError, match="start_frame"):
        env.reset(options={"start_frame": b"not an image"})
    with pytest.raises(InputValidationError, match="start_frames is empty"):
        WorldModelEnv(model, start_frames=[])
    with pytest.raises(InputValidationError, match="max_episode_steps"):
        WorldModelEnv(model, max_episode_steps=0)
    with pytest.raises(TypeError, match="ModelHandle"):
        WorldModelEnv(42)


def test_vector_env_autoresets_the_next_step_and_respects_disabled(model) -> None:
    vec = WorldModelVectorEnv(model, 2, max_episode_steps=2)
    starts = [pusht_episode(0).start_frame, pusht_episode(1).start_frame]
    vec.reset(options={"start_frames": starts})
    act = np.array([[100.0, 100.0], [400.0, 400.0]])
    vec.step(act)
    _, _, terminated, truncated, _ = vec.step(act)
    assert truncated.all() and not terminated.any()
    obs, reward, terminated, truncated, info = vec.step(act)  # NEXT_STEP: this step starts new episodes
    assert (reward == 0).all() and not truncated.any() and (info["steps"] == 0).all()
    assert vec.steps.tolist() == [0, 0]
    disabled = WorldModelVectorEnv(model, 2, max_episode_steps=1, autoreset_mode="Disabled")
    disabled.reset(options={"start_frames": starts})
    disabled.step(act)
    with pytest.raises(ResetNeededError, match=r"rows \[0, 1\] ended"):
        disabled.step(act)
    obs, _ = disabled.reset(options={"reset_mask": np.array([True, False]), "start_frame": starts[1]})
    np.testing.assert_array_equal(obs[0], starts[1])
    with pytest.raises(InputValidationError, match="autoreset_mode"):
        WorldModelVectorEnv(model, 2, autoreset_mode="sometimes")
    with pytest.raises(InputValidationError, match=r"reset got 3 seeds for num_envs=2"):
        vec.reset(seed=[1, 2, 3])


def test_same_step_autoreset_hands_back_the_final_frame(model) -> None:
    vec = WorldModelVectorEnv(model, 2, max_episode_steps=1, autoreset_mode="SameStep")
    starts = [pusht_episode(0).start_frame, pusht_episode(3).start_frame]
    vec.reset(options={"start_frames": starts})
    _obs, _, _, truncated, info = vec.step(np.array([[100.0, 100.0], [300.0, 300.0]]))
    assert truncated.all() and info["_final_obs"].all()
    assert info["final_obs"][0].shape == (96, 96, 3) and info["final_info"]["steps"].tolist() == [1, 1]
    assert vec.steps.tolist() == [0, 0]  # both already started again


def test_envs_import_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, dream, numpy as np\n"
        "from dream.envs import WorldModelEnv\n"
        "env = WorldModelEnv(dream.Client().models.get('pusht-96'))\n"
        "env.reset(seed=0); env.step(np.array([200.0, 200.0]))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_chunked_spec_takes_a_chunk_of_actions_per_step(shift_family) -> None:
    from dream.engine.engine import Engine

    frame = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    acts = np.random.default_rng(1).integers(-3, 4, (8, 2)).astype(np.float32)
    client = dream.Client(engine=Engine(["shift-chunk4"]))
    model = client.models.get("shift-chunk4")
    with pytest.warns(UserWarning, match="no reward is known for 'shift-chunk4'"):
        env = WorldModelEnv(model, start_frames=[frame])
    assert env.action_space.shape == (4, 2) and np.isinf(env.action_space.high).all()  # the spec gives no bounds
    env.reset(seed=0)
    whole = client.engine.predict(frame, acts, spec="shift-chunk4").frames[0]
    for c in range(2):
        obs, reward, _, _, info = env.step(acts[4 * c : 4 * c + 4])
        np.testing.assert_array_equal(info["frames"], whole[1 + 4 * c : 5 + 4 * c])  # every frame of the chunk
        np.testing.assert_array_equal(obs, whole[4 + 4 * c])  # the observation is the chunk's last
        assert reward == 0.0 and info["steps"] == c + 1
    with pytest.raises(InputValidationError, match=r"shape \(4, 2\) for shift-chunk4; got shape \(2,\)"):
        env.step(np.zeros(2, np.float32))
    scored = WorldModelEnv(model, reward=lambda f: float(f.mean()), start_frames=[frame])
    scored.reset(seed=0)
    assert scored.step(acts[:4])[1] == pytest.approx(float(whole[4].mean()))


def test_stacked_infos_are_gymnasiums() -> None:
    """The vector env builds flat infos a key at a time: the same arrays and masks as gymnasium's
    row-by-row `_add_info`, key order and dtypes included."""
    from dream.envs.env import _stack_infos

    class Five(gymnasium.vector.VectorEnv):
        num_envs = 5

    rows = {0: {"coverage": 0.5, "is_success": False, "steps": 3, "action_clipped": True},
            2: {"coverage": 0.25, "is_success": True, "steps": 4, "action_clipped": False},
            4: {"coverage": 1.0, "is_success": False, "steps": 0}}
    want: dict = {}
    for row in sorted(rows):
        want = Five()._add_info(want, rows[row], row)
    got = _stack_infos(rows, 5)
    assert list(got) == list(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key])
