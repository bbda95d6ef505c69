"""Engine.predict from several threads: fused into one call for batch-invariant runners."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from dream.engine.engine import Engine
from tests.shift_runner import ShiftRunner

FRAMES = [np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8) for i in range(4)]
ACTS = [np.array([[i, 0], [0, 1], [1, i]], np.float32) for i in range(4)]


class VariantShiftRunner(ShiftRunner):
    batch_invariant = False


def _concurrent(engine: Engine, slug: str) -> list[np.ndarray]:
    """Four predicts issued while the engine is busy; their frames."""
    out: list[np.ndarray | None] = [None] * 4

    def call(i: int) -> None:
        out[i] = engine.predict(FRAMES[i], ACTS[i], spec=slug, seed=i).frames[0]

    with engine._coalesce_run:  # the engine is busy with an earlier call
        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            sum(len(g.items) for g in engine._groups.values()) == 4 or not engine.coalesces(slug)
        ):
            time.sleep(0.01)
    for t in threads:
        t.join(10)
    return out  # type: ignore[return-value]


def test_by_default_batch_invariant_runners_coalesce_on_accelerators_only(shift_family: None) -> None:
    assert Engine(["shift-seeded"], device="cuda").coalesces("shift-seeded")
    assert not Engine(["shift-seeded"], device="cpu").coalesces("shift-seeded")
    assert not Engine(["shift-seeded"], device="cuda", coalesce=False).coalesces("shift-seeded")


def test_concurrent_predicts_fuse_and_each_gets_its_single_bytes(shift_family: None) -> None:
    engine = Engine(["shift-seeded"], coalesce=True)
    engine.load("shift-seeded")
    singles = [engine.predict(FRAMES[i], ACTS[i], spec="shift-seeded", seed=i).frames[0] for i in range(4)]
    ShiftRunner.calls.clear()
    fused = _concurrent(engine, "shift-seeded")
    assert ShiftRunner.calls == [(4, 3)]  # one engine call for the four
    for a, b in zip(fused, singles, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_runner_that_is_not_batch_invariant_is_not_coalesced_unless_asked(
    shift_family: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dream.engine import runner

    monkeypatch.setitem(runner.RUNNERS, "shift-test", "tests.engine.test_coalesce:VariantShiftRunner")
    engine = Engine(["shift-seeded"], device="cuda")  # a device where invariant runners would fuse
    assert not engine.batch_invariant("shift-seeded") and not engine.coalesces("shift-seeded")
    engine._device = "cpu"  # run it here all the same
    engine.load("shift-seeded")
    ShiftRunner.calls.clear()
    _concurrent(engine, "shift-seeded")
    assert sorted(ShiftRunner.calls) == [(1, 3)] * 4
    forced = Engine(["shift-seeded"], coalesce=True)
    forced.load("shift-seeded")
    ShiftRunner.calls.clear()
    _concurrent(forced, "shift-seeded")
    assert ShiftRunner.calls == [(4, 3)]


def test_a_failing_row_in_a_coalesced_call_fails_alone(shift_family: None) -> None:
    engine = Engine(["shift-seeded"], coalesce=True)
    engine.load("shift-seeded")
    original = ShiftRunner.rollout

    def rollout(self, frames, actions, **kw):
        if np.any(actions[:, 0, 1] == 7):
            raise RuntimeError("poisoned row")
        return original(self, frames, actions, **kw)

    ACTS[2][0, 1] = 7
    try:
        ShiftRunner.rollout = rollout  # type: ignore[method-assign]
        out: dict[int, object] = {}

        def call(i: int) -> None:
            try:
                out[i] = engine.predict(FRAMES[i], ACTS[i], spec="shift-seeded", seed=i).frames[0]
            except Exception as exc:
                out[i] = exc

        with engine._coalesce_run:
            threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and sum(len(g.items) for g in engine._groups.values()) < 4:
                time.sleep(0.01)
        for t in threads:
            t.join(10)
    finally:
        ShiftRunner.rollout = original  # type: ignore[method-assign]
        ACTS[2][0, 1] = 1
    assert "poisoned row" in str(out[2])
    assert all(isinstance(out[i], np.ndarray) for i in (0, 1, 3))
