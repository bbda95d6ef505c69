"""Sources against real backends: local files, Parquet via `datasets`, S3 via moto, LeRobot trees."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from io_support import (
    LR_ACTION_DIM,
    LR_CAMERA,
    lerobot_action,
    lerobot_color,
    make_lerobot_v3,
    make_lerobot_v21,
    npy_bytes,
    png_bytes,
    write_episode_dir,
)
from PIL import Image

from dream.io import frames_from_dir, frames_from_hf, frames_from_s3
from dream.io.sources.lerobot import frames_from_lerobot


def _png_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


# -- dir ----------------------------------------------------------------------------------


def test_dir_pairs_by_stem_sorted_and_reads_lazily(tmp_path: Path) -> None:
    ids = write_episode_dir(tmp_path, 3)
    (tmp_path / "lonely.npy").write_bytes(npy_bytes(np.zeros((4, 2), np.float32)))  # ignored
    src = frames_from_dir(tmp_path)
    assert src.rows_hint == len(src) == 3
    rows = list(src)
    assert [r.row_id for r in rows] == ids
    assert rows[0].frame_bytes == (tmp_path / "ep_000.png").read_bytes()
    assert rows[0].metadata["source_path"] == str(tmp_path)
    # every pass is fresh and sees current file contents
    (tmp_path / "ep_000.png").write_bytes(png_bytes((1, 2, 3)))
    assert next(iter(src)).frame_bytes == png_bytes((1, 2, 3))


def test_dir_orphan_frame_becomes_an_error_row(tmp_path: Path) -> None:
    write_episode_dir(tmp_path, 2)
    (tmp_path / "ep_001.npy").unlink()
    src = frames_from_dir(tmp_path)
    assert src.orphans == ["ep_001.png"] and src.rows_hint == 2
    bad = [r for r in src if r.error]
    assert [r.row_id for r in bad] == ["ep_001"]
    assert "ep_001.png" in bad[0].error and "ep_001.npy" in bad[0].error


def test_dir_custom_globs_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"jpeg")
    (tmp_path / "a.actions").write_bytes(b"npy")
    src = frames_from_dir(tmp_path, frame_glob="*.jpg", actions_glob="*.actions")
    assert [(r.row_id, r.frame_bytes) for r in src] == [("a", b"jpeg")]
    with pytest.raises(ValueError, match="not a directory"):
        frames_from_dir(tmp_path / "nope")


# -- hf (real `datasets` on local Parquet) ---------------------------------------------------


@pytest.fixture
def hf_parquet(tmp_path: Path) -> Path:
    """A local dataset folder with one Parquet shard holding every accepted frame form."""
    datasets = pytest.importorskip("datasets")
    frame_files = []
    for i in range(4):
        path = tmp_path / f"frame_{i}.png"
        path.write_bytes(png_bytes((i * 10, 0, 0)))
        frame_files.append(str(path))
    jpeg = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(jpeg, format="JPEG")
    features = datasets.Features(
        {
            "episode": datasets.Value("string"),
            "pil": datasets.Image(),
            "struct": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "array": datasets.Array3D(shape=(16, 16, 3), dtype="uint8"),
            "path": datasets.Value("string"),
            "actions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
            "score": datasets.Value("float32"),
        }
    )
    ds = datasets.Dataset.from_dict(
        {
            "episode": [f"e{i}" for i in range(4)],
            "pil": [Image.fromarray(np.full((16, 16, 3), 30 * i, np.uint8)) for i in range(4)],
            "struct": [
                {"bytes": png_bytes((1, 1, 1)), "path": None},
                {"bytes": jpeg.getvalue(), "path": None},
                {"bytes": None, "path": frame_files[2]},
                {"bytes": png_bytes((4, 4, 4)), "path": None},
            ],
            "array": [np.full((16, 16, 3), 7 * i, np.uint8) for i in range(4)],
            "path": frame_files,
            "actions": [np.full((8, 2), i, np.float32).tolist() for i in range(4)],
            "score": [0.5, 1.5, 2.5, 3.5],
        },
        features=features,
    )
    folder = tmp_path / "dataset"
    (folder / "data").mkdir(parents=True)
    ds.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


@pytest.mark.parametrize("frame_field", ["pil", "struct", "array", "path"])
def test_hf_local_folder_every_frame_form(hf_parquet: Path, frame_field: str) -> None:
    src = frames_from_hf(
        str(hf_parquet), frame_field=frame_field, actions_field="actions", id_field="episode"
    )
    assert src.rows_hint == 4
    rows = list(src)
    assert [r.row_id for r in rows] == ["e0", "e1", "e2", "e3"]
    for i, row in enumerate(rows):
        assert row.error is None, row.error
        assert row.frame_bytes.startswith(b"\x89PNG")
        assert _png_rgb(row.frame_bytes).shape == (16, 16, 3)
        actions = np.load(io.BytesIO(row.actions_bytes), allow_pickle=False)
        assert actions.dtype == np.float32 and actions.shape == (8, 2) and actions[0, 0] == i
        assert row.metadata["score"] == pytest.approx(0.5 + i)
        assert frame_field not in row.metadata and "actions" not in row.metadata
    if frame_field == "array":
        assert _png_rgb(rows[3].frame_bytes)[0, 0, 0] == 21
    if frame_field == "struct":
        assert rows[0].frame_bytes == png_bytes((1, 1, 1))  # PNG bytes pass through untouched
        assert _png_rgb(rows[1].frame_bytes)[0, 0, 0] in range(190, 211)  # JPEG re-encoded as PNG


def test_hf_parquet_files_default_ids_and_bad_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {
                "frame": [
                    {"bytes": png_bytes(), "path": None},
                    {"bytes": None, "path": None},
                    {"bytes": png_bytes(), "path": None},
                ],
                "actions": [[[0.0, 0.0]] * 4, [[0.0, 0.0]] * 4, [[1.0], [1.0, 2.0]]],
            }
        ),
        tmp_path / "part-0.parquet",
    )
    src = frames_from_hf(str(tmp_path / "*.parquet"), frame_field="frame", actions_field="actions")
    assert src.rows_hint == 3
    rows = list(src)
    assert [r.row_id for r in rows] == ["row_00000000", "row_00000001", "row_00000002"]
    assert rows[0].error is None
    assert "neither 'bytes' nor 'path'" in rows[1].error
    assert "actions" in rows[2].error  # ragged -> not a 2-D float32 array


def test_hf_hub_rows_hint_from_dataset_info(hub) -> None:
    hub.create(
        "org/with-card", card_data={"dataset_info": {"splits": [{"name": "train", "num_examples": 123}]}}
    )
    hub.create("org/dict-card", card_data={"dataset_info": {"splits": {"train": {"num_examples": 9}}}})
    hub.create("org/no-card")
    kwargs = {"frame_field": "f", "actions_field": "a", "endpoint": hub.endpoint}
    assert frames_from_hf("org/with-card", **kwargs).rows_hint == 123
    assert frames_from_hf("org/dict-card", **kwargs).rows_hint == 9
    assert frames_from_hf("org/no-card", **kwargs).rows_hint is None
    assert frames_from_hf("org/missing", **kwargs).rows_hint is None


# -- s3 (boto3 against moto's server) -------------------------------------------------------


def test_s3_lists_past_one_page_pairs_and_reports_orphans(s3_bucket, s3_kwargs) -> None:
    bucket, client = s3_bucket
    frame, actions = png_bytes(), npy_bytes(np.zeros((4, 2), np.float32))
    n = 560  # 1,120 objects + extras: ListObjectsV2 pages hold 1,000 keys
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]),
                [
                    (f"eps/ep_{i:04d}{ext}", body)
                    for i in range(n)
                    for ext, body in ((".png", frame), (".npy", actions))
                ],
            )
        )
    client.put_object(Bucket=bucket, Key="eps/orphan.png", Body=frame)
    client.put_object(Bucket=bucket, Key="eps/readme.txt", Body=b"hi")
    client.put_object(Bucket=bucket, Key="other/ep_9999.png", Body=frame)  # outside the prefix
    src = frames_from_s3(f"s3://{bucket}/eps/", boto3_kwargs=s3_kwargs)
    assert src.rows_hint == len(src) == n + 1
    assert src.orphans == ["orphan.png"]
    # Fetch a sample only (every GET costs; the listing is what is under test): the rows
    # named in skip_ids come back without their objects.
    fetched = {"ep_0000", "ep_0559", "orphan"}
    all_ids = sorted([f"ep_{i:04d}" for i in range(n)] + ["orphan"])
    rows = list(src._iter_rows(set(all_ids) - fetched))
    assert [r.row_id for r in rows] == all_ids
    good = [r for r in rows if r.row_id in fetched and r.error is None]
    assert len(good) == 2 and good[0].frame_bytes == frame and good[1].actions_bytes == actions
    assert next(iter(src)).frame_bytes == frame  # a plain pass fetches
    assert good[0].metadata == {"s3_uri": f"s3://{bucket}/eps/ep_0000.png"}
    orphan = next(r for r in rows if r.row_id == "orphan")
    assert "eps/orphan.png" in orphan.error and "eps/orphan.npy" in orphan.error


def test_s3_id_pattern_nested_keys_and_bad_uri(s3_bucket, s3_kwargs) -> None:
    bucket, client = s3_bucket
    for sub in ("a", "b"):
        client.put_object(Bucket=bucket, Key=f"root/{sub}/x_{sub}.png", Body=png_bytes())
        client.put_object(Bucket=bucket, Key=f"root/{sub}/x_{sub}.npy", Body=b"npy")
    src = frames_from_s3(f"s3://{bucket}/root", boto3_kwargs=s3_kwargs)
    assert [r.row_id for r in src] == ["a/x_a", "b/x_b"]  # unsafe ids: predict_many rejects them
    with pytest.warns(UserWarning, match="do not match id_pattern"):
        named = frames_from_s3(f"s3://{bucket}/root", id_pattern=r"/(x_a)\.png$", boto3_kwargs=s3_kwargs)
    assert [r.row_id for r in named] == ["x_a"] and named.rows_hint == 1
    assert [r.error is not None for r in named] == [True]  # root/x_a.npy is not there
    with pytest.raises(ValueError, match="s3://"):
        frames_from_s3("https://bucket/x", boto3_kwargs=s3_kwargs)
    with pytest.raises(ValueError, match="actions_glob"):
        frames_from_s3(f"s3://{bucket}/root", actions_glob="actions_*", boto3_kwargs=s3_kwargs)


# -- LeRobot ------------------------------------------------------------------------------


def _assert_start_frame(row, episode: int, frame: int) -> None:
    rgb = _png_rgb(row.frame_bytes).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(rgb, lerobot_color(episode, frame), atol=8)


@pytest.mark.parametrize("codec", ["libx264", "libsvtav1"])
def test_lerobot_v3_episodes_share_files(tmp_path: Path, codec: str) -> None:
    import av

    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"PyAV here cannot encode {codec}")
    lengths = [6, 9, 7, 8, 5]
    root = make_lerobot_v3(tmp_path / "ds", lengths, episodes_per_file=3, codec=codec)
    src = frames_from_lerobot(root)
    assert src.version == "v3.0" and src.camera == LR_CAMERA
    assert src.rows_hint == 5
    rows = list(src)
    assert [r.row_id for r in rows] == [f"episode_{e:06d}" for e in range(5)]
    for e, row in enumerate(rows):
        assert row.error is None, row.error
        _assert_start_frame(row, e, 0)
        actions = np.load(io.BytesIO(row.actions_bytes), allow_pickle=False)
        assert actions.shape == (lengths[e], LR_ACTION_DIM)
        np.testing.assert_allclose(actions[-1], lerobot_action(e, lengths[e] - 1), rtol=1e-6)
        assert row.metadata["episode_index"] == e and row.metadata["task"] == "push the block"


def test_lerobot_v3_windows_pad_and_chunk(tmp_path: Path) -> None:
    lengths = [10, 12, 7]
    root = make_lerobot_v3(tmp_path / "ds", lengths, episodes_per_file=2)
    src = frames_from_lerobot(root, horizon=4, stride=3, action_dim=5)
    expected = [(e, s) for e, n in enumerate(lengths) for s in range(0, n - 4 + 1, 3)]
    assert src.rows_hint == len(expected)
    rows = list(src)
    assert [r.row_id for r in rows] == [f"episode_{e:06d}_from_{s:06d}" for e, s in expected]
    for (e, s), row in zip(expected, rows, strict=True):
        assert row.error is None, row.error
        _assert_start_frame(row, e, s)
        actions = np.load(io.BytesIO(row.actions_bytes), allow_pickle=False)
        assert actions.shape == (4, 5)
        np.testing.assert_allclose(actions[:, :3], [lerobot_action(e, f) for f in range(s, s + 4)], rtol=1e-6)
        assert not actions[:, 3:].any()  # zero padding up to action_dim
        assert row.metadata["start_frame_index"] == s
    trimmed = list(frames_from_lerobot(root, chunk_size=4, action_dim=2, episodes=[1]))
    actions = np.load(io.BytesIO(trimmed[0].actions_bytes), allow_pickle=False)
    assert actions.shape == (12, 2)  # 12 actions, already a multiple of 4; trimmed to 2 dims
    short = list(frames_from_lerobot(root, horizon=8))
    assert [r.error is None for r in short] == [True, True, False]  # episode 2 has only 7 actions
    assert "episode 2 has 7 action(s)" in short[2].error


def test_lerobot_v21(tmp_path: Path) -> None:
    lengths = [5, 8, 6]
    root = make_lerobot_v21(tmp_path / "ds", lengths)
    src = frames_from_lerobot(root, horizon=4, stride=2)
    assert src.version == "v2.1"
    expected = [(e, s) for e, n in enumerate(lengths) for s in range(0, n - 4 + 1, 2)]
    assert src.rows_hint == len(expected)
    for (e, s), row in zip(expected, list(src), strict=True):
        assert row.error is None, row.error
        _assert_start_frame(row, e, s)
        np.testing.assert_allclose(np.load(io.BytesIO(row.actions_bytes))[0], lerobot_action(e, s), rtol=1e-6)
    (root / "videos" / "chunk-000" / LR_CAMERA / "episode_000001.mp4").unlink()
    rows = list(frames_from_lerobot(root))
    assert [r.error is None for r in rows] == [True, False, True]
    assert "start frame" in rows[1].error


def test_lerobot_skipped_rows_are_not_decoded(tmp_path: Path) -> None:
    root = make_lerobot_v21(tmp_path / "ds", [4, 4])
    (root / "videos" / "chunk-000" / LR_CAMERA / "episode_000000.mp4").unlink()
    rows = list(frames_from_lerobot(root)._iter_rows({"episode_000000"}))
    assert rows[0].error is None and rows[0].frame_bytes == b""  # never opened
    assert rows[1].error is None and rows[1].frame_bytes


def test_lerobot_from_the_hub(tmp_path: Path, hub) -> None:
    root = make_lerobot_v3(tmp_path / "ds", [5, 6, 4], episodes_per_file=2)
    hub.put_folder("lerobot-test/tiny", root)
    src = frames_from_lerobot("lerobot-test/tiny", endpoint=hub.endpoint, cache_dir=str(tmp_path / "cache"))
    rows = list(src)
    assert src.rows_hint == 3 and [r.error for r in rows] == [None, None, None]
    _assert_start_frame(rows[2], 2, 0)


def test_lerobot_bad_arguments(tmp_path: Path) -> None:
    root = make_lerobot_v21(tmp_path / "ds", [4])
    with pytest.raises(ValueError, match="needs horizon"):
        frames_from_lerobot(root, stride=2)
    with pytest.raises(ValueError, match="camera"):
        frames_from_lerobot(root, camera="observation.images.wrist")
    with pytest.raises(ValueError, match=r"no episode\(s\) \[7\]"):
        frames_from_lerobot(root, episodes=[7])
    with pytest.raises(ValueError, match=r"no folder .* not a Hub repo id"):
        frames_from_lerobot(str(tmp_path / "missing" / "x" / "y"))


def test_hf_missing_id_column_is_a_row_error(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table(
            {"id": ["x", None], "f": [{"bytes": png_bytes(), "path": None}] * 2, "a": [[[0.0, 0.0]]] * 2}
        ),
        tmp_path / "d.parquet",
    )
    rows = list(
        frames_from_hf(str(tmp_path / "d.parquet"), frame_field="f", actions_field="a", id_field="id")
    )
    assert [r.row_id for r in rows] == ["x", "row_00000001"]
    assert rows[0].error is None and "id column 'id'" in rows[1].error


# -- frames_from_hf offline ----------------------------------------------------------------


def _closed_port_endpoint() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens: connections are refused at once


def test_hf_unreachable_hub_fails_at_once_with_a_clear_error() -> None:
    import time

    src = frames_from_hf("org/rollouts", frame_field="f", actions_field="a", endpoint=_closed_port_endpoint())
    assert src.rows_hint is None and "did not answer" in src.rows_hint_error
    started = time.monotonic()
    with pytest.raises(ConnectionError) as info:
        next(iter(src))
    # datasets' own retries wait ≈ 23 s (1 + 2 + 4 + 8 + 8) before they give up.
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "cannot reach the Hugging Face Hub" in message and "'org/rollouts'" in message
    assert "HF_HUB_OFFLINE=1" in message and "\n" not in message


def test_hf_offline_without_a_cached_copy_fails_at_once(
    hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    before = len(hub.requests)
    with pytest.raises(ConnectionError, match=r"HF_HUB_OFFLINE is set and 'org/absent' is not in the local"):
        frames_from_hf("org/absent", frame_field="f", actions_field="a", endpoint=hub.endpoint)
    assert len(hub.requests) == before  # offline means no request at all


def test_hf_offline_reads_the_cached_copy(hf_parquet: Path, hub, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    import huggingface_hub
    import huggingface_hub.constants

    hub.put_folder("org/cached", hf_parquet)
    cache = tmp_path / "hub-cache"
    huggingface_hub.snapshot_download("org/cached", repo_type="dataset", endpoint=hub.endpoint,
                                      cache_dir=str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    before = len(hub.requests)
    src = frames_from_hf("org/cached", frame_field="pil", actions_field="actions", id_field="episode",
                         endpoint=hub.endpoint)
    assert src.rows_hint == 4
    assert [r.row_id for r in src] == ["e0", "e1", "e2", "e3"]
    assert len(hub.requests) == before


def test_dream_estimate_offline_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    res = subprocess.run(
        [sys.executable, "-m", "dream.cli", "estimate", "hf://datasets/org/absent",
         "--source-opt", "frame_field=f", "--source-opt", "actions_field=a"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 1
    assert res.stderr.strip().startswith("error: frames_from_hf('org/absent'): HF_HUB_OFFLINE is set")
    assert len(res.stderr.strip().splitlines()) == 1
