"""The `dream` command line and the demo, run as a user would (subprocesses, real files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dream.inputs import encode_npy, encode_png

DREAM = [sys.executable, "-m", "dream.cli"]


def run(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*DREAM, *args], capture_output=True, text=True, cwd=cwd, check=check, timeout=300)


def test_help_lists_every_command() -> None:
    out = run("--help").stdout
    for cmd in ("models", "predict", "run", "estimate", "eval", "plan", "serve", "keys", "pull", "convert"):
        assert cmd in out
    assert "DREAM_BASE_URL" in out


@pytest.mark.parametrize("cmd", ["predict", "run", "estimate", "eval", "plan", "serve", "keys", "pull", "convert", "models"])
def test_every_command_has_help(cmd: str) -> None:
    assert "usage: dream" in run(cmd, "--help").stdout


def test_models_lists_the_built_in_model_as_active() -> None:
    out = run("models").stdout
    line = next(row for row in out.splitlines() if row.startswith("pusht-96"))
    assert " yes " in line and "96x96" in line
    dd = next(row for row in out.splitlines() if row.startswith("dreamdojo-2b-gr1"))
    assert " no* " in dd
    # The long "why not active" note is a wrapped paragraph under the table, not a table cell.
    note = out[out.index("* dreamdojo-2b-gr1:"):]
    assert "dream pull dreamdojo-2b-gr1" in " ".join(note.split())
    assert max(len(line) for line in out.splitlines()) <= 100


def test_predict_writes_an_mp4_and_is_deterministic(tmp_path: Path) -> None:
    from dream.engine.video import decode_mp4
    from dream.examples import pusht_episode

    ep = pusht_episode(1)
    (tmp_path / "start.png").write_bytes(encode_png(ep.start_frame))
    (tmp_path / "acts.npy").write_bytes(encode_npy(ep.actions))
    out = run("predict", "--frame", "start.png", "--actions", "acts.npy", "-o", "a.mp4", cwd=tmp_path).stdout
    assert "49 frames" in out and "pusht-96" in out
    run("predict", "--frame", "start.png", "--actions", "acts.npy", "-o", "b.mp4", cwd=tmp_path)
    a, b = (tmp_path / "a.mp4").read_bytes(), (tmp_path / "b.mp4").read_bytes()
    assert a == b
    assert decode_mp4(a).shape == (49, 96, 96, 3)


def test_predict_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "start.png").write_bytes(encode_png(np.zeros((96, 96, 3), np.uint8)))
    (tmp_path / "acts.npy").write_bytes(encode_npy(np.zeros((48, 3), np.float32)))
    res = run("predict", "--frame", "start.png", "--actions", "acts.npy", cwd=tmp_path, check=False)
    assert res.returncode == 1
    assert "InputValidationError" in res.stderr and "model expects 2, got array with shape (48, 3)" in res.stderr
    assert "Traceback" not in res.stderr


def test_run_and_estimate_over_a_folder(tmp_path: Path) -> None:
    from dream.examples import write_pusht_dir

    src = write_pusht_dir(tmp_path / "episodes")
    est = run("estimate", str(src)).stdout
    assert "8 rows x 49 frames" in est
    first = run("run", str(src), str(tmp_path / "out"), "--no-progress").stdout
    assert "8 ok, 0 failed, 0 skipped" in first
    again = run("run", str(src), str(tmp_path / "out"), "--no-progress").stdout
    assert "0 ok, 0 failed, 8 skipped" in again
    assert len(list((tmp_path / "out" / "videos").glob("*.mp4"))) == 8
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out" / "metadata.parquet")
    assert set(table.column("spec").to_pylist()) == {"pusht-96"}  # the resolved default, not null
    assert set(table.column("status").to_pylist()) == {200}
    # Another spec, or one that does not exist: not "8 skipped".
    bad = run("run", str(src), str(tmp_path / "out"), "--no-progress", "--spec", "no-such-spec", check=False)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        bad.stderr.strip()
    ] and "ModelNotFoundError" in bad.stderr and "'no-such-spec'" in bad.stderr
    reseeded = run("run", str(src), str(tmp_path / "out"), "--no-progress", "--seed", "3").stdout
    assert "8 ok, 0 failed, 0 skipped (already done), 8 redone" in reseeded
    assert "other parameters: sampling_seed 0 → 3 (8 rows)" in reseeded
    est = run("estimate", str(src), "--spec", "no-such-spec", check=False)
    assert est.returncode == 1 and "ModelNotFoundError" in est.stderr and "Traceback" not in est.stderr


def test_demo_writes_rollouts_comparisons_and_a_bulk_run(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "dream.demo", "--out", str(tmp_path / "out"), "--episodes", "1", "--no-progress"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    out = tmp_path / "out"
    assert (out / "rollouts" / "ep00.mp4").stat().st_size > 0
    assert (out / "compare_ep00.png").stat().st_size > 0 and (out / "compare_ep00.gif").stat().st_size > 0
    assert (out / "bulk" / "metadata.parquet").is_file()
    assert "bulk: 8 ok, 0 failed" in res.stdout
    assert res.stdout.strip().splitlines()[-1].endswith(f"dream view {out / 'bulk'} --open")


def test_predict_threads_do_not_change_the_bytes(tmp_path: Path) -> None:
    from dream.examples import pusht_episode

    ep = pusht_episode(0)
    (tmp_path / "start.png").write_bytes(encode_png(ep.start_frame))
    (tmp_path / "acts.npy").write_bytes(encode_npy(ep.actions))
    for n in ("1", "2"):
        run("predict", "--frame", "start.png", "--actions", "acts.npy", "-o", f"t{n}.mp4", "--threads", n, cwd=tmp_path)
    assert (tmp_path / "t1.mp4").read_bytes() == (tmp_path / "t2.mp4").read_bytes()


@pytest.mark.parametrize("cmd", ["predict", "run", "eval"])
def test_threads_must_be_positive(cmd: str) -> None:
    res = run(cmd, "--threads", "0", check=False)
    assert res.returncode == 2 and "--threads: must be a positive integer; got '0'" in res.stderr


def test_threads_with_a_server_is_one_error_line(tmp_path: Path) -> None:
    res = run("run", str(tmp_path), str(tmp_path / "out"), "--threads", "2", "--base-url", "http://127.0.0.1:9",
              check=False)
    assert res.returncode == 1 and res.stderr.strip().startswith("error: threads=") and "Traceback" not in res.stderr
