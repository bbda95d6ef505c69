"""PushTRunner: shapes, the start frame, determinism, action clipping and strict loading."""

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
from dream.engine.models.pusht.loader import load_pusht_model  # noqa: E402
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


def _tamper(tmp_path: Path, edit) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = PushTRunner.weights_path(specs.get("pusht-96"))
    with safe_open(str(source), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    edit(tensors)
    out = tmp_path / "tampered.safetensors"
    save_file(tensors, str(out), metadata=metadata)
    return out


def test_loader_names_missing_unexpected_and_misshaped_keys(tmp_path):
    def edit(tensors):
        del tensors["head.bias"]
        tensors["extra.weight"] = torch.zeros(3)
        tensors["stem.weight"] = torch.zeros(1, 2, 3, 4)

    path = _tamper(tmp_path, edit)
    with pytest.raises(EngineError) as info:
        load_pusht_model(path)
    message = str(info.value)
    assert "missing: head.bias" in message
    assert "unexpected: extra.weight" in message
    assert "shape mismatch: stem.weight" in message


def test_loader_accepts_the_untampered_file(tmp_path):
    model = load_pusht_model(_tamper(tmp_path, lambda tensors: None))
    assert not model.training


def test_loader_rejects_a_file_without_config(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(EngineError, match="config"):
        load_pusht_model(path)


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
