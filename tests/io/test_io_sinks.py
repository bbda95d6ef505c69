"""Sinks: layouts, metadata schema, atomicity, crash recovery, resume state, thread safety."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from io_support import HubStandIn

from dream.bulk.records import BASE_COLUMNS
from dream.io import RolloutRecord, RolloutSink

MP4 = b"\x00\x00\x00\x18ftypmp42" + b"x" * 64


def ok_record(row_id: str, **extra) -> RolloutRecord:
    metadata = {
        "episode": row_id,
        "n": 1,
        "request_id": f"req-{row_id}",
        "engine_wall_ms": 12.5,
        "estimated_charge_usd": 0.009,
        "status": 200,
        "spec": "tiny",
        "error": None,
        "attempts": 1,
        "frames": 9,
        "sampling_seed": 3,
        "num_steps": 5,
        "guidance": 1.5,
        **extra,
    }
    return RolloutRecord(row_id, MP4 + row_id.encode(), metadata)


def failed_record(row_id: str, error: str = "boom") -> RolloutRecord:
    return RolloutRecord(
        row_id, b"", {"status": 500, "error": error, "spec": "tiny", "sampling_seed": 3}
    )


# -- dir ----------------------------------------------------------------------------------


def test_dir_layout_schema_and_idempotent_finalize(tmp_path: Path) -> None:
    sink = RolloutSink.dir(tmp_path / "out")
    sink.write(ok_record("a"))
    sink.write_failure(failed_record("b"))
    sink.write(ok_record("c"))
    uri = sink.finalize()
    assert uri == str((tmp_path / "out").resolve())
    assert (tmp_path / "out" / "videos" / "a.mp4").read_bytes() == MP4 + b"a"
    assert not (tmp_path / "out" / "videos" / "b.mp4").exists()
    table = pq.read_table(tmp_path / "out" / "metadata.parquet")
    # 0.5.0's layout: the source keys as their own columns, then its columns, then ours.
    assert table.column_names == ["episode", "n", *BASE_COLUMNS]
    types = {f.name: str(f.type) for f in table.schema}
    assert types["n"] == "int64" and types["episode"] == "string" and types["status"] == "int64"
    assert types["sampling_seed"] == "int64" and types["guidance"] == "double"
    rows = {r["row_id"]: r for r in table.to_pylist()}
    assert rows["a"]["file_name"] == "videos/a.mp4" and rows["a"]["status"] == 200
    assert rows["a"]["request_id"] == "req-a" and rows["a"]["frames"] == 9 and rows["a"]["guidance"] == 1.5
    assert (rows["a"]["episode"], rows["a"]["n"]) == ("a", 1)
    assert rows["b"]["status"] == 500 and rows["b"]["error"] == "boom" and rows["b"]["file_name"] == ""
    assert rows["b"]["episode"] is None
    mtime = (tmp_path / "out" / "metadata.parquet").stat().st_mtime_ns
    assert sink.finalize() == uri
    assert (tmp_path / "out" / "metadata.parquet").stat().st_mtime_ns == mtime  # idempotent, not rewritten
    assert sink.finished_row_ids() == {"a", "c"}


def test_dir_zero_rows_still_writes_a_typed_table(tmp_path: Path) -> None:
    RolloutSink.dir(tmp_path).finalize()
    table = pq.read_table(tmp_path / "metadata.parquet")
    assert table.num_rows == 0 and table.column_names == list(BASE_COLUMNS)


def test_dir_rerun_appends_and_last_entry_wins(tmp_path: Path) -> None:
    first = RolloutSink.dir(tmp_path)
    first.write(ok_record("a"))
    first.write_failure(failed_record("b"))
    first.finalize()
    second = RolloutSink.dir(tmp_path)
    assert second.finished_row_ids() == {"a"}  # the failed row is retried
    second.write(ok_record("b"))
    second.finalize()
    rows = pq.read_table(tmp_path / "metadata.parquet").to_pylist()
    assert sorted((r["row_id"], r["status"]) for r in rows) == [("a", 200), ("b", 200)]


def test_dir_recovers_from_a_crash_mid_write(tmp_path: Path) -> None:
    sink = RolloutSink.dir(tmp_path)
    sink.write(ok_record("a"))
    sink.close()
    # What a kill -9 can leave: a half-written temp mp4 and a journal line cut short.
    (tmp_path / "videos" / ".b.dream-tmp-0123").write_bytes(b"partial")
    with open(tmp_path / "metadata.journal.jsonl", "ab") as fh:
        fh.write(b'{"row_id": "b", "status": "o')
    # An mp4 renamed into place whose journal line never landed is not "finished".
    (tmp_path / "videos" / "c.mp4").write_bytes(MP4)
    again = RolloutSink.dir(tmp_path)
    assert again.finished_row_ids() == {"a"}
    assert not list((tmp_path / "videos").glob("*dream-tmp*"))
    again.write(ok_record("b"))
    again.finalize()
    lines = (tmp_path / "metadata.journal.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["row_id"] for line in lines] == ["a", "b"]


def test_dir_rejects_unsafe_ids_but_journals_their_failures(tmp_path: Path) -> None:
    sink = RolloutSink.dir(tmp_path / "out")
    for bad in ["../x", "a/b", "", ".."]:
        with pytest.raises(ValueError, match="row id"):
            sink.write(ok_record(bad))
        sink.write_failure(failed_record(bad, "unsafe"))
    sink.finalize()
    assert not (tmp_path / "x.mp4").exists() and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "metadata.journal.jsonl",
        "metadata.parquet",
        "videos",
    ]
    assert pq.read_table(tmp_path / "out" / "metadata.parquet").num_rows == 4


def test_dir_write_is_thread_safe(tmp_path: Path) -> None:
    sink = RolloutSink.dir(tmp_path)
    barrier = threading.Barrier(8)

    def writer(k: int) -> None:
        barrier.wait()
        for i in range(25):
            sink.write(ok_record(f"t{k}_{i:02d}"))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.finalize()
    rows = pq.read_table(tmp_path / "metadata.parquet").column("row_id").to_pylist()
    assert len(rows) == len(set(rows)) == 200
    for line in (tmp_path / "metadata.journal.jsonl").read_bytes().splitlines():
        json.loads(line)  # no interleaved lines
    assert len(list((tmp_path / "videos").iterdir())) == 200


def test_dir_without_pyarrow_falls_back_to_jsonl(tmp_path: Path) -> None:
    code = f"""
import sys, warnings, json
sys.modules["pyarrow"] = None
from dream.io import RolloutSink, RolloutRecord
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    sink = RolloutSink.dir({str(tmp_path)!r})
print(json.dumps([str(w.message) for w in caught]))
sink.write(RolloutRecord("a", b"mp4", {{"status": 200, "seed": 4}}))
print(sink.finalize())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    warning_lines = json.loads(out.stdout.splitlines()[0])
    assert any("pip install 'dream-engine[io]'" in w and "metadata.jsonl" in w for w in warning_lines)
    entries = [json.loads(line) for line in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    assert entries == [{"status": 200, "seed": 4, "row_id": "a", "file_name": "videos/a.mp4"}]
    assert not (tmp_path / "metadata.parquet").exists()


# -- s3 -----------------------------------------------------------------------------------


def test_s3_layout_journal_and_resume(s3_bucket, s3_kwargs) -> None:
    bucket, client = s3_bucket
    sink = RolloutSink.s3(f"s3://{bucket}/runs/r1/", boto3_kwargs=s3_kwargs)
    sink.write(ok_record("a"))
    sink.write_failure(failed_record("b"))
    sink.write_failure(failed_record("../evil", "unsafe id"))
    assert sink.finalize() == f"s3://{bucket}/runs/r1/"
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert "runs/r1/videos/a.mp4" in keys and "runs/r1/metadata.parquet" in keys
    assert not any(k.endswith("b.mp4") for k in keys) and not any(k.startswith("runs/evil") for k in keys)
    body = client.get_object(Bucket=bucket, Key="runs/r1/videos/a.mp4")["Body"].read()
    assert body == MP4 + b"a"
    table = pq.read_table(
        io.BytesIO(client.get_object(Bucket=bucket, Key="runs/r1/metadata.parquet")["Body"].read())
    )
    assert table.column_names == ["episode", "n", *BASE_COLUMNS]
    assert sorted(
        zip(table.column("row_id").to_pylist(), table.column("status").to_pylist(), strict=True)
    ) == [
        ("../evil", 500),
        ("a", 200),
        ("b", 500),
    ]
    # A second process: finished ids from the listing, failed row retried and replaced.
    again = RolloutSink.s3(f"s3://{bucket}/runs/r1", boto3_kwargs=s3_kwargs)
    assert again.finished_row_ids() == {"a"}
    again.write(ok_record("b"))
    again.finalize()
    table = pq.read_table(
        io.BytesIO(client.get_object(Bucket=bucket, Key="runs/r1/metadata.parquet")["Body"].read())
    )
    statuses = dict(zip(table.column("row_id").to_pylist(), table.column("status").to_pylist(), strict=True))
    assert statuses == {"a": 200, "b": 200, "../evil": 500}
    assert table.num_rows == 3  # b listed once
    assert again.finalize() == f"s3://{bucket}/runs/r1/"


def test_s3_write_is_thread_safe(s3_bucket, s3_kwargs) -> None:
    bucket, client = s3_bucket
    sink = RolloutSink.s3(f"s3://{bucket}", boto3_kwargs=s3_kwargs)
    threads = [
        threading.Thread(target=lambda k=k: [sink.write(ok_record(f"t{k}_{i}")) for i in range(5)])
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sink.finalize() == f"s3://{bucket}/"
    table = pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key="metadata.parquet")["Body"].read()))
    assert sorted(table.column("row_id").to_pylist()) == sorted(
        f"t{k}_{i}" for k in range(4) for i in range(5)
    )


# -- hf (real huggingface_hub client against the local stand-in) ---------------------------


def _shards(hub: HubStandIn, repo: str) -> dict[str, list[dict]]:
    files = hub.repos[repo].files
    return {
        name: pq.read_table(io.BytesIO(data)).to_pylist()
        for name, data in sorted(files.items())
        if name.startswith("metadata/")
    }


def test_hf_one_commit_per_shard_card_once_and_rerun_appends(hub: HubStandIn, hub_repo: str) -> None:
    sink = RolloutSink.hf(
        hub_repo, shard_rows=2, endpoint=hub.endpoint, token="hf_test", pretty_name="Tiny rollouts"
    )
    for name in ["a", "b", "c"]:
        sink.write(ok_record(name))
    sink.write_failure(failed_record("d"))
    sink.write(ok_record("e"))
    repo = hub.repos[hub_repo]
    assert len(repo.commits) == 2  # two full shards so far; "e" is buffered
    assert sink.finalize() == f"hf://datasets/{hub_repo}"
    assert len(repo.commits) == 3
    first = repo.commits[0]["changes"]
    assert sorted(first) == ["+README.md", "+metadata/data-00000.parquet", "+videos/a.mp4", "+videos/b.mp4"]
    card = repo.files["README.md"].decode()
    assert card.startswith("---\n") and "path: metadata/*.parquet" in card
    from huggingface_hub import DatasetCard

    card_data = DatasetCard(card).data  # the Hub client's own parser reads it
    assert card_data.license == "cc-by-4.0" and "robotics" in card_data.task_categories
    assert card_data.pretty_name == "Tiny rollouts"
    assert card_data.configs[0]["data_files"][0]["path"] == "metadata/*.parquet"
    shards = _shards(hub, hub_repo)
    assert list(shards) == [f"metadata/data-{i:05d}.parquet" for i in range(3)]
    assert [r["row_id"] for r in shards["metadata/data-00001.parquet"]] == ["c", "d"]
    assert shards["metadata/data-00001.parquet"][1]["status"] == 500
    assert shards["metadata/data-00000.parquet"][0]["file_name"] == "videos/a.mp4"
    assert repo.files["videos/a.mp4"] == MP4 + b"a"
    assert "videos/d.mp4" not in repo.files
    assert sink.finalize() == f"hf://datasets/{hub_repo}" and len(repo.commits) == 3  # idempotent

    # Re-run in a new sink: finished ids come from the shards; the card is left alone; the
    # retried row leaves its old shard in the same commit as its new one.
    repo.files["README.md"] = b"---\nlicense: mit\n---\nhand-edited\n"
    again = RolloutSink.hf(hub_repo, shard_rows=10, endpoint=hub.endpoint)
    assert again.finished_row_ids() == {"a", "b", "c", "e"}
    again.write(ok_record("d"))
    again.write(ok_record("f"))
    again.finalize()
    assert repo.files["README.md"] == b"---\nlicense: mit\n---\nhand-edited\n"
    last = repo.commits[-1]["changes"]
    assert "+metadata/data-00003.parquet" in last and "+metadata/data-00001.parquet" in last
    shards = _shards(hub, hub_repo)
    all_rows = [(r["row_id"], r["status"]) for rows in shards.values() for r in rows]
    assert sorted(all_rows) == [(r, 200) for r in "abcdef"]
    assert hub.unknown == []


def test_hf_spills_videos_to_disk_and_rejects_bad_args(hub: HubStandIn, hub_repo: str) -> None:
    sink = RolloutSink.hf(hub_repo, shard_rows=100, endpoint=hub.endpoint)
    sink.write(ok_record("a"))
    spilled = list(sink._workdir.rglob("a.mp4"))  # buffered rows live on disk, not in RAM
    assert len(spilled) == 1 and spilled[0].read_bytes() == MP4 + b"a"
    sink.finalize()
    assert not spilled[0].exists()
    with pytest.raises(ValueError, match="org/name"):
        RolloutSink.hf("just-a-name", endpoint=hub.endpoint)
    with pytest.raises(ValueError, match="shard_rows"):
        RolloutSink.hf("org/x", shard_rows=0, endpoint=hub.endpoint)


def test_hf_write_is_thread_safe(hub: HubStandIn, hub_repo: str) -> None:
    sink = RolloutSink.hf(hub_repo, shard_rows=7, endpoint=hub.endpoint)
    threads = [
        threading.Thread(target=lambda k=k: [sink.write(ok_record(f"t{k}_{i}")) for i in range(6)])
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.finalize()
    rows = [r["row_id"] for shard in _shards(hub, hub_repo).values() for r in shard]
    assert sorted(rows) == sorted(f"t{k}_{i}" for k in range(4) for i in range(6))
    assert len(hub.repos[hub_repo].commits) == 4  # 24 rows / 7 per shard


def test_hf_card_is_a_dataset_card_whatever_the_names(hub: HubStandIn, hub_repo: str) -> None:
    from huggingface_hub import DatasetCard

    license_, name = "other: see LICENSE.md", 'Rollouts #2: "pushed"\nsecond line'
    sink = RolloutSink.hf(hub_repo, endpoint=hub.endpoint, license=license_, pretty_name=name)
    sink.write(ok_record("a"))
    sink.finalize()
    card = DatasetCard(hub.repos[hub_repo].files["README.md"].decode())
    assert card.data.license == license_ and card.data.pretty_name == name
    assert card.data.annotations_creators == ["machine-generated"]
    assert card.data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "metadata/*.parquet"}]}
    ]
    assert "videos/<row_id>.mp4" in card.text and "\nsecond line" not in card.text


def _record(row_id: str, **source) -> RolloutRecord:
    record = ok_record(row_id)
    metadata = {k: v for k, v in record.metadata.items() if k not in ("episode", "n")}
    return RolloutRecord(row_id, record.mp4_bytes, {**source, **metadata})


def test_hf_shards_share_one_schema(hub: HubStandIn, hub_repo: str, tmp_path: Path) -> None:
    import datasets
    import pyarrow as pa

    # Shard 0: episode int, note always null; shard 1: episode float, note str, a new key;
    # shard 2 (another sink, a later run): episode str, no note.
    sink = RolloutSink.hf(hub_repo, shard_rows=2, endpoint=hub.endpoint)
    sink.write(_record("a", episode=1, note=None))
    sink.write(_record("b", episode=2, note=None))
    sink.write(_record("c", episode=2.5, note="x", flag=True))
    sink.write_failure(failed_record("d"))
    sink.finalize()
    later = RolloutSink.hf(hub_repo, shard_rows=2, endpoint=hub.endpoint)
    later.write(_record("e", episode="ep-3"))
    later.finalize()

    files = hub.repos[hub_repo].files
    names = sorted(n for n in files if n.startswith("metadata/"))
    schemas = [pq.read_schema(io.BytesIO(files[n])) for n in names]
    assert len(names) == 3
    assert all(s.equals(schemas[0]) for s in schemas), [str(s) for s in schemas]
    assert schemas[0].names[:3] == ["episode", "note", "flag"]
    assert schemas[0].field("episode").type == pa.string() and schemas[0].field("flag").type == pa.bool_()
    # What a user does with the repo: load every shard as one dataset.
    for n in names:
        (tmp_path / n.replace("/", "_")).write_bytes(files[n])
    ds = datasets.load_dataset("parquet", data_files=sorted(str(p) for p in tmp_path.glob("*.parquet")),
                               split="train")
    rows = {r["row_id"]: r for r in ds}
    # Shard 1 widened episode to float (1 -> 1.0), shard 2 to text: each value as stored.
    assert [rows[k]["episode"] for k in "abce"] == ["1.0", "2.0", "2.5", "ep-3"]
    assert rows["c"]["note"] == "x" and rows["a"]["note"] is None and rows["c"]["flag"] is True
    assert rows["d"]["status"] == 500 and rows["d"]["episode"] is None
    # A shard in the same schema leaves the older ones alone.
    third = RolloutSink.hf(hub_repo, shard_rows=2, endpoint=hub.endpoint)
    third.write(_record("f", episode="ep-4", note="y"))
    third.finalize()
    assert sorted(hub.repos[hub_repo].commits[-1]["changes"]) == ["+metadata/data-00003.parquet", "+videos/f.mp4"]


S3_RUN = """
import sys, time

import dream
from dream.bulk.threads import run_predict_many
from dream.client.sync_client import row_predictor
from dream.io import RolloutSink, frames_from_dir

endpoint, uri, src_dir, log = sys.argv[1:5]
kwargs = {"endpoint_url": endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
          "region_name": "us-east-1"}
engine_predict = row_predictor(dream.Client()._transport, spec="pusht-96", seed=0, num_steps=None, guidance=None)


def predict(frame, actions, key):
    with open(log, "a") as fh:  # which rows reached the engine, by idempotency key
        fh.write(key + "\\n")
    time.sleep(0.25)  # slow enough for the kill to land mid-run
    return engine_predict(frame, actions, key)


result = run_predict_many(frames_from_dir(src_dir), RolloutSink.s3(uri, boto3_kwargs=kwargs),
                          predict=predict, spec="pusht-96", concurrency=1, progress=False)
print(result.ok, result.failed, result.skipped)
"""


def test_s3_run_killed_mid_run_resumes_without_redoing_rows(moto_endpoint, s3_bucket, tmp_path: Path) -> None:
    import signal
    import time

    import numpy as np

    from dream.bulk.rows import idempotency_key
    from dream.examples import pusht_episode
    from dream.inputs import encode_npy, encode_png

    bucket, client = s3_bucket
    src = tmp_path / "src"
    src.mkdir()
    keys = {}
    for i in range(12):
        ep = pusht_episode(i % 8)
        frame, actions = encode_png(ep.start_frame), encode_npy(ep.actions[:4] + np.float32(i))
        (src / f"r{i:02d}.png").write_bytes(frame)
        (src / f"r{i:02d}.npy").write_bytes(actions)
        keys[f"r{i:02d}"] = idempotency_key(spec="pusht-96", seed=0, num_steps=None, guidance=None,
                                            row_id=f"r{i:02d}", frame_bytes=frame, actions_bytes=actions)
    script = tmp_path / "run.py"
    script.write_text(S3_RUN)
    uri = f"s3://{bucket}/runs/killed"
    args = [sys.executable, str(script), moto_endpoint, uri, str(src)]

    def journalled() -> set[str]:
        listing = client.list_objects_v2(Bucket=bucket, Prefix="runs/killed/_journal/ok/")
        return {o["Key"].rsplit("/", 1)[1].removesuffix(".json") for o in listing.get("Contents", [])}

    first = subprocess.Popen([*args, str(tmp_path / "log1")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(journalled()) < 3 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    done = journalled()
    assert 3 <= len(done) < 12, "the first run was not killed mid-run"
    assert not client.list_objects_v2(Bucket=bucket, Prefix="runs/killed/metadata.parquet").get("Contents")

    second = subprocess.run([*args, str(tmp_path / "log2")], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.split() == [str(12 - len(done)), "0", str(len(done))]  # ok, failed, skipped
    redone = set((tmp_path / "log2").read_text().split())
    assert redone == {keys[r] for r in keys if r not in done}  # no journalled row reaches the engine again
    table = pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key="runs/killed/metadata.parquet")["Body"].read()))
    assert sorted(table.column("row_id").to_pylist()) == sorted(keys)  # every row once
    assert set(table.column("status").to_pylist()) == {200}
    videos = client.list_objects_v2(Bucket=bucket, Prefix="runs/killed/videos/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in videos) == sorted(f"{r}.mp4" for r in keys)
