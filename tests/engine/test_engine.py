"""Engine behaviour on the runner contract: validation, knobs, fusing, determinism."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dream.engine.engine import Engine
from dream.errors import InputValidationError, ModelNotFoundError, WeightsNotFoundError

FRAME = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
ACTS = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)


@pytest.fixture
def engine() -> Engine:
    return Engine(["shift-test", "shift-seeded", "shift-noweights", "shift-chunk4"])


def test_predict_shapes_and_start_frame(engine: Engine) -> None:
    res = engine.predict(FRAME, ACTS, spec="shift-test")
    assert res.frames.shape == (1, 5, 16, 16, 3) and res.frames.dtype == np.uint8
    np.testing.assert_array_equal(res.frames[0, 0], FRAME)
    assert res.num_frames == 5 and res.k == 1
    assert res.cost_usd() == pytest.approx(5 * 0.001)


def test_first_spec_is_the_default_unless_pusht_is_served(engine: Engine) -> None:
    assert engine.spec().slug == "shift-test"


def test_frames_of_another_size_are_fitted(engine: Engine) -> None:
    big = np.zeros((40, 80, 3), np.uint8)
    assert engine.predict(big, ACTS, spec="shift-test").frames.shape[2:4] == (16, 16)


def test_unknown_and_unserved_specs(engine: Engine) -> None:
    with pytest.raises(ModelNotFoundError, match="no-such"):
        engine.predict(FRAME, ACTS, spec="no-such")
    with pytest.raises(ModelNotFoundError, match="unknown spec 'nope'"):
        Engine(["nope"])


def test_missing_weights_say_what_to_fetch(engine: Engine) -> None:
    assert not engine.is_active("shift-noweights")
    with pytest.raises(WeightsNotFoundError, match="DREAM_WEIGHTS_DIR"):
        engine.predict(FRAME, ACTS, spec="shift-noweights")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": 0}, "num_steps must be between 1 and 1000; got 0"),
        ({"num_steps": -3}, "got -3"),
        ({"num_steps": 10**9}, "got 1000000000"),
        ({"num_steps": 2.5}, "num_steps must be an integer; got 2.5"),
        ({"num_steps": "many"}, "got 'many'"),
        ({"guidance": float("nan")}, "guidance must be a finite number"),
        ({"guidance": -1.0}, "got -1.0"),
        ({"guidance": float("inf")}, "got inf"),
        ({"seed": -1}, "seed must be between 0 and 2\\*\\*63-1; got -1"),
        ({"seed": 2**64}, "got 18446744073709551616"),
        ({"seed": "x"}, "seed must be an integer; got 'x'"),
    ],
)
def test_bad_sampling_knobs(engine: Engine, kwargs: dict, match: str) -> None:
    with pytest.raises(InputValidationError, match=match):
        engine.predict(FRAME, ACTS, spec="shift-seeded", **kwargs)


def test_knobs_a_spec_ignores_warn(engine: Engine) -> None:
    with pytest.warns(UserWarning, match="deterministic; seed=7 has no effect"):
        engine.predict(FRAME, ACTS, spec="shift-test", seed=7)
    with pytest.warns(UserWarning, match="num_steps=5 has no effect"):
        engine.predict(FRAME, ACTS, spec="shift-test", num_steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.predict(FRAME, ACTS, spec="shift-test")  # defaults: silent
        res = engine.predict(FRAME, ACTS, spec="shift-seeded", seed=7, num_steps=3)
    assert res.num_steps == 3 and res.seeds == (7,)
    assert engine.predict(FRAME, ACTS, spec="shift-seeded").num_steps == 4  # the spec default


def test_actions_are_validated_against_the_spec(engine: Engine) -> None:
    with pytest.raises(InputValidationError, match=r"model expects 2, got array with shape \(4, 3\)"):
        engine.predict(FRAME, np.zeros((4, 3), np.float32), spec="shift-test")
    with pytest.raises(InputValidationError, match="T=5 is not a multiple of the model's chunk_size=4"):
        engine.predict(FRAME, np.zeros((5, 2), np.float32), spec="shift-chunk4")
    with pytest.raises(InputValidationError, match="start_frame must be uint8"):
        engine.predict(FRAME.astype(np.float32), ACTS, spec="shift-test")


def test_batch_is_one_fused_call_and_equals_single_rollouts(engine: Engine) -> None:
    from tests.shift_runner import ShiftRunner

    k3 = np.stack([ACTS, ACTS * 2, -ACTS])
    engine.load("shift-seeded")  # warm-up runs a small rollout of its own
    ShiftRunner.calls.clear()
    batch = engine.predict_batch(FRAME, k3, spec="shift-seeded", seed=5)
    assert ShiftRunner.calls == [(3, 4)]
    for k in range(3):
        single = engine.predict(FRAME, k3[k], spec="shift-seeded", seed=5)
        np.testing.assert_array_equal(batch.frames[k], single.frames[0])
    with pytest.raises(InputValidationError, match="K=0"):
        engine.predict_batch(FRAME, np.zeros((0, 4, 2), np.float32), spec="shift-test")
    with pytest.raises(InputValidationError, match=r"actions\[0\] action_dim mismatch"):
        engine.predict_batch(FRAME, np.zeros((2, 4, 3), np.float32), spec="shift-test")


def test_fused_rollouts_keep_their_own_seed(engine: Engine) -> None:
    other = np.roll(FRAME, 3, axis=0)
    fused = engine.predict_fused([FRAME, other], [ACTS, ACTS], spec="shift-seeded", seeds=[1, 2])
    alone = engine.predict(other, ACTS, spec="shift-seeded", seed=2)
    np.testing.assert_array_equal(fused.frames[1], alone.frames[0])
    assert not np.array_equal(fused.frames[0], fused.frames[1])


def test_rollout_wall_is_measured(engine: Engine) -> None:
    wall = engine.rollout_wall_s("shift-test")
    assert wall is not None and wall > 0


def test_model_work_runs_on_one_engine_thread_whoever_calls(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tests.shift_runner import ShiftRunner

    seen: list[int] = []
    original = ShiftRunner.rollout

    def recording(self, frames, actions, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend([threading.get_ident()] * len(actions))  # one entry per rollout (calls may be fused)
        return original(self, frames, actions, **kwargs)

    monkeypatch.setattr(ShiftRunner, "rollout", recording)
    first = engine.predict(FRAME, ACTS, spec="shift-test").frames
    with ThreadPoolExecutor(3) as pool:
        others = list(pool.map(lambda _: engine.predict(FRAME, ACTS, spec="shift-test").frames, range(6)))
    # 7 rollouts (+ the warm-up's at load), all on one thread that is not the caller's
    assert len(seen) >= 7 and len(set(seen)) == 1 and seen[0] != threading.get_ident()
    assert all(np.array_equal(first, o) for o in others)
    engine.close()
    before = len(seen)
    engine.predict(FRAME, ACTS, spec="shift-test")  # a closed engine starts a new thread when used again
    assert len(seen) == before + 1


def test_runner_errors_cross_the_engine_thread(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from dream.errors import EngineError
    from tests.shift_runner import ShiftRunner

    def broken(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("kernel exploded")

    engine.load("shift-test")
    monkeypatch.setattr(ShiftRunner, "rollout", broken)
    with pytest.raises(EngineError, match="shift-test rollout failed: RuntimeError: kernel exploded"):
        engine.predict(FRAME, ACTS, spec="shift-test")


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_engine_thread(engine: Engine) -> None:
    import os

    engine.predict(FRAME, ACTS, spec="shift-test")  # the parent's engine thread exists now
    pid = os.fork()
    if pid == 0:  # child: the parent's thread did not survive the fork; this must not hang
        try:
            ok = engine.predict(FRAME, ACTS, spec="shift-test").frames.shape == (1, 5, 16, 16, 3)
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
