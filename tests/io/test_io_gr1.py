"""frames_from_lerobot at a model's rate (fps) and with GR-1 model actions (actions="gr1")."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from io_support import lerobot_color, make_lerobot_v21
from PIL import Image

from dream.actions import gr1_actions
from dream.io.sources.lerobot import frames_from_lerobot
from dream.io.uri import source_from_uri
from tests.io.gr1_support import gr1_raw_action, gr1_raw_state, make_gr1_lerobot

LENGTHS = [30, 53]


@pytest.fixture(scope="module")
def gr1_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gr1_lerobot(tmp_path_factory.mktemp("gr1") / "ds", LENGTHS)


def _rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_fps_subsamples_frames_and_actions(gr1_root: Path) -> None:
    rows = list(frames_from_lerobot(gr1_root, fps=10, horizon=4, stride=5))
    # 10 fps steps per episode: 15 and 27; windows of 4 every 5 steps.
    starts = [(r.metadata["episode_index"], r.metadata["start_frame_index"]) for r in rows]
    assert starts == [(0, 0), (0, 10), (0, 20), (1, 0), (1, 10), (1, 20), (1, 30), (1, 40)]
    for row in rows:
        e, f = row.metadata["episode_index"], row.metadata["start_frame_index"]
        actions = np.load(io.BytesIO(row.actions_bytes))
        np.testing.assert_allclose(actions, [gr1_raw_action(e, f + 2 * i) for i in range(4)], rtol=1e-6)
        np.testing.assert_allclose(_rgb(row.frame_bytes).reshape(-1, 3).mean(0), lerobot_color(e, f), atol=8)
        assert row.metadata["fps"] == 10 and row.metadata["dataset_fps"] == 20
    whole = list(frames_from_lerobot(gr1_root, fps=10))
    assert [np.load(io.BytesIO(r.actions_bytes)).shape[0] for r in whole] == [15, 27]
    assert frames_from_lerobot(gr1_root, fps=20, horizon=4, stride=5).rows_hint == 6 + 10


def test_gr1_actions_rows_equal_the_helper(gr1_root: Path) -> None:
    src = frames_from_lerobot(gr1_root, fps=10, actions="gr1", horizon=12, stride=12, episodes=[1])
    rows = list(src)
    # 27 steps at 10 fps; the first row starts one step in (step 0 is the baseline).
    assert [r.metadata["start_frame_index"] for r in rows] == [2, 26]
    assert src.rows_hint == 2
    for row in rows:
        f = row.metadata["start_frame_index"]
        raw = np.stack([gr1_raw_action(1, f - 2 + 2 * i) for i in range(13)])
        expected = gr1_actions(raw, gr1_raw_state(1, f - 2))
        got = np.load(io.BytesIO(row.actions_bytes))
        assert got.shape == (12, 384) and got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_allclose(_rgb(row.frame_bytes).reshape(-1, 3).mean(0), lerobot_color(1, f), atol=8)
        assert row.metadata["actions"] == "gr1"
    # One row per episode: T trimmed to a multiple of 4 (14 of 15 steps after the baseline → 12).
    per_episode = list(frames_from_lerobot(gr1_root, fps=10, actions="gr1", episodes=[0]))
    assert np.load(io.BytesIO(per_episode[0].actions_bytes)).shape == (12, 384)


def test_gr1_options_through_the_uri_and_cli_strings(gr1_root: Path) -> None:
    """`dream run lerobot:///… --source-opt fps=10 --source-opt horizon=12 …` passes strings."""
    src = source_from_uri(
        f"lerobot://{gr1_root}?actions=gr1", fps="10", horizon="12", stride="12", episodes="1"
    )
    assert (src.step, src.action_form, src.horizon, src.rows_hint) == (2, "gr1", 12, 2)
    with pytest.raises(ValueError, match=r"option horizon='twelve'"):
        source_from_uri(f"lerobot://{gr1_root}", horizon="twelve")


def test_fps_and_gr1_refusals(gr1_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"fps=7 does not divide the dataset's 20 fps"):
        frames_from_lerobot(gr1_root, fps=7)
    with pytest.raises(ValueError, match=r"fps=40 does not divide"):
        frames_from_lerobot(gr1_root, fps=40)
    with pytest.raises(ValueError, match=r"actions must be one of \('raw', 'gr1'\), got 'gr2'"):
        frames_from_lerobot(gr1_root, actions="gr2")
    with pytest.raises(ValueError, match=r"needs the proprio state 'observation.joints'"):
        frames_from_lerobot(gr1_root, actions="gr1", state_key="observation.joints")
    # A 3-dim dataset is no GR-1 data: the row fails with the helper's message, the rest goes on.
    other = make_lerobot_v21(tmp_path / "pusht", [9])
    (row,) = list(frames_from_lerobot(other, actions="gr1"))
    assert row.error is not None and "(T + 1, 44) raw GR-1 vectors, got shape (9, 3)" in row.error


def test_row_frames_are_the_rows_ground_truth_at_its_rate(gr1_root: Path) -> None:
    src = frames_from_lerobot(gr1_root, fps=10, actions="gr1", horizon=12, stride=12, episodes=[1])
    row = list(src)[1]  # episode 1 starts 1.5 s into the shared video file; the row at frame 26
    frames = src.row_frames(row.metadata, 13)
    assert len(frames) == 13 and frames[0].shape == (64, 64, 3)
    for i, frame in enumerate(frames):
        np.testing.assert_allclose(frame.reshape(-1, 3).mean(0), lerobot_color(1, 26 + 2 * i), atol=8)
    with pytest.raises(ValueError, match=r"episode 1 has 53 frames; 20 frames from frame 26 .* end at frame 64"):
        src.row_frames(row.metadata, 20)
    # Episode 0 shares the video file with episode 1: its frames must not run into it.
    first = next(iter(frames_from_lerobot(gr1_root, fps=10, episodes=[0])))
    with pytest.raises(ValueError, match="episode 0 has 30 frames"):
        src_0 = frames_from_lerobot(gr1_root, fps=10, episodes=[0])
        src_0.row_frames(first.metadata, 16)
    assert len(frames_from_lerobot(gr1_root, fps=10, episodes=[0]).row_frames(first.metadata, 15)) == 15
