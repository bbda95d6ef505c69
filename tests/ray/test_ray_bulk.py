"""dream.ray on a real local Ray cluster: a head and a second worker node, 1 CPU each.

One cluster for the module (started and torn down here). Rows are pusht-96 rollouts
with short action sequences, so the runs are short but the engine and sinks are real.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")

import ray
from ray.cluster_utils import Cluster

import dream
import dream.ray
from dream.bulk.records import is_ok
from dream.examples import pusht_episode
from dream.inputs import encode_npy, encode_png
from dream.io import RolloutSink, frames_from_dir

SRC_PATH = str(Path(dream.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def cluster():
    env_before = os.environ.get("PYTHONPATH")
    # Workers import dream from the same place as this test.
    os.environ["PYTHONPATH"] = SRC_PATH + (os.pathsep + env_before if env_before else "")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    try:
        yield c
    finally:
        ray.shutdown()
        try:
            c.shutdown()
        finally:
            if env_before is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = env_before


def write_rows(folder: Path, n: int, t: int) -> list[str]:
    """n pusht rows with T=t actions; returns their ids."""
    folder.mkdir(parents=True)
    ids = []
    for i in range(n):
        ep = pusht_episode(i % 8)
        stem = f"row{i:03d}"
        (folder / f"{stem}.png").write_bytes(encode_png(ep.start_frame))
        (folder / f"{stem}.npy").write_bytes(encode_npy(ep.actions[:t] + np.float32(i)))
        ids.append(stem)
    return ids


def journal_counts(out: Path) -> collections.Counter:
    """How many times each row id was journalled with status ok."""
    counts: collections.Counter = collections.Counter()
    for path in out.glob("*.journal.jsonl"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if is_ok(entry):
                counts[entry["row_id"]] += 1
    return counts


def videos(out: Path) -> set[str]:
    return {p.stem for p in (out / "videos").glob("*.mp4")}


def test_every_row_once_failures_recorded_and_bytes_equal_to_predict_many(cluster, tmp_path: Path) -> None:
    ids = write_rows(tmp_path / "src", 10, 4)
    (tmp_path / "src" / "orphan.png").write_bytes(encode_png(pusht_episode(0).start_frame))  # no actions
    (tmp_path / "src" / "wide.png").write_bytes(encode_png(pusht_episode(0).start_frame))
    (tmp_path / "src" / "wide.npy").write_bytes(encode_npy(np.zeros((4, 3), np.float32)))  # action_dim 3
    result = dream.ray.predict_many(
        frames_from_dir(tmp_path / "src"), RolloutSink.dir(tmp_path / "ray"), spec="pusht-96", num_actors=2,
        address=cluster.address, progress=False, batch_size=2, fuse=True,  # rows fused in the actors
    )
    assert (result.ok, result.failed, result.skipped) == (10, 2, 0)
    assert {f.row_id for f in result.failures} == {"orphan", "wide"}
    assert "has no actions file" in str(next(f for f in result.failures if f.row_id == "orphan").error)
    assert videos(tmp_path / "ray") == set(ids)
    assert set(journal_counts(tmp_path / "ray").values()) == {1}
    assert result.cost_usd == pytest.approx(10 * 5 * 0.0001, rel=0.5) and result.output_uri

    # The thread runner on the same rows writes the same bytes and the same metadata.
    local = dream.Client().predict_many(
        frames_from_dir(tmp_path / "src"), RolloutSink.dir(tmp_path / "threads"), spec="pusht-96", progress=False
    )
    assert (local.ok, local.failed) == (10, 2)
    for row_id in ids:
        assert (tmp_path / "ray" / "videos" / f"{row_id}.mp4").read_bytes() == (
            tmp_path / "threads" / "videos" / f"{row_id}.mp4"
        ).read_bytes()
    import pyarrow.parquet as pq

    ray_rows = {r["row_id"]: r for r in pq.read_table(tmp_path / "ray" / "metadata.parquet").to_pylist()}
    thread_rows = {r["row_id"]: r for r in pq.read_table(tmp_path / "threads" / "metadata.parquet").to_pylist()}
    assert ray_rows.keys() == thread_rows.keys()
    for row_id, row in ray_rows.items():
        for key in ("status", "error", "frames", "estimated_charge_usd", "attempts", "sampling_seed", "spec"):
            assert row.get(key) == thread_rows[row_id].get(key), (row_id, key)

    again = dream.ray.predict_many(
        frames_from_dir(tmp_path / "src"), RolloutSink.dir(tmp_path / "ray"), spec="pusht-96", num_actors=1,
        address=cluster.address, progress=False,
    )
    assert (again.ok, again.skipped) == (0, 10) and again.failed == 2  # failed rows are retried, and fail again


def actor_pids() -> list[int]:
    """Processes of this cluster's RolloutPredictor actors (Ray titles them after the class)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"RolloutPredictor" in cmdline and b"pytest" not in cmdline:
            pids.append(int(proc.name))
    return sorted(pids)


def _wait_for(predicate, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_killed_actor_s_rows_are_retried_elsewhere_and_written_once(cluster, tmp_path: Path) -> None:
    ids = write_rows(tmp_path / "src", 24, 24)
    out = tmp_path / "out"
    box: dict = {}

    def drive() -> None:
        try:
            box["result"] = dream.ray.predict_many(
                frames_from_dir(tmp_path / "src"), RolloutSink.dir(out), spec="pusht-96", num_actors=2,
                address=cluster.address, progress=False,
            )
        except BaseException as exc:  # pragma: no cover - reported below
            box["error"] = exc

    driver = threading.Thread(target=drive)
    driver.start()
    assert _wait_for(lambda: (out / "videos").is_dir() and len(videos(out)) >= 2)
    actors = actor_pids()
    assert actors, "no live RolloutPredictor actor"
    os.kill(actors[0], signal.SIGKILL)
    killed_at = len(videos(out))
    driver.join(timeout=300)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert killed_at < len(ids), "the run ended before the actor was killed"
    assert (result.ok, result.failed) == (len(ids), 0)
    assert videos(out) == set(ids)
    assert journal_counts(out) == collections.Counter({row_id: 1 for row_id in ids})


DRIVER = textwrap.dedent(
    """
    import sys, dream.ray
    from dream.io import RolloutSink, frames_from_dir
    r = dream.ray.predict_many(frames_from_dir(sys.argv[1]), RolloutSink.dir(sys.argv[2]), spec="pusht-96",
                               num_actors=2, address=sys.argv[3], progress=False)
    print(r.ok, r.failed, r.skipped)
    """
)


def test_a_killed_driver_rerun_leaves_no_duplicate_and_no_missing_row(cluster, tmp_path: Path) -> None:
    ids = write_rows(tmp_path / "src", 24, 24)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": SRC_PATH + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [sys.executable, "-c", DRIVER, str(tmp_path / "src"), str(out), cluster.address]
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert _wait_for(lambda: (out / "videos").is_dir() and len(videos(out)) >= 3, timeout=180)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    done_before = journal_counts(out)
    assert 3 <= sum(done_before.values()) < len(ids), "the first driver finished before it was killed"
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=True)
    ok, failed, skipped = (int(x) for x in second.stdout.split()[-3:])
    assert failed == 0 and skipped == len(done_before) and ok + skipped == len(ids)
    assert videos(out) == set(ids)
    assert journal_counts(out) == collections.Counter({row_id: 1 for row_id in ids})


def test_bad_arguments_are_refused_before_any_work(tmp_path: Path) -> None:
    src, sink = frames_from_dir(tmp_path), RolloutSink.dir(tmp_path / "out")
    with pytest.raises(ValueError, match="num_actors must be a positive int; got 0"):
        dream.ray.predict_many(src, sink, spec="pusht-96", num_actors=0)
    with pytest.raises(ValueError, match="num_cpus_per_actor must be a positive number; got -1"):
        dream.ray.predict_many(src, sink, spec="pusht-96", num_actors=1, num_cpus_per_actor=-1)
    with pytest.raises(ValueError, match="on_error must be"):
        dream.ray.predict_many(src, sink, spec="pusht-96", num_actors=1, on_error="ignore")
    assert not list((tmp_path / "out").rglob("*.journal.jsonl")) and not list((tmp_path / "out").rglob("*.mp4"))


def test_dream_run_on_ray_from_the_command_line(cluster, tmp_path: Path) -> None:
    ids = write_rows(tmp_path / "src", 4, 4)
    env = {**os.environ, "PYTHONPATH": SRC_PATH + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "dream.cli", "run", str(tmp_path / "src"), str(tmp_path / "out"), "--ray",
           cluster.address, "--actors", "2", "--no-progress"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "4 ok, 0 failed, 0 skipped" in res.stdout
    assert videos(tmp_path / "out") == set(ids)
    bad = subprocess.run([*cmd, "--base-url", "http://127.0.0.1:9"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "error: --ray runs engines on Ray actors; it cannot be combined with --base-url"
    )


def test_a_folder_source_is_read_by_parallel_tasks_with_ids_and_metadata(tmp_path: Path) -> None:
    from dream.ray import SourceDatasource

    ids = write_rows(tmp_path / "src", 7, 2)
    (tmp_path / "src" / "orphan.png").write_bytes(encode_png(pusht_episode(0).start_frame))
    source = frames_from_dir(tmp_path / "src")
    tasks = SourceDatasource(source, skip_ids={"row001"}).get_read_tasks(3)
    assert len(tasks) == 3
    rows = [row for task in tasks for block in task() for row in block.to_pylist()]
    assert sorted(r["row_id"] for r in rows) == sorted([*ids, "orphan"])
    by_id = {r["row_id"]: r for r in rows}
    assert by_id["row001"]["frame_bytes"] == b""  # finished: passed through without its bytes
    assert by_id["row002"]["actions_bytes"] == (tmp_path / "src" / "row002.npy").read_bytes()
    assert json.loads(by_id["row002"]["metadata"])["frame_file"] == "row002.png"
    assert "no actions file" in by_id["orphan"]["error"] and by_id["row002"]["error"] is None


def test_the_actor_checks_rows_like_predict_many_and_keys_them_the_same(tmp_path: Path) -> None:
    import pyarrow as pa

    from dream.bulk.ray import _rows_table
    from dream.bulk.run import BulkRun
    from dream.io import SourceRow
    from dream.ray import RolloutPredictor

    ep = pusht_episode(0)
    good = SourceRow("good", encode_png(ep.start_frame), encode_npy(ep.actions[:2]), {"k": 1})
    rows = [
        good,
        SourceRow("a/b", good.frame_bytes, good.actions_bytes),  # unsafe id
        SourceRow("done", b"", b""),  # already in the sink
        SourceRow("broken", b"", b"", error="cannot read row files: boom"),
        SourceRow("wide", good.frame_bytes, encode_npy(np.zeros((2, 3), np.float32))),
    ]
    actor = RolloutPredictor(spec="pusht-96", seed=5, finished={"done"}, threads=1)
    out = actor(pa.Table.from_pylist(_rows_table(rows).to_pylist()))
    kinds = dict(zip(out["row_id"], out["kind"], strict=True))
    assert kinds == {"good": "ok", "a/b": "unsafe-id", "done": "skipped", "broken": "failed", "wide": "failed"}
    meta = {r: json.loads(m) for r, m in zip(out["row_id"], out["record_metadata"], strict=True)}
    # 0.5.0's layout: the source's keys at the top level, the int HTTP status.
    assert meta["good"]["status"] == 200 and meta["good"]["k"] == 1 and meta["good"]["sampling_seed"] == 5
    assert meta["broken"]["error"] == "cannot read row files: boom" and meta["broken"]["attempts"] == 0
    assert "model expects 2" in meta["wide"]["error"]
    run = BulkRun(frames_from_dir(tmp_path), RolloutSink.dir(tmp_path / "o"), spec="pusht-96", on_error="skip",
                   progress=False, num_steps=None, guidance=None, seed=5, resume=False)
    assert actor._key(good) == run.key_for(good)  # the billing idempotency key does not change on Ray


def test_building_blocks_in_a_user_pipeline_write_through_a_sink(cluster, tmp_path: Path) -> None:
    from dream.ray import RolloutDatasink, RolloutPredictor, SourceDatasource

    ids = write_rows(tmp_path / "src", 5, 2)
    (tmp_path / "src" / "orphan.png").write_bytes(encode_png(pusht_episode(0).start_frame))
    ds = ray.data.read_datasource(SourceDatasource(frames_from_dir(tmp_path / "src")), num_cpus=0).map_batches(
        RolloutPredictor, fn_constructor_kwargs={"spec": "pusht-96"}, compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1, batch_size=4, batch_format="pyarrow",
    )
    ds.write_datasink(RolloutDatasink(str(tmp_path / "out")))
    assert videos(tmp_path / "out") == set(ids)
    import pyarrow.parquet as pq

    table = {r["row_id"]: r for r in pq.read_table(tmp_path / "out" / "metadata.parquet").to_pylist()}
    assert set(table) == {*ids, "orphan"} and table["orphan"]["status"] == 422
    with pytest.raises(TypeError, match="sink URI or a zero-argument callable"):
        RolloutDatasink(RolloutSink.dir(tmp_path / "x"))


SOURCE_ERROR = "episode 7: the parquet has no 'action' column"

FAILING_CLI = """
import sys

import dream.io.uri
from dream.cli import main
from dream.io import IterableSource, frames_from_dir


FOLDER = sys.argv[1]  # read here: Ray runs __iter__ in a worker with other argv


class Failing(IterableSource):
    rows_hint = 3

    def __iter__(self):
        yield from frames_from_dir(FOLDER)
        raise ValueError({message!r})


dream.io.uri.source_from_uri = lambda *args, **kwargs: Failing()
sys.exit(main(["run", "ignored", sys.argv[2], "--no-progress", *sys.argv[3:]]))
"""


def _failing_source(folder: Path):
    from dream.io import IterableSource

    class Failing(IterableSource):  # defined here, so Ray pickles it by value
        rows_hint = 3

        def __iter__(self):
            yield from frames_from_dir(folder)
            raise ValueError(SOURCE_ERROR)

    return Failing()


def test_a_source_that_raises_stops_the_run_with_its_own_error(cluster, tmp_path: Path) -> None:
    write_rows(tmp_path / "src", 2, 2)
    with pytest.raises(ValueError) as info:
        dream.ray.predict_many(_failing_source(tmp_path / "src"), RolloutSink.dir(tmp_path / "out"),
                               spec="pusht-96", num_actors=1, progress=False)
    assert type(info.value) is ValueError  # the source's own error, not Ray's wrapper
    assert str(info.value) == SOURCE_ERROR


@pytest.mark.parametrize("runner", ["threads", "ray"])
def test_dream_run_prints_a_source_error_as_one_line(cluster, tmp_path: Path, runner: str) -> None:
    write_rows(tmp_path / "src", 2, 2)
    script = tmp_path / "failing_cli.py"
    script.write_text(FAILING_CLI.format(message=SOURCE_ERROR))
    env = {**os.environ, "PYTHONPATH": SRC_PATH + os.pathsep + os.environ.get("PYTHONPATH", "")}
    extra = ["--ray", cluster.address] if runner == "ray" else []
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "src"), str(tmp_path / "out"), *extra],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.stderr.strip().splitlines()[-1] == f"error: {SOURCE_ERROR}"


def test_ray_into_a_lerobot_dataset_keeps_actions_bit_for_bit(cluster, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    ids = write_rows(tmp_path / "src", 6, 4)
    result = dream.ray.predict_many(
        frames_from_dir(tmp_path / "src"), RolloutSink.lerobot(tmp_path / "ds", repo_id="me/ray", episodes_per_file=4),
        spec="pusht-96", num_actors=2, address=cluster.address, progress=False, batch_size=2,
    )
    assert (result.ok, result.failed) == (6, 0)
    episodes = [r for p in sorted((tmp_path / "ds/meta/episodes").glob("*/*.parquet")) for r in pq.read_table(p).to_pylist()]
    data = [r for p in sorted((tmp_path / "ds/data").glob("*/*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert sorted(e["dream/row_id"] for e in episodes) == ids
    assert sorted(e["episode_index"] for e in episodes) == list(range(6))
    for e in episodes:
        want = np.load(tmp_path / "src" / f"{e['dream/row_id']}.npy")
        got = np.array([r["action"] for r in data[e["dataset_from_index"]: e["dataset_to_index"]]], np.float32)
        assert np.array_equal(got, want)
