"""PushTRunner: shapes, the start frame, determinism, batch invariance, action clipping and strict loading."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from dream.engine import specs  # noqa: E402
from dream.engine.models.pusht.dynamics import BlockDynamics  # noqa: E402
from dream.engine.models.pusht.runner import PushTRunner  # noqa: E402
from dream.errors import EngineError, WeightsNotFoundError  # noqa: E402
from dream.examples.pusht import pusht_episode  # noqa: E402


@pytest.fixture(scope="module")
def runner() -> PushTRunner:
    r = PushTRunner(specs.get("pusht-96"))
    r.load()
    return r


def _rollout(runner: PushTRunner, frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
    return runner.rollout(frames, actions, seeds=[0] * len(actions), num_steps=None, guidance=None)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("t", [1, 8, 48])
def test_rollout_shapes_and_start_frame(runner, k, t):
    ep = pusht_episode(0)
    starts = np.stack([pusht_episode(i).start_frame for i in range(k)])
    actions = np.stack([pusht_episode(i).actions[:t] for i in range(k)])
    out = _rollout(runner, starts, actions)
    assert out.shape == (k, t + 1, 96, 96, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0], starts)
    assert ep.frames.dtype == out.dtype


def test_one_start_frame_is_shared_by_k_rollouts(runner):
    ep = pusht_episode(2)
    actions = np.stack([ep.actions[:8], pusht_episode(3).actions[:8]])
    shared = _rollout(runner, ep.start_frame[None], actions)
    explicit = _rollout(runner, np.stack([ep.start_frame] * 2), actions)
    np.testing.assert_array_equal(shared, explicit)
    assert not np.array_equal(shared[0], shared[1])  # the actions matter


def test_same_inputs_give_identical_frames(runner):
    ep = pusht_episode(4)
    a = _rollout(runner, ep.start_frame[None], ep.actions[None])
    b = _rollout(runner, ep.start_frame[None], ep.actions[None])
    np.testing.assert_array_equal(a, b)


def test_same_inputs_give_identical_frames_in_a_fresh_process(runner):
    ep = pusht_episode(5)
    here = hashlib.sha256(_rollout(runner, ep.start_frame[None], ep.actions[None]).tobytes()).hexdigest()
    code = textwrap.dedent(
        f"""
        import hashlib, torch
        torch.set_num_threads({torch.get_num_threads()})
        from dream.engine import specs
        from dream.engine.models.pusht.runner import PushTRunner
        from dream.examples.pusht import pusht_episode
        r = PushTRunner(specs.get("pusht-96")); r.load()
        ep = pusht_episode(5)
        out = r.rollout(ep.start_frame[None], ep.actions[None], seeds=[0], num_steps=None, guidance=None)
        print(hashlib.sha256(out.tobytes()).hexdigest())
        """
    )
    env_path = str(Path(__import__("dream").__file__).resolve().parents[1])
    import os

    env = {**os.environ, "PYTHONPATH": env_path + os.pathsep + os.environ.get("PYTHONPATH", "")}
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert there.stdout.strip() == here


def test_actions_outside_the_workspace_are_clipped(runner):
    ep = pusht_episode(0)
    wild = ep.actions[:6].copy()
    wild[::2] = [[-100.0, 900.0]]
    clipped = np.clip(wild, 0.0, 512.0)
    np.testing.assert_array_equal(
        _rollout(runner, ep.start_frame[None], wild[None]),
        _rollout(runner, ep.start_frame[None], clipped[None]),
    )


def test_seeds_and_sampler_knobs_do_not_change_the_output(runner):
    ep = pusht_episode(1)
    a = runner.rollout(ep.start_frame[None], ep.actions[None, :4], seeds=[0], num_steps=None, guidance=None)
    b = runner.rollout(ep.start_frame[None], ep.actions[None, :4], seeds=[99], num_steps=7, guidance=3.0)
    np.testing.assert_array_equal(a, b)


def test_weights_status_and_missing_weights():
    assert PushTRunner.weights_status(specs.get("pusht-96")).available
    ghost = replace(specs.get("pusht-96"), slug="pusht-96-does-not-exist")
    status = PushTRunner.weights_status(ghost)
    assert not status.available and "pusht-96-does-not-exist.safetensors" in status.message
    with pytest.raises(WeightsNotFoundError, match="missing"):
        PushTRunner(ghost).load()


def test_a_fused_row_equals_the_single_rollout_bit_for_bit(runner):
    assert PushTRunner.batch_invariant
    starts = np.stack([pusht_episode(i).start_frame for i in range(3)])
    actions = np.stack([pusht_episode(i).actions[:16] for i in range(3)])
    fused = _rollout(runner, starts, actions)
    for row in range(3):
        alone = _rollout(runner, starts[row : row + 1], actions[row : row + 1])
        np.testing.assert_array_equal(fused[row], alone[0])


def test_output_does_not_depend_on_the_torch_thread_count(runner):
    ep = pusht_episode(6)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(_rollout(runner, ep.start_frame[None], ep.actions[None, :12]))
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_holding_the_agent_still_reproduces_the_start_frame(runner):
    # the no-action baseline of `dream eval`: every action is the agent's own start position
    ep = pusht_episode(3)
    agent, block = runner.fit_start(ep.start_frame)
    assert np.hypot(agent[0] - block[0], agent[1] - block[1]) > 120  # not touching: nothing may move
    held = np.tile(np.asarray(agent, np.float32), (8, 1))
    out = _rollout(runner, ep.start_frame[None], held[None])
    for frame in out[0]:
        np.testing.assert_array_equal(frame, ep.start_frame)


def test_pixels_far_from_the_agent_and_block_keep_the_start_frame_exactly(runner):
    ep = pusht_episode(0)
    out = _rollout(runner, ep.start_frame[None], ep.actions[None, :16])[0]
    changed = np.any(out != ep.start_frame, axis=-1)
    # the goal T, the walls and the floor are never redrawn: only a few % of pixels move
    assert 0 < changed.mean() < 0.1


def _tamper(tmp_path: Path, edit) -> Path:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    source = PushTRunner.weights_path(specs.get("pusht-96"))
    with safe_open(str(source), framework="numpy") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    edit(tensors)
    out = tmp_path / "tampered.safetensors"
    save_file(tensors, str(out), metadata=metadata)
    return out


def test_loader_names_missing_unexpected_and_misshaped_entries(tmp_path):
    def edit(tensors):
        del tensors["layers.1.bias"]
        tensors["extra"] = np.zeros(3)

    with pytest.raises(EngineError) as info:
        BlockDynamics.load(_tamper(tmp_path, edit))
    assert "missing entries ['layers.1.bias']" in str(info.value) and "unexpected entries ['extra']" in str(info.value)

    def reshape(tensors):
        tensors["layers.1.weight"] = np.zeros((3, 3))

    with pytest.raises(EngineError, match="layer 1 has weight"):
        BlockDynamics.load(_tamper(tmp_path, reshape))


def test_loader_accepts_the_untampered_file(tmp_path):
    loaded = BlockDynamics.load(_tamper(tmp_path, lambda tensors: None))
    shipped = BlockDynamics.load(PushTRunner.weights_path(specs.get("pusht-96")))
    assert len(loaded.layers) == len(shipped.layers) >= 2
    for (w, b), (w2, b2) in zip(loaded.layers, shipped.layers, strict=True):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(b, b2)


def test_loader_rejects_a_file_of_another_format(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "bare.safetensors"
    save_file({"x": np.zeros(2)}, str(path))
    with pytest.raises(EngineError, match="not a pusht-96 dynamics file"):
        BlockDynamics.load(path)


def test_mp4_bytes_are_the_same_with_one_or_two_torch_threads():
    from dream.engine.engine import Engine

    ep = pusht_episode(7)
    videos = []
    for threads in (1, 2):
        engine = Engine(["pusht-96"], device="cpu", threads=threads)
        engine.load("pusht-96")
        frames = engine.predict(ep.start_frame, ep.actions[:10]).frames[0]
        videos.append(engine.encode_mp4(frames))
        engine.close()
    assert videos[0] == videos[1]


@pytest.mark.parametrize("chunk", [1, 5, 48])
def test_chunks_concatenate_to_the_rollout_bit_for_bit(runner, chunk):
    actions = np.stack([pusht_episode(i).actions[:13] for i in range(2)])
    start = pusht_episode(5).start_frame[None]
    whole = _rollout(runner, start, actions)
    chunks = list(runner.rollout_chunks(start, actions, seeds=[0, 0], num_steps=None, guidance=None, chunk_actions=chunk))
    assert chunks[0].shape == (2, 1, 96, 96, 3)
    assert [c.shape[1] for c in chunks[1:-1]] == [chunk] * (len(chunks) - 2)
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), whole)


def test_an_engine_stream_equals_predict_batch_and_interleaves_with_other_calls():
    from dream.engine.engine import Engine

    engine = Engine(["pusht-96"], threads=1)
    ep = pusht_episode(6)
    actions = np.stack([ep.actions[:20], pusht_episode(7).actions[:20]])
    whole = engine.predict_batch(ep.start_frame, actions, spec="pusht-96").frames
    stream = engine.stream([ep.start_frame], actions, spec="pusht-96", seeds=[0, 0], chunk_frames=8)
    got = [stream.next_chunk()]
    other = engine.predict(ep.start_frame, ep.actions[:3], spec="pusht-96")  # runs between two chunks
    while (chunk := stream.next_chunk()) is not None:
        assert chunk.shape[1] <= 4  # 8 frames over K = 2 rollouts
        got.append(chunk)
    np.testing.assert_array_equal(np.concatenate(got, axis=1), whole)
    np.testing.assert_array_equal(other.frames[0], whole[0, :4])
    assert stream.done and stream.frames_done == 21 and stream.wall_ms > 0


def test_pusht_96_rolls_out_without_importing_torch():
    """A numpy-only family must not pay torch's import (≈1 s) in every fresh process: a
    Ray actor, a CLI call, a forked worker."""
    code = textwrap.dedent(
        """
        import sys
        from dream.engine.engine import Engine
        from dream.examples import pusht_episode

        ep = pusht_episode(0)
        engine = Engine(threads=1)
        engine.predict(ep.start_frame, ep.actions[:4], spec="pusht-96")
        print("torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
