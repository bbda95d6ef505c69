"""estimate_cost_for and rows_hint for every source."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from io_support import ListSource, make_lerobot_v3, make_lerobot_v21, npy_bytes, png_bytes, write_episode_dir

from dream.bulk.estimate import DEFAULT_FRAMES_PER_ROW, estimate_cost_for, npy_shape
from dream.io import IterableSource, SourceRow, frames_from_dir, frames_from_hf, frames_from_s3
from dream.io.sources.lerobot import frames_from_lerobot


def estimate(src, **kwargs):
    kwargs.setdefault("spec", "tiny")
    kwargs.setdefault("frames_per_row", None)
    kwargs.setdefault("price_per_frame_usd", 0.0005)
    kwargs.setdefault("rollout_wall_s", None)
    return estimate_cost_for(src, **kwargs)


def test_estimate_from_rows_hint_and_peeked_actions(tmp_path: Path) -> None:
    write_episode_dir(tmp_path, 10, t=48)
    est = estimate(frames_from_dir(tmp_path), rollout_wall_s=2.0)
    assert (est.rows, est.frames_per_row, est.total_frames) == (10, 49, 490)
    assert est.total_usd == pytest.approx(490 * 0.0005)
    assert est.spec == "tiny" and est.price_per_frame_usd == 0.0005
    assert est.est_engine_s == pytest.approx(20.0)
    scaled = estimate(frames_from_dir(tmp_path), rollout_wall_s=2.0, rollout_frames=98, frames_per_row=49)
    assert scaled.est_engine_s == pytest.approx(10.0)  # half the measured length, half the time


def test_estimate_without_hint_or_readable_actions() -> None:
    class Unknown(IterableSource):
        def __iter__(self):
            yield SourceRow("a", png_bytes(), b"not npy")

    est = estimate(Unknown(), spec=None, rollout_wall_s=1.0)
    assert (est.rows, est.total_frames, est.total_usd, est.est_engine_s) == (None, None, None, None)
    assert est.frames_per_row == DEFAULT_FRAMES_PER_ROW and est.spec == ""
    assert estimate(ListSource([]), frames_per_row=None).frames_per_row == DEFAULT_FRAMES_PER_ROW
    assert estimate(ListSource([]), frames_per_row=13).total_frames == 0


def test_peek_skips_rows_the_source_could_not_build(tmp_path: Path) -> None:
    write_episode_dir(tmp_path, 2, t=12)
    (tmp_path / "aaa.png").write_bytes(png_bytes())  # orphan, sorts first
    assert estimate(frames_from_dir(tmp_path)).frames_per_row == 13


def test_npy_shape_reads_only_the_header() -> None:
    data = npy_bytes(np.zeros((48, 384), np.float32))
    assert npy_shape(data[:200]) == (48, 384)
    assert npy_shape(b"garbage") is None and npy_shape(b"\x93NUMPY\x01\x00\x04\x00{no}") is None


def _raw_npy(header: str, payload: bytes = b"", version: int = 1) -> bytes:
    text = header.encode("latin1") + b"\n"
    size = len(text).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + text + payload


def _np_load_shape(data: bytes) -> tuple[int, ...] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.load(io.BytesIO(data), allow_pickle=False).shape
    except Exception:
        return None


@pytest.mark.parametrize(
    ("header", "payload", "version"),
    [
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", bytes(16), 1),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", bytes(16), 2),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 2L), }", bytes(16), 1),  # written by Python 2
        ("{'shape': (48, 2)}", b"", 1),  # no descr: not a .npy numpy reads
        ("{'descr': '<f4', 'fortran_order': False, 'shape': [48, 2]}", b"", 1),  # a list
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (48.5, 2)}", b"", 1),
        ("{'descr': 'no such dtype', 'fortran_order': False, 'shape': (48, 2)}", b"", 1),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-47, 2)}", b"", 1),  # T + 1 would be -46
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': '" + "y" * 20_000 + "'}", b"", 2),
    ],
)
def test_npy_shape_reads_headers_as_numpy_does(header: str, payload: bytes, version: int) -> None:
    data = _raw_npy(header, payload, version)
    assert npy_shape(data) == _np_load_shape(data)


def test_a_bad_header_never_makes_a_negative_estimate() -> None:
    bad = _raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-47, 2)}")
    assert estimate(ListSource([("a", png_bytes(), bad)])).frames_per_row == DEFAULT_FRAMES_PER_ROW


def test_rows_hint_for_every_source(tmp_path: Path, s3_bucket, s3_kwargs, hub) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_episode_dir(tmp_path / "dir", 3)
    assert frames_from_dir(tmp_path / "dir").rows_hint == 3

    bucket, client = s3_bucket
    for i in range(4):
        client.put_object(Bucket=bucket, Key=f"x/{i}.png", Body=b"p")
        client.put_object(Bucket=bucket, Key=f"x/{i}.npy", Body=b"n")
    assert frames_from_s3(f"s3://{bucket}/x", boto3_kwargs=s3_kwargs).rows_hint == 4

    for part in range(2):
        pq.write_table(
            pa.table({"f": ["x"] * (part + 2), "a": [[[0.0]]] * (part + 2)}), tmp_path / f"p{part}.parquet"
        )
    assert frames_from_hf(str(tmp_path / "p*.parquet"), frame_field="f", actions_field="a").rows_hint == 5
    assert frames_from_hf([str(tmp_path / "p0.parquet")], frame_field="f", actions_field="a").rows_hint == 2
    hub.create("org/hinted", card_data={"dataset_info": {"splits": [{"name": "test", "num_examples": 11}]}})
    hinted = frames_from_hf(
        "org/hinted", split="test", frame_field="f", actions_field="a", endpoint=hub.endpoint
    )
    assert hinted.rows_hint == 11 and len(hinted) == 11

    assert frames_from_lerobot(make_lerobot_v3(tmp_path / "v3", [4, 5, 6])).rows_hint == 3
    assert (
        frames_from_lerobot(make_lerobot_v21(tmp_path / "v21", [4, 5]), horizon=2, stride=1).rows_hint
        == 3 + 4
    )
