"""The viewer over the S3 and Hub layouts, written by the real S3 / Hub sinks (moto, Hub stand-in;
fixtures shared with tests/io through tests/view/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("pyarrow")

from fastapi.testclient import TestClient

from dream.bulk.records import is_ok
from dream.io import RolloutSink
from dream.io.types import RolloutRecord
from dream.view import open_view


def _copy_rows(bulk_output: Path, sink: RolloutSink) -> None:
    """Replay the dir output's rows (mp4 + metadata entry) into another sink."""
    import pyarrow.parquet as pq

    for entry in pq.read_table(bulk_output / "metadata.parquet").to_pylist():
        if is_ok(entry):
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


def test_qc_over_an_s3_output_writes_scores_beside_its_metadata(bulk_output: Path, s3_bucket, s3_kwargs: dict) -> None:
    from dream.view.qc import run_qc
    from dream.view.store import open_store

    bucket, client = s3_bucket
    uri = f"s3://{bucket}/runs/qc"
    _copy_rows(bulk_output, RolloutSink.s3(uri, boto3_kwargs=s3_kwargs))
    result = run_qc(open_store(uri, boto3_kwargs=s3_kwargs), parent_key="source_episode", progress=False)
    assert [s.row_id for s in result.flagged] == ["ep00_aug2"]
    assert result.scores_uri == f"{uri}/qc_scores.parquet"
    assert client.head_object(Bucket=bucket, Key="runs/qc/qc_scores.parquet")["ContentLength"] > 0
    view = TestClient(open_view(uri, boto3_kwargs=s3_kwargs))
    assert [r["row_id"] for r in view.get("/api/rows", params={"status": "flagged"}).json()["rows"]] == ["ep00_aug2"]


def test_a_file_name_outside_the_output_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "secret.mp4").write_bytes(b"not yours")
    pq.write_table(pa.table({"row_id": ["a", "b"], "status": ["ok", "ok"],
                             "file_name": ["../secret.mp4", str(tmp_path / "secret.mp4")]}), out / "metadata.parquet")
    client = TestClient(open_view(str(out)))
    for row_id in ("a", "b"):
        r = client.get("/api/video", params={"id": row_id})
        assert r.status_code == 422 and "not a relative path inside the output" in r.json()["detail"]
