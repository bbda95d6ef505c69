"""CLI errors as a new user meets them (issue 11): one `error: …` line, a non-zero exit, no
traceback, and nothing run or written before the mistake is reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dream.inputs import encode_npy, encode_png

DREAM = [sys.executable, "-m", "dream.cli"]


def fails(*args: str, cwd: Path | None = None) -> str:
    res = subprocess.run([*DREAM, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert res.returncode != 0, res.stdout
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_predict_refuses_outputs_it_cannot_write_before_running(tmp_path: Path) -> None:
    (tmp_path / "start.png").write_bytes(encode_png(np.zeros((96, 96, 3), np.uint8)))
    (tmp_path / "acts.npy").write_bytes(encode_npy(np.zeros((8, 2), np.float32)))
    line = fails("predict", "--frame", "start.png", "--actions", "acts.npy", "-o", "x.gif", cwd=tmp_path)
    assert "x.gif" in line and "*.mp4" in line and not (tmp_path / "x.gif").exists()
    line = fails("predict", "--frame", "start.png", "--actions", "acts.npy", "-o", "/nonexistent/dir/x.mp4",
                 cwd=tmp_path)
    assert "'/nonexistent/dir' does not exist" in line


def test_source_and_sink_option_mistakes_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "eps").mkdir()
    line = fails("run", str(tmp_path / "eps"), str(tmp_path / "out"), "--sink-opt", "nope=1")
    assert "nope" in line and "valid options" in line and "fsync" in line
    line = fails("run", str(tmp_path / "eps"), str(tmp_path / "out"), "--sink-opt", "fsync=maybe")
    assert "fsync='maybe'" in line and "bool" in line
    line = fails("estimate", "hf://datasets/org/name")
    assert "frame_field" in line and "--source-opt" in line


def test_warnings_are_one_line_about_what_the_user_wrote(tmp_path: Path) -> None:
    from dream.examples import pusht_episode

    ep = pusht_episode(1)
    (tmp_path / "start.png").write_bytes(encode_png(ep.start_frame))
    (tmp_path / "acts.npy").write_bytes(encode_npy(ep.actions[:8]))
    res = subprocess.run([*DREAM, "predict", "--frame", "start.png", "--actions", "acts.npy", "-o", "a.mp4",
                          "--num-steps", "3"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("warning: ") for line in lines), res.stderr
    assert "num_steps" in res.stderr and "/bin/" not in res.stderr and ".py:" not in res.stderr


def test_a_failed_pull_leaves_no_empty_weights_folder(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub

    from dream.engine.models.dreamdojo import hub
    from dream.errors import EngineError

    def offline(**kwargs):
        raise OSError("simulated: the Hub is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(EngineError, match="could not download"):
        hub.pull("dreamdojo-2b-gr1", dest=tmp_path / "weights")
    # An empty dreamdojo-2b-gr1/ would be taken for the weights and hide the Hub cache.
    assert not (tmp_path / "weights" / "dreamdojo-2b-gr1").exists()
    (tmp_path / "weights" / "dreamdojo-2b-gr1").mkdir(parents=True)
    (tmp_path / "weights" / "dreamdojo-2b-gr1" / "keep.txt").write_text("mine")
    with pytest.raises(EngineError):
        hub.pull("dreamdojo-2b-gr1", dest=tmp_path / "weights")
    assert (tmp_path / "weights" / "dreamdojo-2b-gr1" / "keep.txt").exists()  # not ours to delete


def test_estimate_without_a_row_count_fails_clearly() -> None:
    # An unreachable Hub (a closed local port; nothing leaves the machine): no "unknown", exit 0.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**__import__("os").environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_DISABLE_TELEMETRY": "1"}
    res = subprocess.run([*DREAM, "estimate", "hf://datasets/org/name", "--source-opt", "frame_field=image",
                          "--source-opt", "actions_field=action"], capture_output=True, text=True, timeout=300, env=env)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: cannot count the rows"), res.stderr
