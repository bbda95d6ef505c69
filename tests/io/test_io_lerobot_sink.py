"""RolloutSink.lerobot: a LeRobot v3.0 dataset, checked from the files (pyarrow + PyAV).

Loading with lerobot's own classes is test_io_lerobot_official.py (its own virtualenv).
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from io_support import npy_bytes, png_bytes

from dream._bulk import RowOutcome, run_predict_many
from dream.engine.video import decode_mp4, encode_mp4
from dream.io import IterableSource, RolloutRecord, RolloutSink, SourceRow
from dream.io.sinks import _lerobot_stats as lstats
from dream.io.sinks.lerobot import LeRobotRolloutSink
from dream.io.uri import sink_from_uri


class RowsSource(IterableSource):
    def __init__(self, rows: list[SourceRow]) -> None:
        self.rows = rows
        self.rows_hint = len(rows)

    def __iter__(self):
        return iter(self.rows)


def rollout(seed: int, t: int, hw: tuple[int, int] = (24, 32)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (t + 1, *hw, 3), dtype=np.uint8)
    actions = rng.normal(size=(t, 2)).astype(np.float32)
    return frames, actions


def record(row_id: str, seed: int, t: int = 6, **meta) -> tuple[RolloutRecord, np.ndarray, np.ndarray]:
    frames, actions = rollout(seed, t)
    metadata = {"spec": "tiny", "sampling_seed": 0, **meta}
    return RolloutRecord(row_id, encode_mp4(frames, 10), metadata, actions_bytes=npy_bytes(actions)), frames, actions


def episodes_table(root: Path) -> list[dict]:
    rows = []
    for path in sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return sorted(rows, key=lambda r: r["episode_index"])


def video_frames(root: Path, episode: dict, camera: str = "observation.image") -> np.ndarray:
    """The episode's frames, decoded from its file by timestamp (as LeRobot seeks them)."""
    path = root / f"videos/{camera}/chunk-{episode[f'videos/{camera}/chunk_index']:03d}/file-{episode[f'videos/{camera}/file_index']:03d}.mp4"
    t0, t1 = episode[f"videos/{camera}/from_timestamp"], episode[f"videos/{camera}/to_timestamp"]
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            if t0 - 1e-4 <= t < t1 - 1e-4:
                out.append(frame.to_ndarray(format="rgb24"))
    return np.stack(out)


def assert_dataset_valid(root: Path) -> list[dict]:
    """Info, episodes, data rows and videos agree; returns the episodes table."""
    info = json.loads((root / "meta" / "info.json").read_text())
    eps = episodes_table(root)
    assert [e["episode_index"] for e in eps] == list(range(len(eps)))
    assert info["total_episodes"] == len(eps)
    assert info["total_frames"] == sum(e["length"] for e in eps)
    data = [r for p in sorted((root / "data").glob("chunk-*/file-*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [r["index"] for r in data] == list(range(len(data))) == list(range(info["total_frames"]))
    for e in eps:
        rows = data[e["dataset_from_index"]: e["dataset_to_index"]]
        assert {r["episode_index"] for r in rows} == {e["episode_index"]}
        assert [r["frame_index"] for r in rows] == list(range(e["length"]))
        assert len(video_frames(root, e)) == e["length"]
    ids = [e["dream/row_id"] for e in eps]
    assert len(ids) == len(set(ids)), "duplicate episodes"
    return eps


def test_layout_actions_frames_and_stats(tmp_path: Path) -> None:
    sink = RolloutSink.lerobot(tmp_path / "ds", repo_id="me/ds", episodes_per_file=2)
    made = {}
    for i in range(5):
        rec, frames, actions = record(f"r{i}", i, t=5 + i, task="push" if i % 2 else "pull", parent_row_id="p0")
        made[rec.row_id] = (frames, actions)
        sink.write(rec)
    assert sink.finalize() == str((tmp_path / "ds").resolve())
    assert sink.finalize() == str((tmp_path / "ds").resolve())  # idempotent
    root = tmp_path / "ds"
    eps = assert_dataset_valid(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    assert info["features"]["observation.image"]["shape"] == [24, 32, 3]
    assert info["features"]["action"] == {"dtype": "float32", "shape": [2], "names": None}
    assert len(list((root / "data").glob("chunk-000/file-*.parquet"))) == 3  # 2 + 2 + 1 episodes
    tasks = {r["task"]: r["task_index"] for r in pq.read_table(root / "meta" / "tasks.parquet").to_pylist()}
    assert set(tasks) == {"push", "pull"}
    data = [r for p in sorted((root / "data").glob("chunk-*/file-*.parquet")) for r in pq.read_table(p).to_pylist()]
    for e in eps:
        frames, actions = made[e["dream/row_id"]]
        rows = data[e["dataset_from_index"]: e["dataset_to_index"]]
        # Frame t with action t; the rollout's last frame has no action and is left out.
        assert e["length"] == len(actions) == len(frames) - 1
        assert np.array_equal(np.array([r["action"] for r in rows], np.float32), actions)  # bit for bit
        assert np.array_equal(video_frames(root, e), decode_mp4(encode_mp4(frames, 10))[:-1])  # stream copy
        assert [r["timestamp"] for r in rows] == [np.float32(i / 10) for i in range(e["length"])]
        assert {r["task_index"] for r in rows} == {tasks[e["tasks"][0]]}
        assert e["dream/parent_row_id"] == "p0" and e["dream/spec"] == "tiny" and e["dream/sampling_seed"] == 0
        assert json.loads(e["dream/source_metadata"])["task"] == e["tasks"][0]
    # stats.json: the dataset's actions pooled, as LeRobot aggregates per-episode stats.
    stats = json.loads((root / "meta" / "stats.json").read_text())
    all_actions = np.concatenate([a for _, a in made.values()])
    assert stats["action"]["count"] == [len(all_actions)]
    np.testing.assert_allclose(stats["action"]["mean"], all_actions.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["std"], all_actions.std(0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["min"], all_actions.min(0))
    assert np.array(stats["observation.image"]["mean"]).shape == (3, 1, 1)
    assert set(stats) == {"observation.image", "action", "timestamp", "frame_index", "episode_index", "index",
                          "task_index"}


def test_stats_quantiles_follow_the_histogram_rule() -> None:
    values = np.random.default_rng(0).normal(size=(10_000, 2))
    stats = lstats.vector_stats(values)
    for q, key in zip(lstats.QUANTILES, lstats.QUANTILE_KEYS, strict=True):
        np.testing.assert_allclose(stats[key], np.quantile(values, q, axis=0), atol=0.01)
    assert stats["count"].tolist() == [10_000]
    assert lstats.sampled_frame_indices(50) == list(range(50))
    assert len(lstats.sampled_frame_indices(1000)) == 177  # LeRobot's T^0.75 above 100 frames


def test_rows_finishing_out_of_order_get_dense_indices(tmp_path: Path) -> None:
    rows = []
    truth = {}
    for i in range(12):
        frames, actions = rollout(100 + i, 4 + i % 3)
        truth[f"r{i:02d}"] = (frames, actions)
        rows.append(SourceRow(f"r{i:02d}", png_bytes(), npy_bytes(actions), {"task": "t"}))

    def predict(frame_bytes: bytes, actions_bytes: bytes, key: str) -> RowOutcome:
        actions = np.load(io.BytesIO(actions_bytes))
        row_id = next(k for k, (_, a) in truth.items() if np.array_equal(a, actions))
        time.sleep(random.uniform(0, 0.05))  # rows finish out of order
        return RowOutcome(encode_mp4(truth[row_id][0], 10), "req", 1.0, 0.0, len(actions) + 1, 0, None)

    sink = RolloutSink.lerobot(tmp_path / "ds", repo_id="me/ds", episodes_per_file=5)
    result = run_predict_many(RowsSource(rows), sink, predict=predict, concurrency=4, progress=False)
    assert result.ok == 12
    eps = assert_dataset_valid(tmp_path / "ds")
    assert sorted(e["dream/row_id"] for e in eps) == sorted(truth)
    for e in eps:
        _, actions = truth[e["dream/row_id"]]
        got = [r for p in sorted((tmp_path / "ds" / "data").glob("*/*.parquet")) for r in pq.read_table(p).to_pylist()]
        assert np.array_equal(np.array([r["action"] for r in got[e["dataset_from_index"]: e["dataset_to_index"]]],
                                       np.float32), actions)


def test_rollouts_from_other_encoders_are_reencoded_at_40_db(tmp_path: Path) -> None:
    sink = RolloutSink.lerobot(tmp_path / "ds", repo_id="me/ds")
    made = []
    for i in range(3):
        _, actions = rollout(i, 6)
        yy, xx = np.mgrid[0:24, 0:32]
        frames = np.zeros((7, 24, 32, 3), np.uint8)  # a square moving over a gradient, like a scene
        for t in range(7):
            frames[t, ..., 0] = 40 + 4 * xx
            frames[t, ..., 1] = 60 + 5 * yy
            frames[t, ..., 2] = 120
            frames[t, 6:14, 2 + 3 * t: 10 + 3 * t] = (230, 200, 30 * i)
        buf = io.BytesIO()
        with av.open(buf, mode="w", format="mp4") as c:  # another encoder: B-frames, other settings
            s = c.add_stream("libx264", rate=10, options={"crf": str(8 + 4 * i), "bframes": "3", "preset": "medium"})
            s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
            for f in frames:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        sink.write(RolloutRecord(f"r{i}", buf.getvalue(), {}, actions_bytes=npy_bytes(actions)))
        made.append(decode_mp4(buf.getvalue())[:-1])
    sink.finalize()
    eps = assert_dataset_valid(tmp_path / "ds")
    for e, want in zip(eps, made, strict=True):
        got = video_frames(tmp_path / "ds", e).astype(np.float64)
        mse = np.mean((got - want) ** 2, axis=(1, 2, 3))
        assert np.all(10 * np.log10(255**2 / np.maximum(mse, 1e-10)) >= 40)


def test_bad_rows_and_duplicates_raise_naming_the_row(tmp_path: Path) -> None:
    sink = RolloutSink.lerobot(tmp_path / "ds", repo_id="me/ds")
    rec, _, _ = record("r0", 0)
    sink.write(rec)
    with pytest.raises(ValueError, match="'r0' is already"):
        sink.write(rec)
    with pytest.raises(ValueError, match="needs the row's actions"):
        sink.write(RolloutRecord("r1", rec.mp4_bytes, {}))
    with pytest.raises(ValueError, match="7 frames for 3 actions"):
        sink.write(RolloutRecord("r2", rec.mp4_bytes, {}, actions_bytes=npy_bytes(np.zeros((3, 2), np.float32))))
    with pytest.raises(ValueError, match="actions have 3 dims, the dataset's have 2"):
        sink.write(RolloutRecord("r3", rec.mp4_bytes, {}, actions_bytes=npy_bytes(np.zeros((6, 3), np.float32))))
    with pytest.raises(ValueError, match="repo_id='org/name'"):
        RolloutSink.lerobot(tmp_path / "x", repo_id="nope")
    sink.write_failure(RolloutRecord("r9", b"", {"status": 422, "error": "bad frame"}))
    sink.finalize()
    reopened = RolloutSink.lerobot(tmp_path / "ds", repo_id="me/ds")
    assert reopened.finished_row_ids() == {"r0"}
    assert [f["row_id"] for f in reopened.failures()] == ["r9"]
    with pytest.raises(ValueError, match="'r0' is already episode 0"):
        reopened.write(rec)


@pytest.mark.parametrize("crash_at", range(6))
def test_a_write_killed_at_any_file_leaves_a_valid_prefix(tmp_path: Path, monkeypatch, crash_at: int) -> None:
    """Cut the second file's write after each of its renames (tasks, data, video, episodes,
    stats, info); reopening recovers, and a resume writes every row exactly once."""
    import dream.io.sinks.lerobot as mod

    root = tmp_path / "ds"
    sink = LeRobotRolloutSink(root, repo_id="me/ds", episodes_per_file=2)
    recs = [record(f"r{i}", i, task=f"task{i}")[0] for i in range(6)]
    for rec in recs[:2]:
        sink.write(rec)  # file 0 committed
    calls = {"n": 0}
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        calls["n"] += 1
        if calls["n"] > crash_at:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(mod.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        sink.write(recs[2])
        sink.write(recs[3])
    monkeypatch.setattr(mod.os, "replace", real_replace)
    (root / "data" / "chunk-000" / ".file-009.parquet.dream-tmp-x").write_bytes(b"half")  # a cut temp file
    reopened = LeRobotRolloutSink(root, repo_id="me/ds", episodes_per_file=2)
    done = reopened.finished_row_ids()
    assert done in ({"r0", "r1"}, {"r0", "r1", "r2", "r3"})
    assert not list(root.rglob("*.dream-tmp-*"))
    assert_dataset_valid(root)
    for rec in recs:
        if rec.row_id not in done:
            reopened.write(rec)
    reopened.finalize()
    eps = assert_dataset_valid(root)
    assert [e["dream/row_id"] for e in eps] == [f"r{i}" for i in range(6)]


def test_resume_after_sigkill_no_duplicate_missing_or_corrupt_episode(tmp_path: Path) -> None:
    ids = [f"r{i:02d}" for i in range(30)]
    script = textwrap.dedent(
        f"""
        import sys, time, io
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_io_lerobot_sink import rollout, source_rows, predict_for
        from dream._bulk import run_predict_many
        from dream.io import RolloutSink
        sink = RolloutSink.lerobot({str(tmp_path / "ds")!r}, repo_id="me/ds", episodes_per_file=4)
        run_predict_many(source_rows(), sink, predict=predict_for(slow_after=14), concurrency=2, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    info = tmp_path / "ds" / "meta" / "info.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if info.exists() and json.loads(info.read_text() or "{}").get("total_episodes", 0) >= 8:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    before = LeRobotRolloutSink(tmp_path / "ds", repo_id="me/ds").finished_row_ids()
    assert 8 <= len(before) < 30
    assert_dataset_valid(tmp_path / "ds")  # loads as it was left
    calls: list[str] = []
    sink = RolloutSink.lerobot(tmp_path / "ds", repo_id="me/ds", episodes_per_file=4)
    result = run_predict_many(source_rows(), sink, predict=predict_for(calls=calls), concurrency=2, progress=False)
    assert result.skipped == len(before) and result.ok == 30 - len(before)
    assert not set(calls) & before
    eps = assert_dataset_valid(tmp_path / "ds")
    assert sorted(e["dream/row_id"] for e in eps) == ids
    data = [r for p in sorted((tmp_path / "ds" / "data").glob("*/*.parquet")) for r in pq.read_table(p).to_pylist()]
    for e in eps:
        _, actions = rollout(int(e["dream/row_id"][1:]), 5)
        got = np.array([r["action"] for r in data[e["dataset_from_index"]: e["dataset_to_index"]]], np.float32)
        assert np.array_equal(got, actions)


def source_rows() -> RowsSource:
    return RowsSource([SourceRow(f"r{i:02d}", png_bytes(), npy_bytes(rollout(i, 5)[1])) for i in range(30)])


def predict_for(*, slow_after: int | None = None, calls: list | None = None):
    lock = threading.Lock()
    count = {"n": 0}

    def predict(frame_bytes: bytes, actions_bytes: bytes, key: str) -> RowOutcome:
        actions = np.load(io.BytesIO(actions_bytes))
        seed = next(i for i in range(30) if np.array_equal(rollout(i, 5)[1], actions))
        with lock:
            count["n"] += 1
            n = count["n"]
        if calls is not None:
            calls.append(f"r{seed:02d}")
        if slow_after is not None:
            time.sleep(0.01 if n <= slow_after else 60)
        return RowOutcome(encode_mp4(rollout(seed, 5)[0], 10), "req", 1.0, 0.0, 6, 0, None)

    return predict


def test_sink_uri_and_push_to_hub(tmp_path: Path, hub, hub_repo: str) -> None:
    sink = sink_from_uri(f"lerobot:{tmp_path / 'ds'}?repo_id={hub_repo}", push_to_hub="true",
                         endpoint=hub.endpoint, token="hf_test", episodes_per_file="2")
    assert isinstance(sink, LeRobotRolloutSink) and sink.episodes_per_file == 2 and sink.push_to_hub is True
    for i in range(3):
        sink.write(record(f"r{i}", i)[0])
    assert sink.finalize() == f"hf://datasets/{hub_repo}"
    repo = hub.repos[hub_repo]
    local = {p.relative_to(tmp_path / "ds").as_posix() for p in (tmp_path / "ds").rglob("*") if p.is_file()}
    assert set(repo.files) == local and "meta/info.json" in local and "README.md" in local
    assert repo.tags["v3.0"] == repo.sha  # LeRobot resolves Hub datasets through this tag
    # A second push moves the tag to the new commit.
    more = RolloutSink.lerobot(tmp_path / "ds", repo_id=hub_repo, push_to_hub=True, endpoint=hub.endpoint,
                               token="hf_test")
    more.write(record("r3", 3)[0])
    more.finalize()
    assert repo.tags["v3.0"] == repo.sha and json.loads(repo.files["meta/info.json"])["total_episodes"] == 4
    with pytest.raises(ValueError, match="local folder"):
        sink_from_uri("lerobot://org/name", repo_id="a/b")
    with pytest.raises(ValueError, match="needs option"):
        sink_from_uri(f"lerobot:{tmp_path / 'other'}")


def test_image_stats_from_level_counts_equal_the_direct_computation() -> None:
    frames = np.random.default_rng(3).integers(20, 200, (7, 9, 11, 3), dtype=np.uint8)
    fast = lstats.image_stats(frames)
    direct = lstats._column_stats(frames.reshape(-1, 3), 7)
    for key, value in direct.items():
        want = value if key == "count" else (value / 255.0).reshape(3, 1, 1)
        np.testing.assert_allclose(fast[key], want, rtol=1e-9, atol=1e-12)


def test_image_stats_of_a_rollout_are_those_of_its_decoded_frames() -> None:
    from dream.io.sinks.lerobot import _episode_image_stats

    frames, _ = rollout(5, 30, hw=(48, 64))
    mp4 = encode_mp4(frames, 10)
    fast = _episode_image_stats(mp4, 30)
    exact = lstats.image_stats(decode_mp4(mp4)[:30])  # FFmpeg's own conversion to RGB
    for key in ("min", "max", "mean", "std", *lstats.QUANTILE_KEYS):
        np.testing.assert_allclose(fast[key], exact[key], rtol=1e-9)
    assert fast["count"].tolist() == [30]
