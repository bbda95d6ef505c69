"""Smaller findings of the shared-service review: file modes, counters, docs, key handling."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from dream.server import commands
from tests.server.conftest import predict_files


def test_a_new_sqlite_ledger_is_readable_by_its_owner_only(tmp_path) -> None:
    from dream.server.services.db import Database

    path = tmp_path / "ledger.sqlite3"
    Database(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_concurrency_cap_429s_are_counted_like_rate_limit_429s(make_client) -> None:
    h = make_client(max_concurrent_rollouts=1)
    key = h.key()
    principal = h.services.ledger.authenticate(key)
    before = h.services.metrics.rate_limited._value.get()
    with h.services.limiter.rollout_slot(principal.limiter_key):
        r = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))
    assert r.status_code == 429
    assert h.services.metrics.rate_limited._value.get() == before + 1
    assert "dream_rate_limited_total 1.0" in h.client.get("/metrics").text


def test_request_rate_429s_are_counted_once(make_client) -> None:
    h = make_client(rate_limit_rps=0.001, rate_limit_burst=1)
    key = h.key()
    codes = [h.client.get("/v1/billing/balance", headers=h.auth(key)).status_code for _ in range(3)]
    assert codes == [200, 429, 429]
    assert h.services.metrics.rate_limited._value.get() == 2


def test_openapi_documents_the_top_up_bounds(make_client) -> None:
    h = make_client()
    schema = h.client.get("/openapi.json").json()["components"]["schemas"]["TopupRequest"]["properties"]["amount_cents"]
    assert schema["minimum"] == 500 and schema["maximum"] == 1_000_000
    schemas = h.client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["Body_predict_batch_v1_predict_batch_post"]["properties"]["actions"]["minItems"] == 1


def test_keys_revoke_reads_the_key_from_stdin(tmp_path, capsys, monkeypatch) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    assert commands.main(["keys", "create", "--customer", "acme", "--db", db]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    monkeypatch.setattr("sys.stdin", io.StringIO(key + "\n"))
    assert commands.main(["keys", "revoke", "-", "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.startswith("revoked key_") and key not in out
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert commands.main(["keys", "revoke", "-", "--db", db]) == 2
    assert capsys.readouterr().err.strip() == "error: keys revoke -: no key on stdin"
    assert commands.main(["keys", "revoke", key[:12], "--db", db]) == 0  # the listed prefix works too


NESTED = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_params_are_a_422_not_a_500(make_client) -> None:
    h = make_client()
    key = h.key()
    files = {"start_frame": predict_files()["frame"], "actions": predict_files()["actions"]}
    r = h.client.post("/v1/rollouts", data={"params": NESTED}, files=files, headers=h.auth(key))
    assert r.status_code == 422 and "nests arrays or objects too deeply" in r.json()["detail"]
    r = h.client.post("/v1/billing/topup", content='{"amount_cents": ' + NESTED + "}",
                      headers={**h.auth(key), "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500


def _session(h, key: str) -> str:
    from tests.server.conftest import frame_array, png

    r = h.client.post("/v1/sessions", data={"model": "tiny-16"},
                      files={"initial_frame": ("f.png", png(frame_array(16)), "image/png")}, headers=h.auth(key))
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_websocket_messages_get_the_same_limits_and_a_specific_error(make_client) -> None:
    import json

    from tests.server.conftest import actions_array

    h = make_client(max_actions_T=6)
    key = h.key()
    sid = _session(h, key)
    with h.client.websocket_connect(f"/v1/sessions/{sid}/stream", headers=h.auth(key)) as ws:
        assert ws.receive_json()["type"] == "session_started"
        ws.send_text(NESTED)
        err = ws.receive_json()
        assert err["type"] == "error" and err["error"]["code"] == "bad_message"
        assert "too deeply" in err["error"]["message"]
        ws.send_text(json.dumps({"type": "submit_actions", "actions": actions_array(7).tolist()}))
        err = ws.receive_json()
        assert err["type"] == "error" and "T=7" in err["error"]["message"] and "at most 6" in err["error"]["message"]
        ws.send_text(json.dumps({"type": "ping"}))  # the socket is still open and serving
        assert ws.receive_json()["type"] == "pong"


def test_a_websocket_message_over_the_limit_is_refused_before_it_is_parsed(make_client, monkeypatch) -> None:
    from dream.server.routes import sessions as session_routes

    parsed: list[int] = []
    real_parse = session_routes.parse_message
    monkeypatch.setattr(session_routes, "parse_message", lambda raw: (parsed.append(len(raw)), real_parse(raw))[1])
    h = make_client()
    key = h.key()
    sid = _session(h, key)
    limit = h.services.settings.max_ws_message_bytes
    big = '{"type": "submit_actions", "actions": [' + ", ".join(["[1.5, 2.5]"] * (limit // 12 + 1000)) + "]}"
    assert len(big) > limit
    with h.client.websocket_connect(f"/v1/sessions/{sid}/stream", headers=h.auth(key)) as ws:
        assert ws.receive_json()["type"] == "session_started"
        ws.send_text(big)
        err = ws.receive_json()
        assert err["type"] == "error" and err["error"]["code"] == "message_too_large"
        assert f"this message is {len(big)} bytes" in err["error"]["message"] and str(limit) in err["error"]["message"]
        ws.send_text('{"type": "ping"}')  # the socket stays open
        assert ws.receive_json()["type"] == "pong"
    assert parsed == [len('{"type": "ping"}')]  # the big one never reached the JSON parser


def test_the_websocket_protocol_refuses_a_message_over_twice_the_limit_before_reading_it(live_server) -> None:
    import httpx
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from tests.server.conftest import frame_array, png

    key = live_server.keys["rich"]
    r = httpx.post(f"{live_server.url}/v1/sessions", data={"model": "tiny-16"}, headers={"Authorization": f"Bearer {key}"},
                   files={"initial_frame": ("f.png", png(frame_array(16)), "image/png")}, timeout=30)
    assert r.status_code == 200, r.text
    with connect(r.json()["ws_url"], additional_headers=[("Authorization", f"Bearer {key}")], compression=None) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "session_started"
        with pytest.raises(ConnectionClosed) as closed:
            ws.send("[" + "1," * (5 * 1024 * 1024) + "1]")  # 10 MiB: over 2 x the 4 MiB default
            ws.recv(timeout=30)
    # Closed by the server (before: answered with an error message after parsing). The close
    # frame (1009: message too big) may not reach a client that is still sending: the server
    # drops the connection without reading the rest, which can reset it first.
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009


def test_ui_reads_count_against_the_keys_rate_limit(make_client) -> None:
    h = make_client(rate_limit_rps=0.001, rate_limit_burst=3)
    key, other = h.key("acme"), h.key("other")
    codes = [h.client.get(path, headers=h.auth(key)).status_code
             for path in ("/ui/api/summary", "/ui/api/rows", "/v1/billing/balance", "/ui/api/rows")]
    assert codes == [200, 200, 200, 429]  # one bucket for /ui and the API
    r = h.client.get("/ui/api/rows", headers=h.auth(key))
    assert r.status_code == 429 and float(r.headers["retry-after"]) > 0
    assert h.client.get("/ui/api/rows", headers=h.auth(other)).status_code == 200  # per key
    assert h.client.get("/ui/").status_code == 200  # the page itself needs no key


def test_a_failed_async_rollout_does_not_block_a_retry_with_its_key(make_client, monkeypatch) -> None:
    import json

    h = make_client()
    key = h.key(credits_mils=100)
    files = predict_files()
    send = {"start_frame": files["frame"], "actions": files["actions"]}
    hdr = {**h.auth(key), "Idempotency-Key": "job-1"}
    params = {"params": json.dumps({"model": "tiny-16", "mode": "async"})}
    original = h.services.batcher._run

    def crash(items):  # as if the server restarted mid-rollout
        raise RuntimeError("server went away")

    monkeypatch.setattr(h.services.batcher, "_run", crash)
    first = h.client.post("/v1/rollouts", data=params, files=send, headers=hdr).json()
    h.client.portal.call(h.services.rollouts.drain)
    assert h.client.get(f"/v1/rollouts/{first['id']}", headers=h.auth(key)).json()["status"] == "failed"
    monkeypatch.setattr(h.services.batcher, "_run", original)
    again = h.client.post("/v1/rollouts", data=params, files=send, headers=hdr)
    assert again.status_code == 202 and again.json()["id"] != first["id"]
    h.client.portal.call(h.services.rollouts.drain)
    done = h.client.get(f"/v1/rollouts/{again.json()['id']}", headers=h.auth(key)).json()
    assert done["status"] == "succeeded"
    replay = h.client.post("/v1/rollouts", data=params, files=send, headers=hdr).json()
    assert replay["id"] == done["id"]  # a succeeded job is still replayed
    assert h.client.get("/v1/billing/balance", headers=h.auth(key)).json()["balance_mils"] == 95


def test_metrics_can_require_a_token(make_client) -> None:
    h = make_client(metrics_token="scrape-me")
    assert h.client.get("/metrics").status_code == 401
    assert h.client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = h.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert r.status_code == 200 and "dream_charged_mils" in r.text
    assert make_client().client.get("/metrics").status_code == 200  # no token set: open, as before


def _records(h) -> list[dict]:
    from sqlalchemy import select

    from dream.server.services.db import idempotency_records

    with h.services.db.begin() as conn:
        return [dict(r) for r in conn.execute(select(idempotency_records)).mappings()]


def test_idempotent_result_bodies_live_in_the_video_store_not_the_database(make_client) -> None:
    h = make_client()
    key = h.key()
    hdr = {**h.auth(key), "Idempotency-Key": "once"}
    first = h.client.post("/v1/predict", files=predict_files(), headers=hdr)
    (row,) = [r for r in _records(h) if r["key"] == "once"]
    assert row["state"] == "done" and not row["body"] and len(row["meta"]) < 2000
    assert list(h.services.videos.directory.glob("res_*.bin"))
    again = h.client.post("/v1/predict", files=predict_files(), headers=hdr)
    assert again.headers["x-dreamengine-idempotent-replay"] == "true" and again.content == first.content


def test_expired_records_and_bodies_are_pruned_while_running(make_client) -> None:
    import time

    h = make_client(implicit_idempotency_s=0.01)
    key = h.key()
    assert h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key)).status_code == 200
    assert len(_records(h)) == 1
    time.sleep(0.05)
    h.services.leases.beat()  # what the heartbeat thread does every lease_s / 3
    assert _records(h) == []
    h.services.videos.result_retain_s = 0.0
    h.services.leases.beat()
    assert list(h.services.videos.directory.glob("res_*.bin")) == []


def test_a_record_whose_body_is_gone_is_run_again_uncharged(make_client) -> None:
    h = make_client()
    key = h.key(credits_mils=100)
    hdr = {**h.auth(key), "Idempotency-Key": "lost"}
    first = h.client.post("/v1/predict", files=predict_files(), headers=hdr)
    for p in h.services.videos.directory.glob("res_*.bin"):
        p.unlink()
    again = h.client.post("/v1/predict", files=predict_files(), headers=hdr)
    assert again.status_code == 200 and again.headers["x-dreamengine-idempotent-replay"] == "true"
    assert again.content == first.content  # the engine is deterministic: the same bytes
    assert again.headers["x-dreamengine-rollout-id"] == first.headers["x-dreamengine-rollout-id"]
    assert h.client.get("/v1/billing/balance", headers=h.auth(key)).json()["balance_mils"] == 95  # charged once
    assert list(h.services.videos.directory.glob("res_*.bin"))  # kept again: the next replay reads it
    assert 'dream_idempotent_reruns_total{kind="single"} 1.0' in h.client.get("/metrics").text


def test_an_unbilled_async_rollout_holds_one_slot_not_two(make_client) -> None:
    h = make_client(auth=False, max_concurrent_rollouts=1)  # nothing reserved: the job's slot alone marks it
    files = predict_files()
    r = h.client.post("/v1/rollouts", data={"params": json.dumps({"model": "tiny-16", "mode": "async"})},
                      files={"start_frame": files["frame"], "actions": files["actions"]})
    assert r.status_code == 202, r.text
    h.client.portal.call(h.services.rollouts.drain)
    done = h.client.get(f"/v1/rollouts/{r.json()['id']}").json()
    assert done["status"] == "succeeded", done.get("error")
