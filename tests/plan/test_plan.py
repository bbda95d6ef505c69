"""dream.plan: optimisers on a known cost, determinism, bad inputs, the fast path's equivalences,
the simulator oracle and a short closed loop in gym-pusht."""

from __future__ import annotations

import numpy as np
import pytest

import dream
from dream.engine.engine import Engine
from dream.errors import InputValidationError
from dream.plan import CEM, MPC, MPPI, GoalImageCost, SimulatorModel, goal_image_cost

TARGET = (11, 5)  # where the fake model's bright pixel should end


def _dot_frame() -> np.ndarray:
    frame = np.zeros((16, 16, 3), np.uint8)
    frame[8, 8] = 255
    return frame


def _dot_cost(frames: np.ndarray) -> np.ndarray:
    """Squared distance (on the 16-px torus) of the final frame's bright pixel from TARGET."""
    last = frames[:, -1, :, :, 0].reshape(len(frames), -1).argmax(1)
    y, x = np.divmod(last, 16)
    dy = np.minimum(np.abs(y - TARGET[0]), 16 - np.abs(y - TARGET[0]))
    dx = np.minimum(np.abs(x - TARGET[1]), 16 - np.abs(x - TARGET[1]))
    return (dy**2 + dx**2).astype(np.float64)


@pytest.fixture
def shift_engine(shift_family) -> Engine:
    from tests.shift_runner import ShiftRunner

    ShiftRunner.calls.clear()
    return Engine(["shift-test", "shift-chunk4"])


@pytest.mark.parametrize("planner", [CEM, MPPI])
def test_the_optimisers_find_the_minimum_of_a_known_cost_through_a_fake_model(shift_engine, planner) -> None:
    # the fake model moves a dot by round(action) px per step: the best plan moves it (3, -3) in all
    p = planner(shift_engine, _dot_cost, horizon=2, repeat=1, samples=64, iterations=6, elites=8, init_std=3.0, seed=1)
    actions = p.plan(_dot_frame())
    assert actions.shape == (2, 2) and actions.dtype == np.float32
    assert p.last is not None and p.last.cost == 0.0
    assert tuple(np.round(actions).sum(0).astype(int) % 16) == ((TARGET[0] - 8) % 16, (TARGET[1] - 8) % 16)
    assert p.last.rollouts == 64 * 6 and p.last.iterations == 6
    assert p.last.costs_per_iteration == sorted(p.last.costs_per_iteration, reverse=True)  # best so far never rises
    frames = p.last.frames  # the best plan's predicted frames
    assert frames.shape == (3, 16, 16, 3) and _dot_cost(frames[None])[0] == 0.0


def test_a_plan_is_deterministic_for_a_seed(shift_engine) -> None:
    def plan(seed: int) -> np.ndarray:
        p = CEM(shift_engine, _dot_cost, horizon=4, repeat=2, samples=16, iterations=2, elites=4, init_std=4.0, seed=seed)
        return p.plan(_dot_frame())

    np.testing.assert_array_equal(plan(3), plan(3))
    assert not np.array_equal(plan(3), plan(4))
    p = CEM(shift_engine, _dot_cost, horizon=4, repeat=2, samples=16, iterations=2, elites=4, init_std=4.0, seed=3)
    first = p.plan(_dot_frame())
    p.reset()
    np.testing.assert_array_equal(p.plan(_dot_frame()), first)


def test_bad_inputs_fail_before_any_engine_work(shift_engine) -> None:
    from tests.shift_runner import ShiftRunner

    frame = _dot_frame()
    with pytest.raises(InputValidationError, match=r"elites=9 > samples=8"):
        CEM(shift_engine, _dot_cost, samples=8, elites=9)
    with pytest.raises(InputValidationError, match=r"horizon=6 is not a multiple of shift-chunk4's chunk_size=4"):
        CEM(dream.Client(engine=shift_engine).models.get("shift-chunk4"), _dot_cost, horizon=6)
    for name in ("horizon", "samples", "iterations", "elites"):
        for bad in (0, -3, 2.5):
            with pytest.raises(InputValidationError, match=rf"{name} must be a positive int; got {bad}"):
                CEM(shift_engine, _dot_cost, **{name: bad})
    with pytest.raises(InputValidationError, match=r"horizon=4 is not a multiple of repeat=3"):
        CEM(shift_engine, _dot_cost, horizon=4, repeat=3)
    with pytest.raises(InputValidationError, match=r"temperature must be a positive finite number; got 0"):
        MPPI(shift_engine, _dot_cost, temperature=0)
    with pytest.raises(InputValidationError, match=r"cost must be callable"):
        CEM(shift_engine, "goal.png")
    with pytest.raises(InputValidationError, match=r"replan_every must be an int in 1..horizon=2; got 3"):
        MPC(CEM(shift_engine, _dot_cost), replan_every=3)
    assert ShiftRunner.calls == []  # nothing reached the model

    bad_costs = {
        r"must return shape \(16,\) for K=16 candidates; got shape \(16, 1\)": lambda f: np.zeros((len(f), 1)),
        r"must return shape \(16,\) for K=16 candidates; got shape \(3,\)": lambda f: np.zeros(3),
        r"1 non-finite value\(s\) \(NaN or inf\); first at candidate 2: nan": lambda f: np.where(np.arange(len(f)) == 2, np.nan, 0.0),
        r"non-finite value\(s\) \(NaN or inf\); first at candidate 0: inf": lambda f: np.full(len(f), np.inf),
    }
    for message, cost in bad_costs.items():
        with pytest.raises(InputValidationError, match=message):
            CEM(shift_engine, cost, samples=16, elites=4).plan(frame)
    with pytest.raises(InputValidationError, match=r"stride must be a positive int or None; got 0"):
        goal_image_cost(frame, stride=0)


def test_a_goal_frame_of_another_size_is_resized_like_a_start_frame() -> None:
    from dream.examples.pusht import pusht_episode
    from dream.inputs import fit_frame

    goal = pusht_episode(0).start_frame
    big = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(goal).resize((192, 192)))
    cost = goal_image_cost(big)
    p = CEM(dream.Client().models.get("pusht-96"), cost, samples=8, iterations=1, elites=2)
    assert cost.goal.shape == (96, 96, 3)
    np.testing.assert_array_equal(cost.goal, fit_frame(big, (96, 96)))
    assert p.plan(goal).shape == (30, 2)
    with pytest.raises(InputValidationError, match=r"goal_frame shows no Push-T agent and block"):
        CEM(dream.Client().models.get("pusht-96"), goal_image_cost(np.full((96, 96, 3), 255, np.uint8)))


def _pusht_pair():
    from dream.examples.pusht import pusht_episode

    engine = Engine(["pusht-96"])
    episode = pusht_episode(0)
    start, goal = episode.start_frame, episode.frames[20]
    return engine, start, goal


def test_pose_costs_on_the_embedded_engine_equal_costs_read_off_its_frames() -> None:
    engine, start, goal = _pusht_pair()
    cost = goal_image_cost(goal).bind((96, 96), "pusht", stride=5)
    rng = np.random.default_rng(0)
    knots = rng.uniform(80, 430, (12, 4, 2))
    actions = np.repeat(knots, 5, axis=1).astype(np.float32)
    from dream.plan.models import EmbeddedImagination

    fast = EmbeddedImagination(engine, "pusht-96").costs(start, actions, cost)  # poses, no frame drawn
    exact = EmbeddedImagination(engine, "pusht-96", exact=True).costs(start, actions, cost)
    np.testing.assert_allclose(fast, exact, rtol=0, atol=1e-6)  # BLAS products vs einsum: float rounding
    frames = engine.predict_batch(start, actions).frames  # every frame drawn, the poses read back off them
    read = cost(frames)
    assert np.abs(read - fast).max() < 4.0  # the pose reader's error (≈ 0.4 px, 0.15° per pose)
    assert (np.argsort(read)[:3] == np.argsort(fast)[:3]).all()


def test_the_fast_path_draws_the_frames_predict_draws() -> None:
    engine, start, goal = _pusht_pair()
    p = CEM(engine, goal_image_cost(goal), samples=16, iterations=2, elites=4)
    actions = p.plan(start)
    np.testing.assert_array_equal(p.last.frames, engine.predict(start, actions).frames[0])


def test_mpc_replans_when_its_queue_runs_out_and_warm_starts(shift_engine) -> None:
    p = CEM(shift_engine, _dot_cost, horizon=4, repeat=2, samples=16, iterations=2, elites=4, init_std=3.0)
    mpc = MPC(p)
    assert mpc.replan_every == 2
    frame = _dot_frame()
    for _ in range(5):
        assert mpc.act(frame).shape == (2,)
    assert len(mpc.plans) == 3
    shifted = p._warm.copy()
    mpc.reset()
    assert mpc.plans == [] and p._warm is None
    assert shifted.shape == (2, 2)


# ---------------------------------------------------------------------------- the simulator

gym_pusht = pytest.importorskip("gym_pusht")


def test_a_simulator_copy_replays_the_simulator_exactly_from_rest() -> None:
    from dream.sim.pusht import PushTSim, generate_episode

    sim = PushTSim()
    episode = generate_episode(2_000_000, 30, policy="seek_push", sim=sim)
    sim.reset(2_000_000)
    error, pixels = SimulatorModel(sim).check_replay(episode.actions)
    assert error <= 1e-4 and pixels == 0


def test_a_two_episode_closed_loop_in_the_simulator(tmp_path) -> None:
    from dream.eval.plan_eval import plan_markdown, run_plan_eval

    options = {"samples": 24, "iterations": 2, "elites": 6}
    summary = run_plan_eval(tmp_path, pairs=2, controllers=("model", "oracle", "nothing"), options=options)
    for kind in ("model", "oracle", "nothing"):
        entry = summary["controllers"][kind]
        assert entry["episodes"] == 2 and 0.0 <= entry["success_rate"] <= 1.0
    assert summary["controllers"]["model"]["rollouts_per_plan"] == 48
    assert "| model | 2 |" in plan_markdown(summary)
    lines = (tmp_path / "episodes-model-oracle-nothing-0.jsonl").read_text().splitlines()
    again = run_plan_eval(tmp_path, pairs=2, controllers=("model", "oracle", "nothing"), options=options)
    assert (tmp_path / "episodes-model-oracle-nothing-0.jsonl").read_text().splitlines() == lines  # resumed: nothing redone
    assert again["controllers"]["model"]["success_rate"] == summary["controllers"]["model"]["success_rate"]


def test_the_oracle_scores_poses_like_its_rendered_frames() -> None:
    from dream.eval.plan_eval import make_pair
    from dream.sim.pusht import PushTSim

    sim = PushTSim()
    pair = make_pair(2_000_001, sim)
    sim.reset(pair.seed)
    oracle = SimulatorModel(sim)
    cost = GoalImageCost(pair.goal).bind((96, 96), "pusht", stride=5)
    actions = np.repeat(np.random.default_rng(1).uniform(80, 430, (6, 2, 2)), 5, axis=1).astype(np.float32)
    poses = oracle.costs(pair.start, actions, cost)
    frames = np.stack([oracle.frames(pair.start, a) for a in actions])
    assert np.abs(cost(frames) - poses).max() < 4.0


def test_dream_plan_writes_the_plan_and_prints_its_predicted_cost(tmp_path) -> None:
    import subprocess
    import sys

    from dream.examples.pusht import pusht_episode
    from dream.inputs import encode_png

    episode = pusht_episode(0)
    (tmp_path / "start.png").write_bytes(encode_png(episode.start_frame))
    (tmp_path / "goal.png").write_bytes(encode_png(episode.frames[20]))
    args = [sys.executable, "-m", "dream.cli", "plan", "--frame", "start.png", "--goal", "goal.png", "-o", "plan.npy",
            "--video", "plan.mp4", "--samples", "16", "--iterations", "2"]
    out = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300, check=True).stdout
    assert "predicted cost" in out and "32 rollouts" in out
    plan = np.load(tmp_path / "plan.npy")
    assert plan.shape == (30, 2) and plan.dtype == np.float32
    assert (tmp_path / "plan.mp4").stat().st_size > 0
    bad = subprocess.run([*args[:7], "missing.png", "-o", "x.npy"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert bad.returncode != 0 and "missing.png" in bad.stderr


def test_gym_pushts_task_cost_is_zero_at_the_goal_zone_and_ignores_the_agent() -> None:
    import math

    from dream.envs.pusht import GOAL_POSE
    from dream.eval.plan_eval import pusht_task_cost

    cost = pusht_task_cost().bind((96, 96), "pusht", stride=5)
    x, y, a = GOAL_POSE
    goal = np.array([x - math.sin(a) * 45.0, y + math.cos(a) * 45.0, a])
    agents = np.array([[[100.0, 100.0], [400.0, 50.0]]])
    blocks = np.array([[goal, goal + np.array([10.0, 0.0, math.radians(5)])]])
    np.testing.assert_allclose(cost.score_poses(agents, blocks), [0.5 * 0 + 0.5 * 15.0])
    with pytest.raises(InputValidationError, match=r"goal poses must be finite"):
        GoalImageCost.for_poses(agent=[np.nan, 0.0], block=goal)


def test_blas_runs_one_thread_inside_a_plan_and_is_restored_after() -> None:
    from dream.plan._blas import blas_threads, one_blas_thread

    before = blas_threads()
    if before is None:
        pytest.skip("numpy's OpenBLAS is not reachable here")
    with one_blas_thread():
        assert blas_threads() == 1
    assert blas_threads() == before
