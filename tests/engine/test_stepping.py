"""Engine.begin / SteppedRollouts: K rollouts carried forward a few actions at a time."""

from __future__ import annotations

import numpy as np
import pytest

from dream.engine.engine import Engine
from dream.errors import InputValidationError

FRAME = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
ACTS = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [2, 1], [1, 3]], np.float32)


@pytest.fixture
def engine() -> Engine:
    return Engine(["shift-test", "shift-chunk4"])


def test_a_family_without_incremental_stepping_conditions_each_call_on_the_last_frame(engine: Engine) -> None:
    steps = engine.begin(FRAME, spec="shift-test")
    assert not steps.incremental and steps.k == 1
    first = steps.advance(ACTS[None, :2])
    second = steps.advance(ACTS[None, 2:])
    assert first.shape == (1, 2, 16, 16, 3) and second.shape == (1, 4, 16, 16, 3)
    whole = engine.predict(FRAME, ACTS, spec="shift-test").frames
    # the shift family is deterministic and memoryless, so a new rollout from the last frame continues it exactly
    np.testing.assert_array_equal(np.concatenate([first, second], 1), whole[:, 1:])
    assert steps.actions_done == 6 and steps.readout() is None


def test_draw_picks_frames_and_false_draws_none(engine: Engine) -> None:
    whole = engine.predict(FRAME, ACTS, spec="shift-test").frames
    steps = engine.begin(FRAME, spec="shift-test")
    picked = steps.advance(ACTS[None, :4], draw=[1, 3])
    np.testing.assert_array_equal(picked[0], whole[0, [2, 4]])
    assert steps.advance(ACTS[None, 4:], draw=False) is None


def test_bad_inputs_are_named(engine: Engine) -> None:
    steps = engine.begin(FRAME, k=2, spec="shift-chunk4")
    with pytest.raises(InputValidationError, match=r"\(K=2, n, 2\); got shape \(1, 4, 2\)"):
        steps.advance(np.zeros((1, 4, 2), np.float32))
    with pytest.raises(InputValidationError, match="multiple of the chunk_size=4 actions; got n=3"):
        steps.advance(np.zeros((2, 3, 2), np.float32))
    bad = np.zeros((2, 4, 2), np.float32)
    bad[1, 2, 0] = np.nan
    with pytest.raises(InputValidationError, match=r"first at \[k=1, t=2, dim=0\]"):
        steps.advance(bad)
    with pytest.raises(InputValidationError, match=r"draw indices must lie in 0\.\.3"):
        steps.advance(np.zeros((2, 4, 2), np.float32), draw=[4])
    assert steps.actions_done == 0  # nothing was applied
    with pytest.raises(InputValidationError, match="2 start frames for k=3"):
        engine.begin(np.stack([FRAME, FRAME]), k=3, spec="shift-test")
    with pytest.raises(InputValidationError, match="k must be an int"):
        engine.begin(FRAME, k=0, spec="shift-test")


def test_restart_starts_some_rows_again_and_leaves_the_others(engine: Engine) -> None:
    other = FRAME[::-1].copy()
    steps = engine.begin(np.stack([FRAME, FRAME]), spec="shift-test")
    steps.advance(np.stack([ACTS[:3], ACTS[:3]]))
    steps.restart([1], other)
    out = steps.advance(np.stack([ACTS[3:], ACTS[3:]]))
    whole = engine.predict(FRAME, ACTS, spec="shift-test").frames[0]
    np.testing.assert_array_equal(out[0], whole[4:])
    np.testing.assert_array_equal(out[1], engine.predict(other, ACTS[3:], spec="shift-test").frames[0, 1:])
    with pytest.raises(InputValidationError, match=r"distinct indices in 0\.\.1; got \[2\]"):
        steps.restart([2], FRAME)
    with pytest.raises(InputValidationError, match=r"distinct indices"):
        steps.restart([0, 0], FRAME)
    with pytest.raises(InputValidationError, match=r"\(2, H, W, 3\); got shape \(3, 16, 16, 3\)"):
        steps.restart([0, 1], np.stack([FRAME] * 3))


@pytest.fixture(scope="module")
def pusht() -> Engine:
    return Engine(["pusht-96"])


@pytest.fixture(scope="module")
def episodes():
    from dream.examples.pusht import pusht_episode

    return [pusht_episode(i) for i in range(3)]


class TestPushT:
    """The built-in model steps incrementally: byte-identical to one predict, whatever the split."""

    def test_stepping_one_action_at_a_time_equals_one_predict(self, pusht: Engine, episodes) -> None:
        for ep in episodes:
            whole = pusht.predict(ep.start_frame, ep.actions[:24]).frames[0]
            steps = pusht.begin(ep.start_frame)
            assert steps.incremental
            frames = [steps.advance(ep.actions[None, t : t + 1])[0, 0] for t in range(24)]
            np.testing.assert_array_equal(np.stack(frames), whole[1:])

    def test_uneven_splits_and_sparse_drawing_give_the_same_frames(self, pusht: Engine, episodes) -> None:
        ep = episodes[1]
        whole = pusht.predict(ep.start_frame, ep.actions[:20]).frames[0]
        steps = pusht.begin(ep.start_frame)
        assert steps.advance(ep.actions[None, :7], draw=False) is None
        late = steps.advance(ep.actions[None, 7:20], draw=[0, 12])
        np.testing.assert_array_equal(late[0], whole[[8, 20]])

    def test_k_rollouts_step_like_each_alone(self, pusht: Engine, episodes) -> None:
        rng = np.random.default_rng(3)
        start = episodes[0].start_frame
        cands = np.clip(episodes[0].actions[None, :16] + rng.normal(0, 60, (5, 16, 2)), 0, 512).astype(np.float32)
        together = pusht.begin(start, k=5)
        fused = together.advance(cands)
        for k in range(5):
            alone = pusht.begin(start).advance(cands[k : k + 1])
            np.testing.assert_array_equal(fused[k], alone[0])
        np.testing.assert_array_equal(fused, pusht.predict_batch(start, cands).frames[:, 1:])

    def test_readout_holds_the_poses_that_are_drawn(self, pusht: Engine, episodes) -> None:
        from dream.engine.models.pusht.dynamics import rollout_poses

        ep = episodes[2]
        runner = pusht.runner("pusht-96")
        agent, block = runner.fit_start(ep.start_frame)
        steps = pusht.begin(np.stack([ep.start_frame] * 2))
        start = steps.readout()
        np.testing.assert_array_equal(start["agent"], [agent, agent])
        np.testing.assert_array_equal(start["block"], [block, block])
        steps.advance(np.stack([ep.actions[:10]] * 2), draw=False)
        agents, blocks = rollout_poses(agent, block, ep.actions[:10].astype(np.float64), runner.dynamics)
        now = steps.readout()
        np.testing.assert_array_equal(now["agent"][0], agents[-1])
        np.testing.assert_array_equal(now["block"][1], blocks[-1])

    def test_a_restarted_row_steps_like_a_fresh_begin_and_its_neighbours_do_not_notice(self, pusht: Engine, episodes) -> None:
        a, b = episodes[0], episodes[1]
        acts = np.stack([a.actions[:20], a.actions[:20], a.actions[:20]])
        steps = pusht.begin(np.stack([a.start_frame] * 3))
        steps.advance(acts[:, :8], draw=False)
        steps.restart([1], b.start_frame)
        later = steps.advance(np.stack([a.actions[8:20], b.actions[:12], a.actions[8:20]]))
        whole_a = pusht.predict(a.start_frame, a.actions[:20]).frames[0]
        np.testing.assert_array_equal(later[0], whole_a[9:])
        np.testing.assert_array_equal(later[2], whole_a[9:])
        np.testing.assert_array_equal(later[1], pusht.predict(b.start_frame, b.actions[:12]).frames[0, 1:])
        steps.restart([0, 2], np.stack([b.start_frame, b.start_frame]))
        # the scene no rollout starts from any more is dropped: an env that resets for ever does not grow
        assert not any(np.array_equal(sc.frame, a.start_frame) for sc in steps._state.scenes)
        assert len(steps._state.scenes) == 3

    def test_frames_drawn_from_the_last_frame_equal_frames_drawn_from_the_start(self, pusht: Engine, episodes) -> None:
        """pusht-96 redraws only what changed since the previous frame when it drew one an action ago
        (and fuses the rows' agent crops): every frame must equal the reference drawing from the start
        frame alone, with sparse draws, restarts and wild actions in between."""
        runner = pusht.runner("pusht-96")
        rng = np.random.default_rng(7)
        starts = np.stack([ep.start_frame for ep in episodes])
        state = runner.begin(starts, 3, seeds=[0] * 3, num_steps=None, guidance=None)
        checked = 0
        for t in range(40):
            acts = np.stack([ep.actions[t % 24] for ep in episodes])[:, None] + rng.normal(0, 40 * (t % 3), (3, 1, 2))
            out = runner.advance(state, np.clip(acts, -30, 540).astype(np.float32), draw=(t % 9 != 4))
            if out is not None:
                for row in range(3):
                    np.testing.assert_array_equal(out[row, 0], runner._draw(state, row))
                    checked += 1
            if t == 17:
                runner.restart(state, [2], starts[:1])
        assert checked == 3 * 36

    def test_fused_crops_of_many_rollouts_equal_the_reference_drawing(self, pusht: Engine) -> None:
        """Eight rollouts walking, pushing their blocks and jumping about, restarted now and then: the
        agent's crops of all rows drawn in one fused call (unmerged, grown to one size, without the
        block where it cannot reach) and the block's crops drawn row by row give the reference's bytes."""
        from dream.examples.pusht import pusht_episodes

        runner = pusht.runner("pusht-96")
        starts = np.stack([ep.start_frame for ep in pusht_episodes()])
        rng = np.random.default_rng(11)
        state = runner.begin(starts, 8, seeds=[0] * 8, num_steps=None, guidance=None)
        for t in range(60):
            agent, block = state.poses.agent, state.poses.block[:, :2]
            kind = t % 3
            if kind == 0:  # small random steps
                target = agent + rng.normal(0, 15, (8, 2))
            elif kind == 1:  # into the block
                target = agent + (block - agent) * rng.uniform(0.2, 0.6, (8, 1)) + rng.normal(0, 5, (8, 2))
            else:  # anywhere, off the workspace included
                target = rng.uniform(-20, 530, (8, 2))
            out = runner.advance(state, target[:, None].astype(np.float32), draw=t % 11 != 5)
            if out is not None:
                for row in range(8):
                    np.testing.assert_array_equal(out[row, 0], runner._draw(state, row))
            if t % 17 == 16:
                runner.restart(state, [t % 8, (t + 3) % 8], starts[[t % 8, (t + 5) % 8]])
