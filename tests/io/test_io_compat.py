"""predict_many as code written for dream-engine 0.5.0 expects it (issue 11): record metadata
layout, Parquet columns and types, retries by the client's RetryPolicy, and resume that
only skips rows finished with the same spec and sampling parameters."""

from __future__ import annotations

import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from io_support import (
    ListSource,
    MemorySink,
    TinyEngine,
    actions_array,
    npy_bytes,
    png_bytes,
    write_episode_dir,
)

import dream
from dream._retry import RetryPolicy
from dream.bulk.threads import run_predict_many
from dream.errors import ModelNotFoundError, ServerError
from dream.io import RolloutSink, SourceRow, frames_from_dir


def run(src, sink, engine, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("spec", "tiny")
    kwargs.setdefault("sleep", lambda s: None)
    return run_predict_many(src, sink, predict=engine, **kwargs)


class MetadataSource(ListSource):
    """Rows whose metadata is what the docs' data-augmentation example puts there, plus
    two keys that collide with the SDK's (`status`, `spec`)."""

    def __iter__(self):
        for i, row in enumerate(super().__iter__()):
            meta = {"seed": i, "source_episode": f"ep_{i:03d}", "status": "raw", "spec": "mine"}
            yield SourceRow(row.row_id, row.frame_bytes, row.actions_bytes, meta)


def _rows(n: int) -> list[tuple[str, bytes, bytes]]:
    return [(f"r{i}", png_bytes((i, 100, 200)), npy_bytes(actions_array(8, offset=i))) for i in range(n)]


def test_record_metadata_has_the_source_keys_at_the_top_level(tmp_path: Path) -> None:
    sink = MemorySink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(MetadataSource(_rows(3)), sink, TinyEngine(), concurrency=1)
    assert result.ok == 3
    md = sink.records["r1"].metadata
    # 0.5.0 (sdk-surface §16): the source row's keys, overlaid with the SDK's five.
    assert (md["seed"], md["source_episode"]) == (1, "ep_001")
    assert md["status"] == 200 and isinstance(md["status"], int) and md["spec"] == "tiny"
    assert (md["_source_status"], md["_source_spec"]) == ("raw", "mine")
    assert isinstance(md["request_id"], str) and isinstance(md["engine_wall_ms"], float)
    assert isinstance(md["estimated_charge_usd"], float) and "source_metadata" not in md
    assert md["sampling_seed"] == 0 and md["attempts"] == 1
    collisions = [w for w in caught if "collide" in str(w.message)]
    assert len(collisions) == 1 and issubclass(collisions[0].category, UserWarning)  # once per run
    assert "'spec'" in str(collisions[0].message) and "'status'" in str(collisions[0].message)
    assert collisions[0].filename == __file__  # points at the caller's line, not into dream


def test_parquet_has_a_column_per_source_key_with_0_5_0_types(tmp_path: Path) -> None:
    rows = [*_rows(3), ("bad", b"not an image", npy_bytes(actions_array(8)))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run(MetadataSource(rows), RolloutSink.dir(tmp_path), TinyEngine(), concurrency=1)
    assert (result.ok, result.failed) == (3, 1)
    table = pq.read_table(tmp_path / "metadata.parquet")
    types = {f.name: str(f.type) for f in table.schema}
    for name, kind in {
        "seed": "int64", "source_episode": "string", "_source_status": "string", "_source_spec": "string",
        "request_id": "string", "engine_wall_ms": "double", "estimated_charge_usd": "double",
        "status": "int64", "spec": "string", "row_id": "string", "file_name": "string",
    }.items():
        assert types[name] == kind, name
    # 0.5.0's column order: source keys first, then its own, row_id and file_name.
    names = table.column_names
    assert names.index("source_episode") < names.index("request_id") < names.index("status") < names.index("row_id")
    # Users can filter on their own keys.
    assert table.filter(pa.compute.equal(table["seed"], 2)).column("row_id").to_pylist() == ["r2"]
    # A failed row: the error's HTTP status, no file, the message.
    bad = {r["row_id"]: r for r in table.to_pylist()}["bad"]
    assert (bad["status"], bad["file_name"]) == (422, "") and "image" in bad["error"]


def test_rows_are_retried_by_the_clients_retry_policy(tmp_path: Path) -> None:
    """503, 503, 503, 200 succeeds with max_attempts=5 (it failed with the fixed retries);
    a 500 is not retried, as in 0.5.0."""
    write_episode_dir(tmp_path / "eps", 2)
    src = frames_from_dir(tmp_path / "eps")
    plan = {
        "ep_000": [ServerError("busy", status_code=503)] * 3,
        "ep_001": [ServerError("boom", status_code=500)],
    }
    engine = TinyEngine(source=src, fail_plan=plan)
    result = run(src, RolloutSink.dir(tmp_path / "out"), engine, retry_policy=RetryPolicy(max_attempts=5))
    assert result.ok == 1 and engine.calls["ep_000"] == 4
    assert [f.row_id for f in result.failures] == ["ep_001"] and engine.calls["ep_001"] == 1
    assert result.failures[0].attempts == 1
    rows = {r["row_id"]: r for r in pq.read_table(tmp_path / "out" / "metadata.parquet").to_pylist()}
    assert rows["ep_000"]["attempts"] == 4 and rows["ep_001"]["status"] == 500
    # `retries=` still overrides the number of attempts.
    engine = TinyEngine(source=src, fail_plan={"ep_000": [ServerError("busy", status_code=503)] * 3})
    result = run(src, RolloutSink.dir(tmp_path / "out2"), engine, retry_policy=RetryPolicy(max_attempts=5), retries=1)
    assert result.failed == 1 and engine.calls["ep_000"] == 2


def test_resume_skips_only_rows_made_with_the_same_spec_and_sampling(tmp_path: Path) -> None:
    write_episode_dir(tmp_path / "eps", 4)
    src = frames_from_dir(tmp_path / "eps")
    out = tmp_path / "out"
    assert run(src, RolloutSink.dir(out), TinyEngine(source=src), seed=0).ok == 4
    again = run(src, RolloutSink.dir(out), TinyEngine(source=src), seed=0)
    assert (again.ok, again.skipped, again.redone) == (0, 4, 0)
    other_seed = run(src, RolloutSink.dir(out), TinyEngine(source=src), seed=1)
    assert (other_seed.ok, other_seed.skipped, other_seed.redone) == (4, 0, 4)
    assert "sampling_seed 0 → 1 (4 rows)" in other_seed.redone_why
    other_spec = run(src, RolloutSink.dir(out), TinyEngine(source=src), seed=1, spec="tiny-2", num_steps=3)
    assert (other_spec.ok, other_spec.redone) == (4, 4) and "spec 'tiny' → 'tiny-2'" in other_spec.redone_why
    assert "num_steps None → 3" in other_spec.redone_why
    rows = pq.read_table(out / "metadata.parquet").to_pylist()
    assert len(rows) == 4 and {(r["spec"], r["sampling_seed"], r["num_steps"]) for r in rows} == {("tiny-2", 1, 3)}


def test_a_folder_written_by_0_5_0_counts_as_finished(tmp_path: Path) -> None:
    write_episode_dir(tmp_path / "eps", 3)
    src = frames_from_dir(tmp_path / "eps")
    out = tmp_path / "out"
    (out / "videos").mkdir(parents=True)
    rows = []
    for row_id in ("ep_000", "ep_001"):
        (out / "videos" / f"{row_id}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
        rows.append({"source_path": str(tmp_path / "eps"), "request_id": "req_x", "engine_wall_ms": 1.0,
                     "estimated_charge_usd": 0.001, "status": 200, "spec": "tiny", "row_id": row_id,
                     "file_name": f"videos/{row_id}.mp4"})
    pq.write_table(pa.Table.from_pylist(rows), out / "metadata.parquet")  # as 0.5.0 writes it
    engine = TinyEngine(source=src)
    result = run(src, RolloutSink.dir(out), engine)
    assert (result.ok, result.skipped, result.redone) == (1, 2, 0) and list(engine.calls) == ["ep_002"]


def test_an_unknown_spec_fails_before_any_row(tmp_path: Path) -> None:
    write_episode_dir(tmp_path / "eps", 2)
    client = dream.Client()
    with pytest.raises(ModelNotFoundError, match=r"'no-such-spec'.*pusht-96"):
        client.predict_many(frames_from_dir(tmp_path / "eps"), RolloutSink.dir(tmp_path / "out"), spec="no-such-spec")
    assert not (tmp_path / "out" / "metadata.parquet").exists()
    with pytest.raises(ModelNotFoundError, match="no-such-spec"):
        client.estimate_cost(frames_from_dir(tmp_path / "eps"), spec="no-such-spec")
