"""Replicas on one ledger: leases instead of start-up crash recovery, the in-flight lock in the database.

In-process: two servers on one SQLite file, one "dies" (its lease lapses); a replica whose
settings contradict a live one's refuses to start. Processes: two real ``dream serve``
replicas on one PostgreSQL server (started by the test: initdb + pg_ctl on a loopback
port) and on one SQLite file, each with its own --data-dir:

* one is killed with SIGKILL in the middle of a request, the other keeps serving, the
  retry with the same Idempotency-Key runs once and is charged once, and no credits or
  rollout slots stay held once the lease expires;
* a call answered by one and sent again to the other is charged once (a replay);
* a key's rate and concurrency limits hold across both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.server import postgres
from tests.server.conftest import REPO, actions_array, frame_array, npy, png, predict_files


def _slots(db) -> list[dict]:
    from dream.server.services.db import rollout_slots

    with db.begin() as conn:
        return [dict(r) for r in conn.execute(select(rollout_slots)).mappings()]


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
    shared = str(tmp_path / "shared-data")
    a = make_client(db_url=db_url, data_dir=shared)
    key = a.key(credits_mils=100)
    cid = a.services.ledger.authenticate(key).customer_id
    rsv = a.services.ledger.reserve(cid, 40, request_id="req_inflight", detail="predict")  # a's request, running
    assert a.services.idempotency.begin(cid, "k1", "fp", 60.0) == ("claimed", None)

    slot = a.services.limiter.acquire(a.services.ledger.authenticate(key).limiter_key, 4)  # a rollout slot, held

    b = make_client(db_url=db_url, data_dir=shared)  # starting must not touch a's holds: a is alive
    assert [r["id"] for r in _held(b.services.db)] == [rsv.id]
    assert b.services.idempotency.begin(cid, "k1", "fp", 60.0) == ("pending", None)
    assert b.services.leases.sweep() == {"reservations_refunded": 0, "idempotency_released": 0, "rollouts_failed": 0,
                                         "slots_released": 0}
    assert slot and b.services.limiter.active(a.services.ledger.authenticate(key).limiter_key) == 1

    _expire(a.services)  # a is killed: its lease lapses
    assert b.services.idempotency.begin(cid, "k1", "fp", 60.0) == ("claimed", None)  # the retry may run now
    swept = b.services.leases.sweep()
    assert swept["reservations_refunded"] == 1 and swept["slots_released"] == 1
    assert _held(b.services.db) == [] and b.services.ledger.audit(cid)["balance_mils"] == 100
    assert b.services.limiter.active(a.services.ledger.authenticate(key).limiter_key) == 0


def test_a_dead_replicas_async_rollout_fails_and_is_refunded(make_client, tmp_path) -> None:
    import json

    db_url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    a = make_client(db_url=db_url, data_dir=str(tmp_path / "shared-data"))
    key = a.key(credits_mils=100)
    gate = threading.Event()
    original = a.services.batcher._run
    a.services.batcher._run = lambda items: (gate.wait(30), original(items))[1]
    files = predict_files()
    r = a.client.post("/v1/rollouts", data={"params": json.dumps({"model": "tiny-16", "mode": "async"})},
                      files={"start_frame": files["frame"], "actions": files["actions"]}, headers=a.auth(key))
    assert r.status_code == 202
    b = make_client(db_url=db_url, data_dir=str(tmp_path / "shared-data"))
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


def _serve(url: str, tmp_path: Path, name: str, *extra: str):
    """A `dream serve` replica with its own --data-dir, so its own --public-url (its address)."""
    from dream.server.process import ServerProcess, free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("DREAM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["DREAM_TEST_CHUNK_DELAY_S"] = "0.1"
    port = free_port()
    args = ["--spec", "tiny-16", "--db", url, "--lease-seconds", "2", "--stream-chunk-frames", "2", "--rate-limit", "0",
            "--threads", "1", "--url-secret", "shared", "--data-dir", str(tmp_path / f"data-{name}"),
            "--public-url", f"http://127.0.0.1:{port}", *extra]
    return ServerProcess(args, port=port, module="tests.server.serve_main", cwd=REPO, env=env,
                         log_path=tmp_path / f"{name}.log")


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
            assert _slots(ledger.db) == []  # and a's rollout slot given back
            audit = ledger.audit(cid)
            assert audit["balance_mils"] == 10_000 - 21  # charged once: 21 frames at 1 mil
            kinds = sorted(t["kind"] for t in ledger.transactions(cid))
            assert kinds == ["credit", "debit", "debit", "refund"]
        finally:
            a.stop()
            b.stop()
            ledger.db.dispose()



# --------------------------------------------------------------------------- settings replicas must share


def test_a_replica_that_cannot_honour_the_others_urls_refuses_to_start(make_client, tmp_path) -> None:
    import subprocess
    import sys

    from dream.server.services.leases import ReplicaConfigError

    db_url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    shared = str(tmp_path / "shared-data")
    make_client(db_url=db_url, data_dir=shared)  # a live replica (url secret "s3cret")
    with pytest.raises(ReplicaConfigError, match=r"signs video URLs and webhooks with another --url-secret"):
        make_client(db_url=db_url, data_dir=shared, url_secret="other")
    with pytest.raises(ReplicaConfigError, match=r"another --url-secret \(this one has none"):
        make_client(db_url=db_url, data_dir=shared, url_secret=None)
    with pytest.raises(ReplicaConfigError, match=r"keeps its videos in another --data-dir; .* its own --public-url"):
        make_client(db_url=db_url, data_dir=str(tmp_path / "own-data"))
    make_client(db_url=db_url, data_dir=shared)  # the same settings: joins

    # `dream serve` says it in one line, before listening.
    done = subprocess.run(
        [sys.executable, "-m", "dream.server.commands", "serve", "--spec", "pusht-96", "--db", db_url,
         "--data-dir", shared, "--url-secret", "x", "--port", "9"], capture_output=True, text=True, timeout=120,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert errors[0].startswith("error: cannot join the replicas on this ledger: replica srv_") and "--url-secret" in errors[0]
    assert "Traceback" not in done.stderr


def test_replicas_with_their_own_data_dirs_and_public_urls_join(make_client, tmp_path) -> None:
    db_url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    make_client(db_url=db_url, data_dir=str(tmp_path / "a"), public_base_url="http://a.internal:8000")
    make_client(db_url=db_url, data_dir=str(tmp_path / "b"), public_base_url="http://b.internal:8000")


# --------------------------------------------------------------------------- two live replicas


@dataclass
class Pair:
    a: Any
    b: Any
    ledger: Any
    keys: dict[str, str]


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def pair(request, tmp_path_factory) -> Iterator[Pair]:
    """Two `dream serve` processes on one ledger, each with its own --data-dir and --public-url."""
    from dream.server.services.db import Database
    from dream.server.services.ledger import KeyLimits, Ledger

    tmp = tmp_path_factory.mktemp(f"pair-{request.param}")
    with _ledger_url(request.param, tmp) as url:
        ledger = Ledger(Database(url))
        keys = {
            "idem": ledger.create_key("idem", credits_mils=10_000).key,
            "rate": ledger.create_key("rate", credits_mils=10_000, limits=KeyLimits(rate_limit_rps=0.01, burst=3)).key,
            "conc": ledger.create_key("conc", credits_mils=10_000, limits=KeyLimits(max_concurrent=1)).key,
        }
        a, b = _serve(url, tmp, "a"), _serve(url, tmp, "b")
        a.start(timeout_s=120)
        try:
            b.start(timeout_s=120)
            yield Pair(a, b, ledger, keys)
        finally:
            a.stop()
            b.stop()
            ledger.db.dispose()


def _post(server, path: str, key: str, files, idem: str | None = None, data: dict | None = None):
    import httpx

    headers = {"Authorization": f"Bearer {key}", **({"Idempotency-Key": idem} if idem else {})}
    return httpx.post(f"{server.url}{path}", files=files, headers=headers, data=data, timeout=60)


def test_a_call_sent_to_both_replicas_is_charged_once(pair: Pair) -> None:
    import json

    import httpx

    key = pair.keys["idem"]
    cid = pair.ledger.authenticate(key).customer_id
    calls = [  # (path, files, data, idempotency key): raw mp4, batch tar, JSON envelope, un-keyed (a blind retry)
        ("/v1/predict", lambda: predict_files(actions=npy(actions_array(seed=1))), None, "k-predict"),
        ("/v1/predict/batch", lambda: _batch_files(6), None, "k-batch"),
        ("/v1/rollouts", lambda: {"start_frame": predict_files()["frame"], "actions": predict_files()["actions"]},
         {"params": json.dumps({"model": "tiny-16"})}, "k-rollout"),
        ("/v1/predict", lambda: predict_files(actions=npy(actions_array(seed=2))), None, None),
    ]
    for path, files, data, idem in calls:
        first = _post(pair.a, path, key, files(), idem, data)
        again = _post(pair.b, path, key, files(), idem, data)
        assert first.status_code == again.status_code == 200, (path, first.text, again.text)
        assert first.headers["x-dreamengine-idempotent-replay"] == "false"
        assert again.headers["x-dreamengine-idempotent-replay"] == "true", path
        if path == "/v1/rollouts":
            polled = httpx.get(f"{pair.b.url}/v1/rollouts/{first.json()['id']}", headers={"Authorization": f"Bearer {key}"})
            assert polled.json()["video_url"].startswith(pair.a.url)  # polled on b: the video is a's
            assert httpx.get(polled.json()["video_url"]).status_code == 200
            env_a, env_b = first.json(), again.json()
            assert env_b["id"] == env_a["id"] and env_b["cost_usd"] == env_a["cost_usd"]
            assert env_b["video_url"].startswith(pair.b.url)  # b's own address: b holds the video now
            assert httpx.get(env_b["video_url"]).content == httpx.get(env_a["video_url"]).content
        else:
            assert again.content == first.content, path  # the same bytes: the engine is deterministic
            if path == "/v1/predict":
                assert again.headers["x-dreamengine-rollout-id"] == first.headers["x-dreamengine-rollout-id"]
        third = _post(pair.b, path, key, files(), idem, data)  # b kept the body: a plain replay now
        assert third.headers["x-dreamengine-idempotent-replay"] == "true"
    debits = [t for t in pair.ledger.transactions(cid) if t["kind"] == "debit"]
    assert len(debits) == len(calls)  # one charge per call, whichever replica answered
    audit = pair.ledger.audit(cid)
    assert audit["balance_mils"] == 10_000 - (5 + 7 + 5 + 5) and audit["held_reservations"] == 0


def test_a_keys_rate_limit_is_shared_by_the_replicas(pair: Pair) -> None:
    import httpx

    auth = {"Authorization": f"Bearer {pair.keys['rate']}"}
    codes = [httpx.get(f"{s.url}/v1/billing/balance", headers=auth).status_code for s in (pair.a, pair.b, pair.a)]
    assert codes == [200, 200, 200]  # the burst of 3, spent on both
    for s in (pair.b, pair.a):
        r = httpx.get(f"{s.url}/v1/billing/balance", headers=auth)
        assert r.status_code == 429 and float(r.headers["retry-after"]) > 1  # 0.01/s: a long wait
        assert "0.01 requests/s" in r.json()["detail"]


def test_a_keys_concurrency_cap_is_shared_by_the_replicas(pair: Pair) -> None:
    key = pair.keys["conc"]
    slow: list[Any] = []
    t = threading.Thread(target=lambda: slow.append(_post(pair.a, "/v1/predict/batch", key, _batch_files(20))))
    t.start()  # about a second on a: 10 chunks of 0.1 s
    try:
        deadline = time.monotonic() + 30
        while not _held(pair.ledger.db) and time.monotonic() < deadline:  # slot taken, then credit reserved
            time.sleep(0.02)
        assert _held(pair.ledger.db), "replica a never started the rollout"
        r = _post(pair.b, "/v1/predict", key, predict_files(actions=npy(actions_array(seed=3))))
        assert r.status_code == 429 and "1 rollouts already running for this key (max 1)" in r.json()["detail"]
    finally:
        t.join(60)
    assert slow[0].status_code == 200
    r = _post(pair.b, "/v1/predict", key, predict_files(actions=npy(actions_array(seed=3))))
    assert r.status_code == 200  # the slot came back when a's rollout ended
    assert _slots(pair.ledger.db) == []
