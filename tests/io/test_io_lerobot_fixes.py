"""frames_from_lerobot against what `lerobot` itself does (issue 11): HEVC open-GOP seeks,
depth-map cameras, tasks that change within an episode, windows past the episode end,
and errors that say what is wrong with which file."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from io_support import LR_CAMERA, lerobot_action, lerobot_color, make_lerobot_v3, make_lerobot_v21

from dream.io.sources.lerobot import frames_from_lerobot


def _rgb(row) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(row.frame_bytes)).convert("RGB")).reshape(-1, 3).mean(axis=0)


def test_hevc_open_gop_every_frame_starts_a_row(tmp_path: Path) -> None:
    import av

    try:
        av.codec.Codec("libx265", "w")
    except Exception:
        pytest.skip("PyAV here cannot encode libx265")
    lengths = [27, 26]  # 53 frames, as in the report; a keyframe every 10 frames, open GOP
    root = make_lerobot_v3(tmp_path / "ds", lengths, episodes_per_file=2, codec="libx265")
    rows = list(frames_from_lerobot(root, horizon=1, stride=1))
    assert len(rows) == 53
    assert [r.row_id for r in rows if r.error] == []  # 8 of 53 failed: "no frame at t=…"
    for row in rows:
        e, f = row.metadata["episode_index"], row.metadata["start_frame_index"]
        np.testing.assert_allclose(_rgb(row), lerobot_color(e, f), atol=8)


def test_default_camera_is_the_first_rgb_one_not_a_depth_map(tmp_path: Path) -> None:
    root = make_lerobot_v3(tmp_path / "ds", [4])
    info = json.loads((root / "meta" / "info.json").read_text())
    depth = {"dtype": "video", "shape": [64, 64, 1], "names": ["height", "width", "channels"],
             "info": {"video.codec": "hevc", "video.pix_fmt": "gray12le", "video.is_depth_map": True}}
    info["features"] = {"observation.images.depth": depth, **info["features"]}  # listed first
    (root / "meta" / "info.json").write_text(json.dumps(info))
    src = frames_from_lerobot(root)
    assert src.camera == LR_CAMERA
    assert [r.error for r in src] == [None]


def test_each_row_gets_the_task_at_its_start_frame(tmp_path: Path) -> None:
    root = make_lerobot_v21(tmp_path / "ds", [8])
    (root / "meta" / "tasks.jsonl").write_text(
        json.dumps({"task_index": 0, "task": "reach"}) + "\n" + json.dumps({"task_index": 1, "task": "grasp"}) + "\n"
    )
    data = next((root / "data").rglob("*.parquet"))
    table = pq.read_table(data)
    table = table.set_column(table.schema.get_field_index("task_index"), "task_index",
                             pa.array([0, 0, 0, 0, 1, 1, 1, 1], pa.int64()))
    pq.write_table(table, data)
    rows = list(frames_from_lerobot(root, horizon=2, stride=2))
    assert [r.metadata["task"] for r in rows] == ["reach", "reach", "grasp", "grasp"]


def test_windows_past_the_episode_end_warn_or_pad(tmp_path: Path) -> None:
    root = make_lerobot_v3(tmp_path / "ds", [10, 12])
    with pytest.warns(UserWarning, match="3 window.* run past their episode's end.*pad=True"):
        src = frames_from_lerobot(root, horizon=8, stride=5)
    assert src.rows_hint == 2  # starts 0 of episode 0; 0 of episode 1 (5 + 8 > 12)
    with pytest.warns(UserWarning, match="horizon 40 is longer than every episode.*0 rows"):
        assert frames_from_lerobot(root, horizon=40, stride=5).rows_hint == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        padded = frames_from_lerobot(root, horizon=8, stride=5, pad=True)
    rows = list(padded)
    assert padded.rows_hint == len(rows) == 5  # starts 0, 5 | 0, 5, 10
    last = rows[-1]
    assert last.row_id == "episode_000001_from_000010" and last.error is None
    assert last.metadata["num_padded"] == 6 and last.metadata["action_is_pad"] == [False] * 2 + [True] * 6
    actions = np.load(io.BytesIO(last.actions_bytes))
    assert actions.shape == (8, 3)
    np.testing.assert_allclose(actions[:2], [lerobot_action(1, 10), lerobot_action(1, 11)], rtol=1e-6)
    np.testing.assert_allclose(actions[2:], [lerobot_action(1, 11)] * 6, rtol=1e-6)  # the last action repeated
    assert rows[0].metadata["action_is_pad"] == [False] * 8


def test_clear_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"not a LeRobot dataset .*no meta/info.json"):
        frames_from_lerobot(tmp_path / "empty")
    root = make_lerobot_v3(tmp_path / "ds", [4, 4], episodes_per_file=1)
    info_path = root / "meta" / "info.json"
    good_info = info_path.read_text()
    info_path.write_text(good_info[: len(good_info) // 2])
    with pytest.raises(ValueError, match=r"info\.json: not valid JSON"):
        frames_from_lerobot(root)
    info_path.write_text(good_info)
    next((root / "data").rglob("file-001.parquet")).unlink()
    video = next((root / "videos").rglob("file-000.mp4"))
    video.write_bytes(video.read_bytes()[:200])
    rows = list(frames_from_lerobot(root))
    assert "file-001.parquet' is missing" in rows[1].error
    assert LR_CAMERA in rows[0].error and "file-000.mp4" in rows[0].error
    # A mistyped relative path is not taken for a Hub repo id (no 23 s of network retries).
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"no folder 'ds/typo'.*neither exists"):
        frames_from_lerobot("ds/typo")
