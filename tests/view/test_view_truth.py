"""Side by side with ground truth: rows of frames_from_lerobot against their episode's real frames."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from tests.io.io_support import lerobot_color, make_lerobot_v3


def test_lerobot_rows_compare_with_their_real_frames(tmp_path: Path) -> None:
    from PIL import Image

    import dream
    from dream.engine.video import decode_mp4
    from dream.eval.metrics import psnr
    from dream.io import RolloutSink, frames_from_lerobot
    from dream.view import open_view

    dataset = make_lerobot_v3(tmp_path / "ds", [12, 10], episodes_per_file=2)  # episode 1 starts mid-file
    src = frames_from_lerobot(str(dataset), horizon=6, stride=3, action_dim=2, episodes=[1])
    out = tmp_path / "out"
    result = dream.Client().predict_many(src, RolloutSink.dir(out), spec="pusht-96", progress=False)
    assert result.ok == 2, result.failures  # windows from frames 0 and 3 of episode 1
    client = TestClient(open_view(str(out)))
    row_id = "episode_000001_from_000003"
    row = client.get("/api/row", params={"id": row_id}).json()
    assert row["reference"] == {"kind": "truth", "row_id": None, "label": "ground truth (episode 1)"}

    strip = np.asarray(Image.open(io.BytesIO(client.get("/api/reference/strip", params={"id": row_id}).content)))
    assert strip.shape == (96, 96 * 7, 3)
    for k in range(7):  # the episode's frames 3..9, fitted to the rollout's 96x96
        frame_mean = strip[:, 96 * k : 96 * (k + 1)].reshape(-1, 3).mean(axis=0)
        assert np.abs(frame_mean - np.array(lerobot_color(1, 3 + k))).max() < 4, k

    cmp = client.get("/api/compare", params={"id": row_id}).json()
    rollout = decode_mp4((out / "videos" / f"{row_id}.mp4").read_bytes())
    truth = np.stack([strip[:, 96 * k : 96 * (k + 1)] for k in range(7)])
    assert cmp["frames"] == 7 and cmp["reference"]["kind"] == "truth"
    assert cmp["psnr_db"] == pytest.approx([round(float(v), 3) for v in psnr(rollout, truth)], abs=2e-3)
    assert decode_mp4(client.get("/api/reference/video", params={"id": row_id}).content).shape == (7, 96, 96, 3)


def test_ground_truth_that_cannot_be_read_is_a_clear_404(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dream.engine.video import encode_mp4
    from dream.view import open_view

    out = tmp_path / "out"
    (out / "videos").mkdir(parents=True)
    (out / "videos" / "r.mp4").write_bytes(encode_mp4(np.zeros((3, 16, 16, 3), np.uint8), 10))
    meta = '{"dataset": "%s", "codebase_version": "v3.0", "episode_index": 0, "start_frame_index": 0, "camera": "c"}'
    pq.write_table(pa.table({"row_id": ["r"], "status": ["ok"], "file_name": ["videos/r.mp4"],
                             "source_metadata": [meta % (tmp_path / "gone")]}), out / "metadata.parquet")
    client = TestClient(open_view(str(out)))
    assert client.get("/api/row", params={"id": "r"}).json()["reference"]["kind"] == "truth"
    r = client.get("/api/compare", params={"id": "r"})
    assert r.status_code == 404 and "ground truth of row 'r' is unavailable" in r.json()["detail"]
