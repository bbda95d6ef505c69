"""Replicas on one ledger: leases instead of start-up crash recovery, the in-flight lock in the database.

In-process: two servers on one SQLite file, one "dies" (its lease lapses). Processes:
two real ``dream serve`` replicas on one PostgreSQL server (started by the test: initdb
+ pg_ctl on a loopback port) and on one SQLite file; one is killed with SIGKILL in the
middle of a request, the other keeps serving, the retry with the same Idempotency-Key
runs once and is charged once, and no credits stay held once the lease expires.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.server import postgres
from tests.server.conftest import REPO, actions_array, frame_array, npy, png, predict_files


def _held(db) -> list[dict]:
    from dream.server.services.db import reservations

    with db.begin() as conn:
        return [dict(r) for r in conn.execute(select(reservations).where(reservations.c.state == "held")).mappings()]


def _expire(services) -> None:
    """As if this server froze long ago: its heartbeat is older than any lease."""
    from dream.server.services.db import instances

    services.leases._stop.set()
    with services.db.begin() as conn:
        conn.execute(update(instances).where(instances.c.id == services.leases.id).values(heartbeat=1.0))


def test_a_new_replica_leaves_a_live_replicas_holds_alone_and_releases_a_dead_ones(make_client, tmp_path) -> None:
    db_url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    a = make_client(db_url=db_url)
    key = a.key(credits_mils=100)
    cid = a.services.ledger.authenticate(key).customer_id
    rsv = a.services.ledger.reserve(cid, 40, request_id="req_inflight", detail="predict")  # a's request, running
    assert a.services.idempotency.begin(cid, "k1", "fp", 60.0) == ("claimed", None)

    b = make_client(db_url=db_url)  # starting must not touch a's holds: a is alive
    assert [r["id"] for r in _held(b.services.db)] == [rsv.id]
    assert b.services.idempotency.begin(cid, "k1", "fp", 60.0) == ("pending", None)
    assert b.services.leases.sweep() == {"reservations_refunded": 0, "idempotency_released": 0, "rollouts_failed": 0}

    _expire(a.services)  # a is killed: its lease lapses
    assert b.services.idempotency.begin(cid, "k1", "fp", 60.0) == ("claimed", None)  # the retry may run now
    assert b.services.leases.sweep()["reservations_refunded"] == 1
    assert _held(b.services.db) == [] and b.services.ledger.audit(cid)["balance_mils"] == 100


def test_a_dead_replicas_async_rollout_fails_and_is_refunded(make_client, tmp_path) -> None:
    import json

    db_url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    a = make_client(db_url=db_url)
    key = a.key(credits_mils=100)
    gate = threading.Event()
    original = a.services.batcher._run
    a.services.batcher._run = lambda items: (gate.wait(30), original(items))[1]
    files = predict_files()
    r = a.client.post("/v1/rollouts", data={"params": json.dumps({"model": "tiny-16", "mode": "async"})},
                      files={"start_frame": files["frame"], "actions": files["actions"]}, headers=a.auth(key))
    assert r.status_code == 202
    b = make_client(db_url=db_url)
    assert b.client.get(f"/v1/rollouts/{r.json()['id']}", headers=b.auth(key)).json()["status"] in ("queued", "running")
    _expire(a.services)
    assert b.services.leases.sweep()["rollouts_failed"] == 1
    got = b.client.get(f"/v1/rollouts/{r.json()['id']}", headers=b.auth(key)).json()
    assert got["status"] == "failed" and "refunded" in got["error"]["message"]
    assert _held(b.services.db) == []
    gate.set()


# --------------------------------------------------------------------------- real processes


@contextlib.contextmanager
def _ledger_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    why = postgres.missing()
    if why:
        if os.environ.get("DREAM_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here: {why}")
        pytest.skip(why)
    with postgres.postgres_server() as url:
        yield url


def _serve(url: str, tmp_path: Path, name: str):
    from dream.server.process import ServerProcess

    env = {k: v for k, v in os.environ.items() if not k.startswith("DREAM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["DREAM_TEST_CHUNK_DELAY_S"] = "0.1"
    args = ["--spec", "tiny-16", "--db", url, "--lease-seconds", "2", "--stream-chunk-frames", "2", "--rate-limit", "0",
            "--threads", "1", "--url-secret", "shared", "--data-dir", str(tmp_path / f"data-{name}")]
    return ServerProcess(args, module="tests.server.serve_main", cwd=REPO, env=env, log_path=tmp_path / f"{name}.log")


def _batch_files(T: int) -> list:
    return [("frame", ("f.png", png(frame_array(16)), "image/png")),
            ("actions", ("a.npy", npy(actions_array(T)), "application/octet-stream"))]


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_two_replicas_survive_a_kill_mid_request(backend: str, tmp_path: Path) -> None:
    import httpx

    from dream.server.services.db import Database
    from dream.server.services.ledger import Ledger

    with _ledger_url(backend, tmp_path) as url:
        ledger = Ledger(Database(url))
        key = ledger.create_key("acme", credits_mils=10_000).key
        other = ledger.create_key("other", credits_mils=10_000).key
        cid = ledger.authenticate(key).customer_id
        a, b = _serve(url, tmp_path, "a"), _serve(url, tmp_path, "b")
        a.start(timeout_s=120)
        try:
            b.start(timeout_s=120)
            auth = {"Authorization": f"Bearer {key}", "Idempotency-Key": "job-42"}
            doomed: list[object] = []

            def call_a() -> None:
                try:
                    doomed.append(httpx.post(f"{a.url}/v1/predict/batch", files=_batch_files(20), headers=auth, timeout=60))
                except httpx.HTTPError as exc:
                    doomed.append(exc)

            t = threading.Thread(target=call_a)
            t.start()
            deadline = time.monotonic() + 60
            while not _held(ledger.db) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _held(ledger.db), "replica a never reserved"
            os.kill(a.pid, signal.SIGKILL)  # mid-request: reserved, engine running
            t.join(30)
            assert isinstance(doomed[0], httpx.HTTPError)

            # b keeps serving other customers meanwhile
            r = httpx.post(f"{b.url}/v1/predict", files=predict_files(), headers={"Authorization": f"Bearer {other}"},
                           timeout=60)
            assert r.status_code == 200, r.text

            # the retry with the key: 409 while a's lease may still hold, then it runs, once
            statuses = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                r = httpx.post(f"{b.url}/v1/predict/batch", files=_batch_files(20), headers=auth, timeout=60)
                statuses.append(r.status_code)
                if r.status_code != 409:
                    break
                time.sleep(0.3)
            assert statuses[-1] == 200 and set(statuses[:-1]) <= {409}, statuses
            assert r.headers["x-dreamengine-idempotent-replay"] == "false"
            replay = httpx.post(f"{b.url}/v1/predict/batch", files=_batch_files(20), headers=auth, timeout=60)
            assert replay.headers["x-dreamengine-idempotent-replay"] == "true" and replay.content == r.content

            deadline = time.monotonic() + 30
            while _held(ledger.db) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _held(ledger.db) == []  # a's reservation was refunded once its lease expired
            audit = ledger.audit(cid)
            assert audit["balance_mils"] == 10_000 - 21  # charged once: 21 frames at 1 mil
            kinds = sorted(t["kind"] for t in ledger.transactions(cid))
            assert kinds == ["credit", "debit", "debit", "refund"]
        finally:
            a.stop()
            b.stop()
            ledger.db.dispose()

