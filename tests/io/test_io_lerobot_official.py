"""lerobot's own LeRobotDataset / StreamingLeRobotDataset / DataLoader read what RolloutSink.lerobot
writes: real pusht-96 rollouts through predict_many, checked by tests/io/lerobot_check.py in
.venv-lerobot (lerobot 0.4.4 next to the CPU torch; `make lerobot-env`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import dream
from dream._decode import decode_mp4_to_ndarray
from dream.examples.pusht_files import write_pusht_dir
from dream.io import RolloutSink, frames_from_dir

REPO = Path(__file__).resolve().parents[2]
LEROBOT_PY = REPO / ".venv-lerobot" / "bin" / "python"

if not LEROBOT_PY.exists():
    _missing = "lerobot's virtualenv .venv-lerobot is missing; create it with `make lerobot-env`"
    if os.environ.get("DREAM_REQUIRE_LEROBOT"):  # CI: a missing proof is a failure, not a skip
        raise RuntimeError(_missing)
    pytestmark = pytest.mark.skip(reason=_missing)


@pytest.mark.parametrize("episodes_per_file", [3, 100], ids=["several-files", "one-file"])
def test_lerobot_loads_what_we_write(tmp_path: Path, episodes_per_file: int) -> None:
    src = frames_from_dir(write_pusht_dir(tmp_path / "eps"))
    root = tmp_path / "ds"
    sink = RolloutSink.lerobot(root, repo_id="dream/check", episodes_per_file=episodes_per_file,
                               task="push the T")
    result = dream.Client().predict_many(src, sink, spec="pusht-96", concurrency=2, progress=False)
    assert result.failed == 0 and result.ok >= 4
    # What the check compares with: each rollout's own frames and the row's actions, by episode.
    episodes = sink.episodes
    expected = {}
    rollouts = {row.row_id: row for row in src}
    for e in episodes:
        row = rollouts[e["dream/row_id"]]
        actions = np.load(__import__("io").BytesIO(row.actions_bytes))
        mp4 = dream.Client().models.get("pusht-96").predict(start_frame=row.frame_bytes, actions=actions).mp4_bytes
        expected[f"actions_{e['episode_index']}"] = actions.astype(np.float32)
        expected[f"frames_{e['episode_index']}"] = decode_mp4_to_ndarray(mp4)[:-1]
    np.savez(tmp_path / "expected.npz", **expected)
    done = subprocess.run([str(LEROBOT_PY), str(REPO / "tests" / "io" / "lerobot_check.py"), str(root),
                           str(tmp_path / "expected.npz")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["episodes"] == len(episodes) and report["frames"] == sum(e["length"] for e in episodes)
    assert report["min_psnr_db"] >= 40
    assert report["dataloader_batch"]["action"][:2] == [4, 4]
    if episodes_per_file >= len(episodes):
        assert report["streamed"] == report["frames"]
