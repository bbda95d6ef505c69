"""predict_many end to end with a real (tiny) predictor: bad inputs, retries, fatal errors,
resume after crashes, bounded streaming, progress, async, and every sink."""

from __future__ import annotations

import asyncio
import io
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
import pyarrow.parquet as pq
import pytest
from io_support import (
    ACTION_DIM,
    ListSource,
    MemorySink,
    TinyEngine,
    actions_array,
    decode_mp4,
    make_lerobot_v3,
    npy_bytes,
    png_bytes,
    transient,
    write_episode_dir,
)

from dream.bulk.rows import idempotency_key
from dream.bulk.threads import run_predict_many, run_predict_many_async
from dream.errors import (
    AuthError,
    DreamError,
    InputValidationError,
    InsufficientCreditsError,
    ModelNotFoundError,
    ValidationError,
)
from dream.io import IterableSource, RolloutSink, SourceRow, frames_from_dir, frames_from_hf, frames_from_s3
from dream.io.sources.lerobot import frames_from_lerobot


def run(src, sink, engine, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("spec", "tiny")
    kwargs.setdefault("sleep", lambda s: None)
    return run_predict_many(src, sink, predict=engine, **kwargs)


def metadata_rows(folder: Path) -> dict[str, dict]:
    rows = pq.read_table(folder / "metadata.parquet").to_pylist()
    ids = [r["row_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a row is listed twice"
    return {r["row_id"]: r for r in rows}


def assert_sink_valid(folder: Path) -> dict[str, dict]:
    """Every ok row has a decodable mp4 with `frames` frames; no stray files."""
    rows = metadata_rows(folder)
    for row_id, row in rows.items():
        if row["status"] == 200:
            frames = decode_mp4((folder / row["file_name"]).read_bytes())
            assert frames.shape[0] == row["frames"], row_id
    videos = {p.stem for p in (folder / "videos").iterdir()}
    assert videos >= {r for r, row in rows.items() if row["status"] == 200}
    return rows


# -- the happy path ----------------------------------------------------------------------------


def test_dir_to_dir(tmp_path: Path) -> None:
    ids = write_episode_dir(tmp_path / "eps", 12)
    src = frames_from_dir(tmp_path / "eps")
    engine = TinyEngine(source=src)
    result = run(
        src, RolloutSink.dir(tmp_path / "out"), engine, concurrency=3, seed=7, num_steps=4, guidance=0.5
    )
    assert (result.ok, result.failed, result.skipped, result.total) == (12, 0, 0, 12)
    assert result.output_uri == str((tmp_path / "out").resolve())
    assert result.cost_usd == pytest.approx(12 * 9 * 0.001)
    assert result.wall_s > 0
    rows = assert_sink_valid(tmp_path / "out")
    assert sorted(rows) == ids
    row = rows["ep_003"]
    assert (row["status"], row["spec"], row["sampling_seed"], row["num_steps"], row["guidance"], row["frames"]) == (
        200,
        "tiny",
        7,  # what the run asked for (a resumed run compares these)
        4,
        0.5,
        9,
    )
    assert row["attempts"] == 1 and row["engine_wall_ms"] == 1.5 and row["request_id"].startswith("req-")
    assert row["frame_file"] == "ep_003.png"
    # One deterministic idempotency key per row, derived from its content and the sampling args.
    first = next(r for r in src if r.row_id == "ep_003")
    expected = idempotency_key(
        spec="tiny",
        seed=7,
        num_steps=4,
        guidance=0.5,
        row_id="ep_003",
        frame_bytes=first.frame_bytes,
        actions_bytes=first.actions_bytes,
    )
    assert engine.keys["ep_003"] == {expected}
    assert len({k for keys in engine.keys.values() for k in keys}) == 12


def test_on_error_and_concurrency_are_validated(tmp_path: Path) -> None:
    src = ListSource([])
    with pytest.raises(ValueError, match="on_error"):
        run(src, MemorySink(), TinyEngine(), on_error="ignore")
    with pytest.raises(ValueError, match="concurrency"):
        run(src, MemorySink(), TinyEngine(), concurrency=0)
    result = run(src, MemorySink(), TinyEngine(), on_error="raise")  # alias of halt
    assert result.ok == 0 and result.output_uri == "memory://0"


# -- bad input: a clear error naming the row, nothing lost ------------------------------------

GOOD_T = 8


def _pickled_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buf.getvalue()


DIR_CASES = {
    # name: (frame bytes or None for "no actions file", actions bytes, message pattern)
    "orphan_frame": (png_bytes(), None, r"has no actions file \(expected '\w+\.npy'"),
    "truncated_png": (png_bytes()[:40], npy_bytes(actions_array(GOOD_T)), "could not be decoded"),
    "not_an_image": (b"GIF89a but not really", npy_bytes(actions_array(GOOD_T)), "could not be decoded"),
    "pickled_npy": (png_bytes(), _pickled_npy(), "not a readable .npy"),
    "malformed_npy": (png_bytes(), b"\x93NUMPY\x01\x00garbage", "not a readable .npy"),
    "wrong_action_dim": (
        png_bytes(),
        npy_bytes(actions_array(GOOD_T, dim=ACTION_DIM + 1)),
        "action_dim mismatch",
    ),
    "t_not_multiple_of_chunk": (
        png_bytes(),
        npy_bytes(actions_array(6)),
        "not a multiple of the model's chunk_size",
    ),
    "nan_actions": (png_bytes(), npy_bytes(np.full((GOOD_T, ACTION_DIM), np.nan, np.float32)), "NaN or inf"),
    "inf_actions": (png_bytes(), npy_bytes(np.full((GOOD_T, ACTION_DIM), np.inf, np.float32)), "NaN or inf"),
}


def _dir_with_bad_row(root: Path, case: str) -> None:
    write_episode_dir(root, 4)  # ep_000 … ep_003; "bad" sorts before them
    frame, actions, _ = DIR_CASES[case]
    (root / "bad.png").write_bytes(frame)
    if actions is not None:
        (root / "bad.npy").write_bytes(actions)


@pytest.mark.parametrize("case", sorted(DIR_CASES))
def test_bad_row_skip_mode_records_it_everywhere(tmp_path: Path, case: str) -> None:
    _dir_with_bad_row(tmp_path / "eps", case)
    src = frames_from_dir(tmp_path / "eps")
    engine = TinyEngine(source=src)
    result = run(src, RolloutSink.dir(tmp_path / "out"), engine, concurrency=2)
    assert (result.ok, result.failed) == (4, 1)
    [failure] = result.failures
    assert failure.row_id == "bad" and isinstance(failure.error, InputValidationError)
    assert failure.error.args and __import__("re").search(DIR_CASES[case][2], str(failure.error))
    rows = assert_sink_valid(tmp_path / "out")
    assert rows["bad"]["status"] == 422 and rows["bad"]["file_name"] == ""
    assert __import__("re").search(DIR_CASES[case][2], rows["bad"]["error"])
    assert engine.calls.get("bad", 0) == (0 if case == "orphan_frame" else 1)  # validation errors: no retry


@pytest.mark.parametrize("case", sorted(DIR_CASES))
def test_bad_row_halt_mode_names_the_row_and_keeps_the_sink_valid(tmp_path: Path, case: str) -> None:
    write_episode_dir(tmp_path / "eps", 4)
    frame, actions, pattern = DIR_CASES[case]
    (tmp_path / "eps" / "ep_001x.png").write_bytes(frame)  # sorts between ep_001 and ep_002
    if actions is not None:
        (tmp_path / "eps" / "ep_001x.npy").write_bytes(actions)
    src = frames_from_dir(tmp_path / "eps")
    with pytest.raises(InputValidationError, match=pattern) as info:
        run(src, RolloutSink.dir(tmp_path / "out"), TinyEngine(source=src), concurrency=1, on_error="halt")
    assert str(info.value).startswith("row 'ep_001x': ") and info.value.row_id == "ep_001x"
    rows = assert_sink_valid(tmp_path / "out")  # finalized best-effort: the table is there and valid
    assert {"ep_000", "ep_001"} <= {r for r, row in rows.items() if row["status"] == 200}
    assert rows["ep_001x"]["status"] == 422
    assert "ep_003" not in rows  # stopped pulling rows


ID_CASES = {
    "dot_dot_slash": ("../x", "escape the output folder"),
    "slash": ("a/b", "path separator"),
    "backslash": ("a\\b", "path separator"),
    "empty": ("", "row id is empty"),
    "dot_dot": ("..", "escape the output folder"),
}


@pytest.mark.parametrize("case", sorted(ID_CASES))
def test_unsafe_row_ids(tmp_path: Path, case: str) -> None:
    bad_id, pattern = ID_CASES[case]
    good = (png_bytes(), npy_bytes(actions_array(GOOD_T)))
    rows = [("r0", *good), (bad_id, *good), ("r2", *good)]
    engine = TinyEngine()
    result = run(ListSource(rows), RolloutSink.dir(tmp_path / "out"), engine)
    assert result.ok == 2 and [f.row_id for f in result.failures] == [bad_id]
    assert pattern in str(result.failures[0].error) and result.failures[0].attempts == 0
    assert engine.total_calls() == 2  # never sent to the engine
    listed = metadata_rows(tmp_path / "out")
    assert listed[bad_id]["status"] == 422
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing escaped
    with pytest.raises(InputValidationError, match=pattern) as info:
        run(
            ListSource(rows), RolloutSink.dir(tmp_path / "out2"), TinyEngine(), on_error="halt", concurrency=1
        )
    assert info.value.row_id == bad_id


def test_duplicate_row_ids(tmp_path: Path) -> None:
    good = (png_bytes(), npy_bytes(actions_array(GOOD_T)))
    other = (png_bytes((9, 9, 9)), npy_bytes(actions_array(GOOD_T, offset=5)))
    rows = [("a", *good), ("b", *good), ("a", *other)]
    engine = TinyEngine()
    result = run(ListSource(rows), RolloutSink.dir(tmp_path / "out"), engine, concurrency=1)
    assert result.ok == 2 and [f.row_id for f in result.failures] == ["a"]
    assert "duplicate row id 'a'" in str(result.failures[0].error)
    listed = metadata_rows(tmp_path / "out")
    assert listed["a"]["status"] == 200  # the first row's entry is not clobbered by the duplicate
    assert engine.total_calls() == 2
    with pytest.raises(InputValidationError, match="duplicate row id") as info:
        run(
            ListSource(rows), RolloutSink.dir(tmp_path / "out2"), TinyEngine(), on_error="halt", concurrency=1
        )
    assert info.value.row_id == "a"


# -- retries ------------------------------------------------------------------------------------


def test_transient_errors_are_retried_with_backoff_and_one_key(tmp_path: Path) -> None:
    ids = write_episode_dir(tmp_path / "eps", 3)
    src = frames_from_dir(tmp_path / "eps")
    engine = TinyEngine(source=src, fail_plan={ids[1]: [transient("429", retry_after=3.0), transient("503")]})
    slept: list[float] = []
    lock = threading.Lock()

    def fake_sleep(seconds: float) -> None:
        with lock:
            slept.append(seconds)

    result = run(src, RolloutSink.dir(tmp_path / "out"), engine, retries=2, sleep=fake_sleep)
    assert (result.ok, result.failed) == (3, 0)
    assert slept[0] == 3.0  # Retry-After honoured
    assert 0.25 <= slept[1] < 0.75  # RetryPolicy(): 0.25 s × 2^1 with jitter in [0.5, 1.5)
    assert engine.calls[ids[1]] == 3 and len(engine.keys[ids[1]]) == 1  # same idempotency key each time
    assert metadata_rows(tmp_path / "out")[ids[1]]["attempts"] == 3


def test_retries_exhausted_and_non_retryable_errors(tmp_path: Path) -> None:
    ids = write_episode_dir(tmp_path / "eps", 3)
    src = frames_from_dir(tmp_path / "eps")
    engine = TinyEngine(
        source=src,
        fail_plan={ids[0]: [transient("503")] * 5, ids[1]: [ValidationError("bad request", status_code=422)]},
    )
    result = run(src, RolloutSink.dir(tmp_path / "out"), engine, retries=2)
    failures = {f.row_id: f for f in result.failures}
    assert result.ok == 1 and set(failures) == {ids[0], ids[1]}
    assert failures[ids[0]].attempts == 3 and engine.calls[ids[0]] == 3
    assert failures[ids[1]].attempts == 1 and engine.calls[ids[1]] == 1
    rows = metadata_rows(tmp_path / "out")
    assert "upstream hiccup" in rows[ids[0]]["error"] and rows[ids[0]]["attempts"] == 3


# -- fatal errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        AuthError("invalid API key", status_code=401),
        InsufficientCreditsError("balance too low", balance_mils=10, requested_mils=90),
        ModelNotFoundError("no such spec", status_code=404),
    ],
    ids=["auth", "credits", "model"],
)
def test_fatal_errors_stop_even_in_skip_mode(tmp_path: Path, error: DreamError) -> None:
    ids = write_episode_dir(tmp_path / "eps", 8)
    src = frames_from_dir(tmp_path / "eps")
    engine = TinyEngine(source=src, fail_plan={ids[2]: [error]})
    with pytest.raises(type(error)) as info:
        run(src, RolloutSink.dir(tmp_path / "out"), engine, concurrency=1, on_error="skip")
    assert info.value.row_id == ids[2] and str(info.value).startswith(f"row '{ids[2]}': ")
    rows = assert_sink_valid(tmp_path / "out")
    assert ids[2] not in rows  # not recorded as failed: it can simply be run again
    assert engine.calls[ids[2]] == 1  # never retried
    assert engine.total_calls() <= 5  # stopped pulling: at most 2 x concurrency past the fatal row


def test_sink_write_failure_is_fatal(tmp_path: Path) -> None:
    ids = write_episode_dir(tmp_path / "eps", 6)

    class FlakySink(MemorySink):
        def write(self, record):
            if record.row_id == ids[3]:
                raise OSError(28, "No space left on device")
            super().write(record)

    sink = FlakySink()
    with pytest.raises(OSError, match="No space left") as info:
        run(frames_from_dir(tmp_path / "eps"), sink, TinyEngine(), concurrency=1)
    assert info.value.row_id == ids[3]
    assert sink.finalized == 1 and set(sink.records) >= set(ids[:3])


def test_unexpected_predictor_and_source_errors_propagate(tmp_path: Path) -> None:
    ids = write_episode_dir(tmp_path / "eps", 4)
    src = frames_from_dir(tmp_path / "eps")
    engine = TinyEngine(source=src, fail_plan={ids[1]: [RuntimeError("engine bug")]})
    with pytest.raises(RuntimeError, match=f"row '{ids[1]}': engine bug"):
        run(src, RolloutSink.dir(tmp_path / "out"), engine, concurrency=1)
    assert_sink_valid(tmp_path / "out")

    class BrokenSource(IterableSource):
        def __iter__(self):
            yield SourceRow("r0", png_bytes(), npy_bytes(actions_array(GOOD_T)))
            raise ConnectionError("dataset server went away")

    sink = MemorySink()
    with pytest.raises(ConnectionError, match="went away"):
        run(BrokenSource(), sink, TinyEngine(), concurrency=1)
    assert list(sink.records) == ["r0"] and sink.finalized == 1


# -- resume ------------------------------------------------------------------------------------


def test_resume_after_keyboard_interrupt_recomputes_nothing(tmp_path: Path) -> None:
    ids = write_episode_dir(tmp_path / "eps", 16)
    src = frames_from_dir(tmp_path / "eps")
    crashing = TinyEngine(source=src, fail_plan={ids[9]: [KeyboardInterrupt()]})
    with pytest.raises(KeyboardInterrupt):
        run(src, RolloutSink.dir(tmp_path / "out"), crashing, concurrency=2)
    done_before = RolloutSink.dir(tmp_path / "out").finished_row_ids()
    assert 0 < len(done_before) < 16

    engine = TinyEngine(source=src)
    result = run(src, RolloutSink.dir(tmp_path / "out"), engine, concurrency=2)
    assert result.skipped == len(done_before) and result.ok == 16 - len(done_before)
    assert not set(engine.calls) & done_before  # no finished row recomputed
    assert all(n == 1 for n in engine.calls.values())
    rows = assert_sink_valid(tmp_path / "out")
    assert sorted(rows) == ids and all(r["status"] == 200 for r in rows.values())
    journal = [json.loads(line)["row_id"] for line in (tmp_path / "out" / "metadata.journal.jsonl").open()]
    assert sorted(journal) == ids  # each row written exactly once across both runs
    # And a third run has nothing to do.
    third = run(src, RolloutSink.dir(tmp_path / "out"), TinyEngine(source=src))
    assert (third.ok, third.skipped) == (0, 16)


def test_resume_false_recomputes_everything(tmp_path: Path) -> None:
    write_episode_dir(tmp_path / "eps", 3)
    src = frames_from_dir(tmp_path / "eps")
    run(src, RolloutSink.dir(tmp_path / "out"), TinyEngine())
    engine = TinyEngine(source=src)
    result = run(src, RolloutSink.dir(tmp_path / "out"), engine, resume=False)
    assert (result.ok, result.skipped, engine.total_calls()) == (3, 0, 3)
    assert len(metadata_rows(tmp_path / "out")) == 3  # still one entry per row


def test_resume_after_sigkill_writes_no_row_twice(tmp_path: Path) -> None:
    ids = write_episode_dir(tmp_path / "eps", 40)
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from io_support import TinyEngine
        from dream.bulk.threads import run_predict_many
        from dream.io import RolloutSink, frames_from_dir
        engine = TinyEngine()
        def slow(f, a, k):
            # The first rows go through; later ones hang, so the kill always lands mid-run.
            time.sleep(0.02 if engine.total_calls() < 12 else 60)
            return engine(f, a, k)
        run_predict_many(frames_from_dir({str(tmp_path / "eps")!r}), RolloutSink.dir({str(tmp_path / "out")!r}),
                         predict=slow, concurrency=2, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    journal = tmp_path / "out" / "metadata.journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 8:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert not (tmp_path / "out" / "metadata.parquet").exists()  # killed before finalize

    done_before = RolloutSink.dir(tmp_path / "out").finished_row_ids()
    assert 8 <= len(done_before) <= 12
    src = frames_from_dir(tmp_path / "eps")
    engine = TinyEngine(source=src)
    result = run(src, RolloutSink.dir(tmp_path / "out"), engine, concurrency=2)
    assert result.skipped == len(done_before) and result.ok == 40 - len(done_before)
    assert not set(engine.calls) & done_before
    rows = assert_sink_valid(tmp_path / "out")
    assert sorted(rows) == ids
    journal_ids = [json.loads(line)["row_id"] for line in journal.open()]
    assert sorted(journal_ids) == ids


def test_failed_rows_are_retried_on_resume(tmp_path: Path) -> None:
    ids = write_episode_dir(tmp_path / "eps", 4)
    src = frames_from_dir(tmp_path / "eps")
    first = run(
        src,
        RolloutSink.dir(tmp_path / "out"),
        TinyEngine(source=src, fail_plan={ids[2]: [transient("503")] * 9}),
    )
    assert [f.row_id for f in first.failures] == [ids[2]]
    engine = TinyEngine(source=src)
    second = run(src, RolloutSink.dir(tmp_path / "out"), engine)
    assert (second.ok, second.skipped, second.failed) == (1, 3, 0) and list(engine.calls) == [ids[2]]
    assert metadata_rows(tmp_path / "out")[ids[2]]["status"] == 200


# -- streaming and progress ----------------------------------------------------------------------


def test_rows_stream_through_a_bounded_window() -> None:
    concurrency = 3
    in_flight = {"now": 0, "max": 0}
    lock = threading.Lock()

    class CountingSource(IterableSource):
        rows_hint = 60

        def __iter__(self):
            for i in range(60):
                with lock:
                    in_flight["now"] += 1
                    in_flight["max"] = max(in_flight["max"], in_flight["now"])
                yield SourceRow(f"r{i}", png_bytes(), npy_bytes(actions_array(4)))

    class CountingSink(MemorySink):
        def write(self, record):
            with lock:
                in_flight["now"] -= 1
            super().write(record)

    result = run(CountingSource(), CountingSink(), TinyEngine(), concurrency=concurrency)
    assert result.ok == 60
    assert in_flight["max"] <= 2 * concurrency + 1  # never the whole dataset


def test_progress_bar_counts_rows(tmp_path: Path, capsys, monkeypatch) -> None:
    pytest.importorskip("tqdm")
    write_episode_dir(tmp_path / "eps", 5)
    (tmp_path / "eps" / "orphan.png").write_bytes(png_bytes())
    src = frames_from_dir(tmp_path / "eps")
    run(src, RolloutSink.dir(tmp_path / "out"), TinyEngine(), progress=False)  # finish 5 rows
    (tmp_path / "eps" / "late.png").write_bytes(png_bytes())
    (tmp_path / "eps" / "late.npy").write_bytes(npy_bytes(actions_array(4)))
    capsys.readouterr()
    run(frames_from_dir(tmp_path / "eps"), RolloutSink.dir(tmp_path / "out"), TinyEngine(), progress=True)
    err = capsys.readouterr().err
    assert "7/7" in err and "ok=1" in err and "failed=1" in err and "skipped=5" in err and "row" in err


def test_no_progress_bar_without_tqdm(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    write_episode_dir(tmp_path / "eps", 2)
    result = run(frames_from_dir(tmp_path / "eps"), MemorySink(), TinyEngine(), progress=True)
    assert result.ok == 2


# -- async ----------------------------------------------------------------------------------------


def test_async_runner_matches_the_sync_one(tmp_path: Path) -> None:
    ids = write_episode_dir(tmp_path / "eps", 10)
    (tmp_path / "eps" / "bad.png").write_bytes(b"not a png")
    (tmp_path / "eps" / "bad.npy").write_bytes(npy_bytes(actions_array(GOOD_T)))
    src = frames_from_dir(tmp_path / "eps")
    engine = TinyEngine(source=src, fail_plan={ids[4]: [transient("429", retry_after=2.0)]})
    live = {"now": 0, "max": 0}
    slept: list[float] = []

    async def predict(frame: bytes, actions: bytes, key: str):
        live["now"] += 1
        live["max"] = max(live["max"], live["now"])
        try:
            return await asyncio.to_thread(engine, frame, actions, key)
        finally:
            live["now"] -= 1

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    result = asyncio.run(
        run_predict_many_async(
            src,
            RolloutSink.dir(tmp_path / "out"),
            predict=predict,
            spec="tiny",
            concurrency=3,
            progress=False,
            sleep=fake_sleep,
        )
    )
    assert (result.ok, result.failed) == (10, 1) and result.failures[0].row_id == "bad"
    assert slept == [2.0] and live["max"] <= 3
    assert_sink_valid(tmp_path / "out")
    again = asyncio.run(
        run_predict_many_async(src, RolloutSink.dir(tmp_path / "out"), predict=predict, spec="tiny", progress=False)
    )
    assert (again.ok, again.skipped, again.failed) == (0, 10, 1)  # only the failed row is tried again

    async def auth_fails(frame, actions, key):
        raise AuthError("revoked key", status_code=401)

    with pytest.raises(AuthError, match="row '"):
        asyncio.run(
            run_predict_many_async(
                src, RolloutSink.dir(tmp_path / "out3"), predict=auth_fails, progress=False, on_error="skip"
            )
        )
    assert (tmp_path / "out3" / "metadata.parquet").exists()


# -- other sources and sinks end to end --------------------------------------------------------


def test_s3_to_s3_with_resume(s3_bucket, s3_kwargs) -> None:
    bucket, client = s3_bucket
    for i in range(6):
        client.put_object(Bucket=bucket, Key=f"in/ep{i}.png", Body=png_bytes((i, 0, 0)))
        client.put_object(Bucket=bucket, Key=f"in/ep{i}.npy", Body=npy_bytes(actions_array(4, offset=i)))
    client.put_object(Bucket=bucket, Key="in/orphan.png", Body=png_bytes())
    src = frames_from_s3(f"s3://{bucket}/in/", boto3_kwargs=s3_kwargs)
    sink = RolloutSink.s3(f"s3://{bucket}/out/", boto3_kwargs=s3_kwargs)
    result = run(src, sink, TinyEngine(), concurrency=2)
    assert (result.ok, result.failed, result.output_uri) == (6, 1, f"s3://{bucket}/out/")
    table = pq.read_table(
        io.BytesIO(client.get_object(Bucket=bucket, Key="out/metadata.parquet")["Body"].read())
    )
    assert sorted(table.column("row_id").to_pylist()) == ["ep0", "ep1", "ep2", "ep3", "ep4", "ep5", "orphan"]
    frames = decode_mp4(client.get_object(Bucket=bucket, Key="out/videos/ep3.mp4")["Body"].read())
    assert frames.shape[0] == 5
    engine = TinyEngine()
    again = run(src, RolloutSink.s3(f"s3://{bucket}/out/", boto3_kwargs=s3_kwargs), engine)
    assert (again.ok, again.skipped, again.failed, engine.total_calls()) == (0, 6, 1, 0)


def test_hf_parquet_to_hub_with_resume(tmp_path: Path, hub, hub_repo: str) -> None:
    import pyarrow as pa

    pq.write_table(
        pa.table(
            {
                "id": [f"s{i}" for i in range(5)],
                "frame": [{"bytes": png_bytes((i, i, i)), "path": None} for i in range(5)],
                "actions": [actions_array(4, offset=i).tolist() for i in range(5)],
                "task": ["push"] * 5,
            }
        ),
        tmp_path / "train.parquet",
    )
    src = frames_from_hf(
        str(tmp_path / "train.parquet"), frame_field="frame", actions_field="actions", id_field="id"
    )
    sink = RolloutSink.hf(hub_repo, shard_rows=2, endpoint=hub.endpoint)
    result = run(src, sink, TinyEngine(), concurrency=2)
    assert (result.ok, result.output_uri) == (5, f"hf://datasets/{hub_repo}")
    repo = hub.repos[hub_repo]
    assert len(repo.commits) == 3 and sum(name.startswith("videos/") for name in repo.files) == 5
    engine = TinyEngine()
    again = run(src, RolloutSink.hf(hub_repo, endpoint=hub.endpoint), engine)
    assert (again.ok, again.skipped, engine.total_calls(), len(repo.commits)) == (0, 5, 0, 3)


def test_lerobot_to_dir(tmp_path: Path) -> None:
    root = make_lerobot_v3(tmp_path / "ds", [9, 10, 8], episodes_per_file=2)
    src = frames_from_lerobot(root, horizon=4, stride=4, action_dim=ACTION_DIM)
    result = run(src, RolloutSink.dir(tmp_path / "out"), TinyEngine(), concurrency=2)
    assert result.ok == src.rows_hint == 6 and result.failed == 0
    rows = assert_sink_valid(tmp_path / "out")
    assert rows["episode_000001_from_000004"]["start_frame_index"] == 4


# -- through the public client --------------------------------------------------------------------


def _embedded_client():
    dream = pytest.importorskip("dream")
    client_cls = getattr(dream, "Client", None)
    if client_cls is None:
        pytest.skip("dream.Client is not available yet")
    client = client_cls()
    probe_frame = png_bytes((0, 0, 0), hw=(96, 96))
    try:
        client.predict(frame_bytes=probe_frame, actions_bytes=npy_bytes(np.zeros((4, 2), np.float32)))
    except Exception as exc:
        pytest.skip(f"the embedded engine cannot run here yet: {exc}")
    return client


def test_client_predict_many_embedded(tmp_path: Path) -> None:
    client = _embedded_client()
    (tmp_path / "eps").mkdir()
    for i in range(3):
        (tmp_path / "eps" / f"ep{i}.png").write_bytes(png_bytes((40 * i, 80, 120), hw=(96, 96)))
        (tmp_path / "eps" / f"ep{i}.npy").write_bytes(npy_bytes(np.full((4, 2), 100.0 + i, np.float32)))
    (tmp_path / "eps" / "bad.png").write_bytes(png_bytes(hw=(96, 96)))
    (tmp_path / "eps" / "bad.npy").write_bytes(npy_bytes(np.zeros((4, 5), np.float32)))  # wrong action_dim
    src = frames_from_dir(tmp_path / "eps")
    result = client.predict_many(src, RolloutSink.dir(tmp_path / "out"), concurrency=2, progress=False)
    assert (result.ok, result.failed) == (3, 1) and result.failures[0].row_id == "bad"
    assert_sink_valid(tmp_path / "out")
    estimate = client.estimate_cost(src)
    assert estimate.rows == 4 and estimate.frames_per_row == 5
    again = client.predict_many(src, RolloutSink.dir(tmp_path / "out"), progress=False)
    assert (again.ok, again.skipped) == (0, 3)


def test_resume_respects_a_subclass_that_overrides_iter(tmp_path: Path) -> None:
    from dream.io.sources.dir import DirSource

    write_episode_dir(tmp_path / "eps", 3)

    class Brighter(DirSource):
        def __iter__(self):
            for row in super().__iter__():
                yield SourceRow(row.row_id, png_bytes((250, 250, 250)), row.actions_bytes, row.metadata)

    run(frames_from_dir(tmp_path / "eps"), RolloutSink.dir(tmp_path / "out"), TinyEngine(), resume=False)
    (tmp_path / "out" / "videos" / "ep_001.mp4").unlink()  # not finished any more
    engine = TinyEngine(source=Brighter(tmp_path / "eps"))
    result = run(Brighter(tmp_path / "eps"), RolloutSink.dir(tmp_path / "out"), engine)
    assert (result.ok, result.skipped) == (1, 2) and list(engine.calls) == ["ep_001"]  # the subclass's rows


def test_recursive_glob_with_repeated_stems_reports_the_duplicate(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        write_episode_dir(tmp_path / "eps" / sub, 1)
    src = frames_from_dir(tmp_path / "eps", frame_glob="*/*.png", actions_glob="*/*.npy")
    assert src.rows_hint == 2
    result = run(src, RolloutSink.dir(tmp_path / "out"), TinyEngine())
    assert result.ok == 1 and "duplicate row id 'ep_000'" in str(result.failures[0].error)
