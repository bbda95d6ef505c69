"""The viewer over the S3 and Hub layouts, written by the real S3 / Hub sinks (moto, Hub stand-in;
fixtures shared with tests/io through tests/view/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("pyarrow")

from fastapi.testclient import TestClient

from dream.io import RolloutSink
from dream.io.types import RolloutRecord
from dream.view import open_view


def _copy_rows(bulk_output: Path, sink: RolloutSink) -> None:
    """Replay the dir output's rows (mp4 + metadata entry) into another sink."""
    import pyarrow.parquet as pq

    for entry in pq.read_table(bulk_output / "metadata.parquet").to_pylist():
        if entry["status"] == "ok":
            sink.write(RolloutRecord(entry["row_id"], (bulk_output / entry["file_name"]).read_bytes(), entry))
        else:
            sink.write_failure(RolloutRecord(entry["row_id"], b"", entry))
    sink.finalize()


def _check(client: TestClient, bulk_output: Path) -> None:
    page = client.get("/api/rows").json()
    assert page["counts"] == {"all": 5, "ok": 4, "failed": 1, "flagged": 0}
    assert client.get("/api/video", params={"id": "ep00"}).content == (bulk_output / "videos" / "ep00.mp4").read_bytes()
    assert client.get("/api/thumb", params={"id": "ep00"}).headers["content-type"] == "image/png"
    assert client.get("/api/compare", params={"id": "ep00_aug2"}).json()["reference"]["row_id"] == "ep00"


def test_view_over_an_s3_sink_output(bulk_output: Path, s3_bucket, s3_kwargs: dict) -> None:
    bucket, _ = s3_bucket
    uri = f"s3://{bucket}/runs/a"
    _copy_rows(bulk_output, RolloutSink.s3(uri, boto3_kwargs=s3_kwargs))
    _check(TestClient(open_view(uri, boto3_kwargs=s3_kwargs)), bulk_output)


def test_view_over_a_hub_sink_output(bulk_output: Path, hub, hub_repo: str) -> None:
    _copy_rows(bulk_output, RolloutSink.hf(hub_repo, shard_rows=3, endpoint=hub.endpoint, token="hf_test"))
    _check(TestClient(open_view(f"hf://datasets/{hub_repo}", endpoint=hub.endpoint, token="hf_test")), bulk_output)
