"""`dream run lerobot://<GR-1 dataset>` end to end on the tiny DreamDojo config (CPU)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dream.cli import main
from dream.engine import specs
from tests.dreamdojo.conftest import TINY_SLUG, make_tiny_spec
from tests.io.gr1_support import make_gr1_lerobot


def test_dream_run_on_a_gr1_lerobot_dataset(
    tmp_path: Path, tiny_weights_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(specs._REGISTRY, TINY_SLUG, make_tiny_spec())
    monkeypatch.setenv("DREAM_WEIGHTS_DREAMDOJO_TINY_TEST", str(tiny_weights_dir))
    root = make_gr1_lerobot(tmp_path / "gr1", [30, 53])
    out = tmp_path / "out"
    argv = [
        "run", f"lerobot://{root}", str(out), "--spec", TINY_SLUG, "--num-steps", "2", "--no-progress",
        "--source-opt", "fps=10", "--source-opt", "actions=gr1",
        "--source-opt", "horizon=12", "--source-opt", "stride=12",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert "3 ok, 0 failed" in capsys.readouterr().out
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == [
        "episode_000000_from_000002.mp4", "episode_000001_from_000002.mp4", "episode_000001_from_000026.mp4"
    ]
    table = pq.read_table(next(out.glob("*.parquet"))).to_pylist()
    assert [row["status"] for row in table] == [200] * 3 and all(row["frames"] == 13 for row in table)
    # The source's metadata keys are columns of their own (0.5.0's layout).
    assert (table[0]["actions"], table[0]["fps"], table[0]["dataset_fps"]) == ("gr1", 10, 20)
