"""The HTTP API in-process (TestClient): bad inputs, auth, billing, limits, ids, readiness, errors."""

from __future__ import annotations

import json
import logging
import re
import threading

import numpy as np
import pytest
from PIL import Image

from tests.server import fakes, tiny
from tests.server.conftest import actions_array, frame_array, npy, png, predict_files

REQUEST_ID = re.compile(r"^req_[0-9a-f]{32}$")


def _balance(h, key: str) -> int:
    return h.client.get("/v1/billing/balance", headers=h.auth(key)).json()["balance_mils"]


def _kinds(h, key: str) -> list[str]:
    return [t["kind"] for t in h.client.get("/v1/billing/transactions", headers=h.auth(key)).json()["transactions"]]


# --------------------------------------------------------------------------- bad input


def _bomb() -> bytes:
    img = Image.new("1", (8000, 6000))  # 48 M pixels, a few KB compressed
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _truncated_png() -> bytes:
    data = png(frame_array(16, seed=3))
    return data[: len(data) // 2]


def _pickled_npy() -> bytes:
    return npy(np.array([{"a": 1}], dtype=object), allow_pickle=True)


BAD_PREDICT = {
    # name: (files, data, expected status, expected error code)
    "non-image frame": (predict_files(frame=b"GIF89a not really"), {}, 422, "input_validation"),
    "empty frame": (predict_files(frame=b""), {}, 422, "input_validation"),
    "decompression bomb": (predict_files(frame=_bomb()), {}, 422, "input_validation"),
    "pickled npy": (predict_files(actions=_pickled_npy()), {}, 422, "input_validation"),
    "raw pickle": (predict_files(actions=b"\x80\x04\x95 pickle"), {}, 422, "input_validation"),
    "npz instead of npy": (predict_files(actions=b"PK\x03\x04zip"), {}, 422, "input_validation"),
    "1-d actions": (predict_files(actions=npy(np.zeros(8, np.float32))), {}, 422, "input_validation"),
    "3-d actions": (predict_files(actions=npy(np.zeros((2, 4, 2), np.float32))), {}, 422, "input_validation"),
    "wrong action_dim": (predict_files(actions=npy(np.zeros((4, 3), np.float32))), {}, 422, "input_validation"),
    "T = 0": (predict_files(actions=npy(np.zeros((0, 2), np.float32))), {}, 422, "input_validation"),
    "T too long": (predict_files(actions=npy(np.zeros((5000, 2), np.float32))), {}, 422, "input_validation"),
    "NaN action": (predict_files(actions=npy(np.array([[1, np.nan]], np.float32))), {}, 422, "input_validation"),
    "inf action": (predict_files(actions=npy(np.array([[1, np.inf]], np.float32))), {}, 422, "input_validation"),
    "string actions": (predict_files(actions=npy(np.array([["a", "b"]]))), {}, 422, "input_validation"),
    "negative num_steps": (predict_files(), {"num_steps": "-3"}, 422, "input_validation"),
    "huge num_steps": (predict_files(), {"num_steps": "100000"}, 422, "input_validation"),
    "fractional num_steps": (predict_files(), {"num_steps": "2.5"}, 422, "input_validation"),
    "guidance NaN": (predict_files(), {"guidance": "nan"}, 422, "input_validation"),
    "guidance inf": (predict_files(), {"guidance": "inf"}, 422, "input_validation"),
    "seed not a number": (predict_files(), {"seed": "abc"}, 422, "input_validation"),
    "negative seed": (predict_files(), {"seed": "-1"}, 422, "input_validation"),
    "unknown model": (predict_files(), {"model": "no-such-model"}, 422, "model_not_found"),
    "missing actions part": ({"frame": predict_files()["frame"]}, {}, 422, "request_validation"),
    "wrong part names": (
        {"image": predict_files()["frame"], "acts": predict_files()["actions"]}, {}, 422, "request_validation",
    ),
}


def test_every_bad_input_gets_a_clear_4xx_and_costs_nothing(make_client) -> None:
    h = make_client()
    key = h.key(credits_mils=1000)
    tiny.TinyRunner.calls.clear()
    for name, (files, data, status, code) in BAD_PREDICT.items():
        r = h.client.post("/v1/predict", files=files, data=data, headers=h.auth(key))
        assert r.status_code == status, (name, r.text)
        assert r.headers["x-dreamengine-error-code"] == code, name
        assert REQUEST_ID.match(r.headers["x-dreamengine-request-id"]), name
        detail = r.json()["detail"]
        assert detail, name
    assert tiny.TinyRunner.calls == []  # no engine work for any of them
    assert _balance(h, key) == 1000 and _kinds(h, key) == ["credit"]


def test_a_truncated_frame_is_decoded_after_the_reservation_then_refunded(make_client) -> None:
    # Its header is fine, so only decoding finds the damage; decoding waits for the
    # reservation (no pixels for callers without credit), and the refund undoes it.
    h = make_client()
    key = h.key(credits_mils=1000)
    tiny.TinyRunner.calls.clear()
    r = h.client.post("/v1/predict", files=predict_files(frame=_truncated_png()), headers=h.auth(key))
    assert r.status_code == 422 and "truncated or corrupt" in r.json()["detail"]
    assert tiny.TinyRunner.calls == []
    assert _balance(h, key) == 1000 and _kinds(h, key) == ["refund", "debit", "credit"]


def test_messages_name_the_offending_value(make_client) -> None:
    h = make_client()
    key = h.key()
    r = h.client.post("/v1/predict", files=predict_files(actions=npy(np.zeros((4, 3), np.float32))), headers=h.auth(key))
    assert r.json()["detail"] == "actions action_dim mismatch: model expects 2, got array with shape (4, 3)"
    r = h.client.post("/v1/predict", files=predict_files(), data={"guidance": "nan"}, headers=h.auth(key))
    assert "guidance must be a finite number" in r.json()["detail"]


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA", "I;16", "CMYK-jpeg", "jpeg", "big-jpeg"])
def test_frames_of_any_mode_or_format_are_accepted_and_converted(make_client, mode: str) -> None:
    h = make_client()
    key = h.key()
    arr = frame_array(16)
    if mode == "jpeg":
        data = png(arr, fmt="JPEG")
    elif mode == "big-jpeg":
        data = png(np.asarray(Image.fromarray(arr).resize((64, 40))), fmt="JPEG")  # other size: scaled + cropped
    elif mode == "CMYK-jpeg":
        data = png(arr, mode="CMYK", fmt="JPEG")
    else:
        data = png(arr, mode=mode)
    r = h.client.post("/v1/predict", files=predict_files(frame=data), headers=h.auth(key))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp4" and r.headers["x-dreamengine-frames"] == "5"


def test_malformed_multipart_is_400(make_client) -> None:
    h = make_client()
    key = h.key()
    r = h.client.post(
        "/v1/predict", content=b"--xyz\r\nContent-Disposition: form-data; name=\"frame\"\r\n\r\nabc",
        headers={**h.auth(key), "Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert r.status_code in (400, 422)
    assert REQUEST_ID.match(r.headers["x-dreamengine-request-id"])
    r = h.client.post("/v1/predict", content=b"not multipart", headers={**h.auth(key), "Content-Type": "text/plain"})
    assert r.status_code == 422


def test_chunked_spec_requires_whole_chunks(make_client) -> None:
    h = make_client(specs=["tiny-16", "tiny-16-c4"])
    key = h.key()
    r = h.client.post("/v1/predict", files=predict_files(actions=npy(actions_array(6))), data={"model": "tiny-16-c4"},
                      headers=h.auth(key))
    assert r.status_code == 422 and "not a multiple of the model's chunk_size=4" in r.json()["detail"]
    r = h.client.post("/v1/predict", files=predict_files(actions=npy(actions_array(8))), data={"model": "tiny-16-c4"},
                      headers=h.auth(key))
    assert r.status_code == 200 and r.headers["x-dreamengine-model"] == "tiny-16-c4"


# --------------------------------------------------------------------------- /v1/rollouts


def _rollout(h, key: str, params: dict | str, files: dict | None = None, headers: dict | None = None):
    f = files or predict_files()
    return h.client.post(
        "/v1/rollouts",
        files={"start_frame": f["frame"], "actions": f["actions"]},
        data={"params": params if isinstance(params, str) else json.dumps(params)},
        headers={**h.auth(key), **(headers or {})},
    )


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"model": "nope"}, "model_not_found"),
        ("{not json", "validation"),
        ("[1, 2]", "validation"),
        ({"model": "tiny-16", "mode": "later"}, "validation"),
        ({"model": "tiny-16", "num_steps": -1}, "input_validation"),
        ({"model": "tiny-16", "seed": [1]}, "validation"),
        ({"model": "tiny-16", "mode": "async", "webhook_url": "ftp://x"}, "validation"),
    ],
)
def test_rollouts_never_answer_404_for_bad_params(make_client, params, code) -> None:
    h = make_client()
    r = _rollout(h, h.key(), params)
    assert r.status_code == 422, r.text
    assert r.headers["x-dreamengine-error-code"] == code


@pytest.mark.filterwarnings("ignore:.*has no effect:UserWarning")
def test_rollout_envelope_and_signed_video(make_client) -> None:
    h = make_client()
    key = h.key()
    r = _rollout(h, key, {"model": "tiny-16", "seed": 7, "score": False})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    env = r.json()
    assert list(env)[:14] == ["id", "object", "model", "created", "frames", "resolution", "engine_wall_ms", "psnr_db",
                              "ssim", "lpips", "cost_usd", "video_url", "video_url_expires_at", "seed"]
    assert env["frames"] == 5 and env["resolution"] == [16, 16] and env["seed"] == 7 and env["cost_usd"] == 0.0005
    video = h.client.get(env["video_url"])  # no Authorization header
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    tampered = env["video_url"].replace("sig=", "sig=0")
    assert h.client.get(tampered).status_code == 403
    got = h.client.get(f"/v1/rollouts/{env['id']}", headers=h.auth(key)).json()
    assert got["id"] == env["id"] and got["status"] == "succeeded" and got["video_url"]
    assert h.client.get(f"/v1/rollouts/{env['id']}", headers=h.auth(h.key("other"))).status_code == 404


def test_async_mode_queues_then_polls_and_calls_the_webhook(make_client, monkeypatch) -> None:
    h = make_client(webhook_resolve=lambda host, port: ["93.184.215.14"])  # hooks.example: a public address
    key = h.key(credits_mils=100)
    delivered: list[tuple[str, dict]] = []

    async def deliver(url: str, envelope: dict, *, customer_id: str) -> bool:
        delivered.append((url, envelope))
        return True

    monkeypatch.setattr(h.services.webhooks, "deliver", deliver)
    gate = threading.Event()
    original = h.services.rollouts.run_items
    monkeypatch.setattr(h.services.rollouts, "run_items", lambda items: (gate.wait(10), original(items))[1])
    r = _rollout(h, key, {"model": "tiny-16", "mode": "async", "webhook_url": "https://hooks.example/x"})
    assert r.status_code == 202, r.text
    queued = r.json()
    assert queued["status"] in ("queued", "running") and queued["video_url"] == "" and queued["frames"] == 0
    assert _balance(h, key) == 95  # reserved up front (402 would have come now)
    gate.set()
    h.client.portal.call(h.services.rollouts.drain)
    done = h.client.get(f"/v1/rollouts/{queued['id']}", headers=h.auth(key)).json()
    assert done["status"] == "succeeded" and done["frames"] == 5 and done["video_url"]
    assert h.client.get(done["video_url"]).status_code == 200
    assert delivered and delivered[0][0] == "https://hooks.example/x" and delivered[0][1]["status"] == "succeeded"
    assert _balance(h, key) == 95


def test_async_rollout_failure_is_refunded(make_client) -> None:
    h = make_client()
    key = h.key(credits_mils=100)
    bad = npy(np.full((4, 2), tiny.FAIL_VALUE, np.float32))
    r = _rollout(h, key, {"model": "tiny-16", "mode": "async"}, files=predict_files(actions=bad))
    assert r.status_code == 202
    h.client.portal.call(h.services.rollouts.drain)
    done = h.client.get(f"/v1/rollouts/{r.json()['id']}", headers=h.auth(key)).json()
    assert done["status"] == "failed" and "injected engine failure" in done["error"]["message"]
    assert _balance(h, key) == 100 and _kinds(h, key) == ["refund", "debit", "credit"]


# --------------------------------------------------------------------------- auth, 402, 413, limits


def test_auth_missing_invalid_and_revoked(make_client) -> None:
    h = make_client()
    r = h.client.post("/v1/predict", files=predict_files())
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = h.client.post("/v1/predict", files=predict_files(), headers={"Authorization": "Bearer dre_wrong"})
    assert r.status_code == 401
    key = h.key()
    h.services.ledger.revoke_key(key)
    r = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))
    assert r.status_code == 403 and "revoked" in r.json()["detail"]
    # Public endpoints take no key, but a key that is sent must be valid.
    assert h.client.get("/v1/models").status_code == 200
    assert h.client.get("/v1/models", headers={"Authorization": "Bearer dre_wrong"}).status_code == 401


def test_insufficient_credits_is_402_with_mils_before_any_engine_work(make_client) -> None:
    h = make_client()
    key = h.key(credits_mils=4)  # a 4-action rollout costs 5 mils
    tiny.TinyRunner.calls.clear()
    r = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))
    assert r.status_code == 402
    detail = r.json()["detail"]
    assert detail["balance_mils"] == 4 and detail["requested_mils"] == 5 and "insufficient credits" in detail["message"]
    assert tiny.TinyRunner.calls == [] and _balance(h, key) == 4


def test_body_over_the_limit_is_413_with_a_request_id(make_client) -> None:
    h = make_client(max_body_bytes=20_000)
    key = h.key()
    big = npy(actions_array(4000))  # 32 KB
    r = h.client.post("/v1/predict", files=predict_files(actions=big), headers=h.auth(key))
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert REQUEST_ID.match(r.headers["x-dreamengine-request-id"])

    def chunks():
        for _ in range(30):
            yield b"x" * 1000

    r = h.client.post("/v1/predict", content=chunks(), headers={**h.auth(key), "Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413
    assert _kinds(h, key) == ["credit"]


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rate_limit_answers_429_with_retry_after(make_client) -> None:
    clock = FakeClock()
    h = make_client(rate_limit_rps=2, rate_limit_burst=2, clock=clock)
    key = h.key()
    codes = [h.client.get("/v1/billing/balance", headers=h.auth(key)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = h.client.get("/v1/billing/balance", headers=h.auth(key))
    assert r.status_code == 429 and float(r.headers["retry-after"]) == 0.5
    assert r.headers["x-dreamengine-error-code"] == "rate_limit"
    clock.t += 0.5
    assert h.client.get("/v1/billing/balance", headers=h.auth(key)).status_code == 200


def test_concurrent_rollout_cap_answers_429(make_client) -> None:
    h = make_client(max_concurrent_rollouts=1, concurrency_retry_after_s=2.0)
    key = h.key()
    principal = h.services.ledger.authenticate(key)
    with h.services.limiter.rollout_slot(principal.limiter_key):
        r = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key)).status_code == 200
    assert _kinds(h, key) == ["debit", "credit"]


# --------------------------------------------------------------------------- ids, errors, refunds


def test_every_response_carries_a_request_id(make_client) -> None:
    h = make_client()
    responses = [
        h.client.get("/healthz"),
        h.client.get("/nope"),
        h.client.put("/v1/models"),
        h.client.get("/v1/models/nope"),
        h.client.post("/v1/predict", files=predict_files()),
        h.client.get("/metrics"),
    ]
    ids = [r.headers.get("x-dreamengine-request-id", "") for r in responses]
    assert all(REQUEST_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    assert [r.status_code for r in responses] == [200, 404, 405, 404, 401, 200]


def test_engine_failure_is_500_and_refunded(make_client) -> None:
    h = make_client()
    key = h.key(credits_mils=100)
    bad = npy(np.full((4, 2), tiny.FAIL_VALUE, np.float32))
    r = h.client.post("/v1/predict", files=predict_files(actions=bad), headers=h.auth(key))
    assert r.status_code == 500 and "injected engine failure" in r.json()["detail"]
    assert r.headers["x-dreamengine-error-code"] == "engine"
    assert _balance(h, key) == 100 and _kinds(h, key) == ["refund", "debit", "credit"]


def test_unexpected_crash_is_a_bare_500_refunded_with_the_traceback_only_in_the_log(make_client, monkeypatch, caplog) -> None:
    h = make_client()
    key = h.key(credits_mils=100)

    def boom(*args, **kwargs):
        raise ZeroDivisionError("secret internal detail")

    monkeypatch.setattr(h.services.engine, "encode_mp4", boom)
    with caplog.at_level(logging.ERROR, logger="dream.server.http"):
        r = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))
    rid = r.headers["x-dreamengine-request-id"]
    assert r.status_code == 500 and r.json() == {"detail": f"internal server error (request id {rid})"}
    assert "secret internal detail" not in r.text
    assert any("secret internal detail" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)
    assert _balance(h, key) == 100 and _kinds(h, key) == ["refund", "debit", "credit"]


def test_readiness_turns_green_only_after_loading(make_client) -> None:
    tiny.TinyRunner.load_gate = threading.Event()
    try:
        h = make_client(wait_ready=False, warmup_hold_s=0)  # 0: refuse at once while loading
        key = h.key()
        assert h.client.get("/healthz").status_code == 200
        r = h.client.get("/readyz")
        assert r.status_code == 503 and r.json()["models"]["tiny-16"]["loaded"] is False
        r = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))
        assert r.status_code == 503 and "loading" in r.json()["detail"]  # retryable; nothing charged
        tiny.TinyRunner.load_gate.set()
        assert h.services.readiness.wait(30)
        assert h.client.get("/readyz").json()["ready"] is True
        assert h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key)).status_code == 200
        assert _kinds(h, key) == ["debit", "credit"]
    finally:
        tiny.TinyRunner.load_gate = None


def test_requests_during_warm_up_are_held_until_the_model_is_ready(make_client, caplog) -> None:
    # The 0.5.0 client's retries end long before a real model loads: a request that arrives
    # while loading waits for it (bounded) instead of getting 503. /readyz is unchanged.
    tiny.TinyRunner.load_gate = threading.Event()
    try:
        h = make_client(wait_ready=False, warmup_hold_s=60)
        key = h.key()
        assert h.client.get("/readyz").status_code == 503
        answer: dict = {}

        def call() -> None:
            answer["r"] = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))

        with caplog.at_level(logging.INFO, logger="dream.server"):
            worker = threading.Thread(target=call)
            worker.start()
            worker.join(1.0)
            assert worker.is_alive() and "r" not in answer  # held, not refused
            tiny.TinyRunner.load_gate.set()
            worker.join(30)
        assert answer["r"].status_code == 200 and _kinds(h, key) == ["debit", "credit"]
        held = [rec for rec in caplog.records if "holding a request" in rec.getMessage()]
        assert held and all(rec.levelno == logging.INFO for rec in held)
        assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    finally:
        tiny.TinyRunner.load_gate = None


def test_a_hold_that_outlasts_loading_ends_in_a_503_logged_at_info(make_client, caplog) -> None:
    tiny.TinyRunner.load_gate = threading.Event()
    try:
        h = make_client(wait_ready=False, warmup_hold_s=0.2)
        with caplog.at_level(logging.INFO, logger="dream.server"):
            r = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(h.key()))
        assert r.status_code == 503 and "still loading" in r.json()["detail"] and r.headers["retry-after"] == "1"
        assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    finally:
        tiny.TinyRunner.load_gate.set()
        tiny.TinyRunner.load_gate = None


# --------------------------------------------------------------------------- idempotency


def test_same_idempotency_key_runs_and_charges_once(make_client) -> None:
    h = make_client()
    key = h.key(credits_mils=100)
    tiny.TinyRunner.calls.clear()
    hdr = {**h.auth(key), "Idempotency-Key": "row-1"}
    first = h.client.post("/v1/predict", files=predict_files(), headers=hdr)
    again = h.client.post("/v1/predict", files=predict_files(), headers=hdr)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.headers["x-dreamengine-idempotent-replay"] == "true"
    assert again.headers["x-dreamengine-rollout-id"] == first.headers["x-dreamengine-rollout-id"]
    assert len(tiny.TinyRunner.calls) == 1 and _balance(h, key) == 95
    # The /v1/rollouts → /v1/predict fallback reuses the key: the same rollout comes back.
    env = _rollout(h, key, {"model": "tiny-16"}, headers={"Idempotency-Key": "row-1"}).json()
    assert env["id"] == first.headers["x-dreamengine-rollout-id"] and len(tiny.TinyRunner.calls) == 1
    # A key reused for different inputs is refused.
    other = h.client.post("/v1/predict", files=predict_files(actions=npy(actions_array(4, seed=9))), headers=hdr)
    assert other.status_code == 422 and other.headers["x-dreamengine-error-code"] == "idempotency_key_reused"
    assert _kinds(h, key) == ["debit", "credit"]


def test_a_failed_call_can_be_retried_with_its_key(make_client, monkeypatch) -> None:
    h = make_client()
    key = h.key(credits_mils=100)
    hdr = {**h.auth(key), "Idempotency-Key": "k"}
    original = h.services.engine.encode_mp4
    monkeypatch.setattr(h.services.engine, "encode_mp4", lambda *a, **k: 1 / 0)
    assert h.client.post("/v1/predict", files=predict_files(), headers=hdr).status_code == 500
    monkeypatch.setattr(h.services.engine, "encode_mp4", original)
    assert h.client.post("/v1/predict", files=predict_files(), headers=hdr).status_code == 200
    assert _balance(h, key) == 95 and _kinds(h, key) == ["debit", "refund", "debit", "credit"]


def test_keyless_identical_requests_are_deduplicated_for_the_official_client(make_client) -> None:
    h = make_client()
    key = h.key(credits_mils=100)
    tiny.TinyRunner.calls.clear()
    a = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))
    b = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))
    assert a.content == b.content and len(tiny.TinyRunner.calls) == 1 and _balance(h, key) == 95
    off = make_client(implicit_idempotency_s=0)
    key2 = off.key(credits_mils=100)
    for _ in range(2):
        off.client.post("/v1/predict", files=predict_files(), headers=off.auth(key2))
    assert _balance(off, key2) == 90


# --------------------------------------------------------------------------- catalog, batch, info


def test_catalog_and_slugs_with_a_slash(make_client) -> None:
    h = make_client(specs=["tiny-16", "tests/tiny-16"])
    data = h.client.get("/v1/models").json()["data"]
    assert [e["slug"] for e in data] == ["tiny-16", "tests/tiny-16"] and all(e["active"] is True for e in data)
    assert data[0]["spec"]["action_dim"] == 2 and data[0]["spec"]["resolution"] == [16, 16]
    assert h.client.get("/v1/models/tests%2Ftiny-16").json()["slug"] == "tests/tiny-16"
    r = h.client.get("/v1/models/nope")
    assert r.status_code == 404 and r.headers["x-dreamengine-error-code"] == "model_not_found"
    specs = h.client.get("/v1/specs").json()
    assert specs["default_spec"] == "tiny-16" and specs["default_price_usd_per_frame"] == 0.0001


def test_batch_is_a_name_sorted_tar_with_a_batch_total(make_client) -> None:
    import io
    import tarfile

    h = make_client()
    key = h.key(credits_mils=1000)
    files = [("frame", predict_files()["frame"])] + [
        ("actions", (f"actions_{i:03d}.npy", npy(actions_array(4, seed=i)), "application/octet-stream")) for i in range(3)
    ]
    r = h.client.post("/v1/predict/batch", files=files, data={"seed": "0"}, headers=h.auth(key))
    assert r.status_code == 200 and r.headers["x-dreamengine-batch-size"] == "3"
    assert float(r.headers["x-dreamengine-estimated-charge-usd"]) == 0.0015
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
        assert tf.getnames() == ["rollout_000.mp4", "rollout_001.mp4", "rollout_002.mp4"]
    bad = [*files[:2], ("actions", ("a.npy", npy(actions_array(5)), "application/octet-stream"))]
    r = h.client.post("/v1/predict/batch", files=bad, headers=h.auth(key))
    assert r.status_code == 422 and "same length" in r.json()["detail"]
    assert _balance(h, key) == 985


def test_status_metrics_and_transactions(make_client) -> None:
    h = make_client()
    key = h.key()
    h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))
    status = h.client.get("/v1/status").json()
    assert status["ready"] is True and status["latency_24h"]["count"] >= 1 and status["engine_latency_24h"]["p50_ms"] > 0
    assert status["latency_24h"]["window_s"] == 86400
    metrics = h.client.get("/metrics").text
    assert 'dream_rollouts_total{outcome="succeeded",spec="tiny-16"} 1.0' in metrics
    assert 'dream_charged_mils_total{spec="tiny-16"} 5.0' in metrics
    txns = h.client.get("/v1/billing/transactions?limit=1000", headers=h.auth(key)).json()["transactions"]
    assert [t["kind"] for t in txns] == ["debit", "credit"] and txns[0]["amount_mils"] == -5
    assert txns[0]["detail"] == "predict · tiny-16 · 5 frames"
    assert h.client.get("/v1/billing/transactions?limit=0", headers=h.auth(key)).json()["transactions"][0]["kind"] == "debit"


# --------------------------------------------------------------------------- billing


def test_topup_through_a_payment_provider_is_idempotent_and_webhooks_credit_once(make_client) -> None:
    payments = fakes.FakePayments()
    h = make_client(payment_provider=payments)
    key = h.key(credits_mils=0)
    hdr = {**h.auth(key), "Idempotency-Key": "topup-1"}
    a = h.client.post("/v1/billing/topup", json={"amount_cents": 2500}, headers=hdr).json()
    b = h.client.post("/v1/billing/topup", json={"amount_cents": 2500}, headers=hdr).json()
    assert a == b and a["session_id"] == "cs_fake_0" and a["url"].startswith("https://") and len(payments.created) == 1
    assert h.client.post("/v1/billing/topup", json={"amount_cents": 100}, headers=h.auth(key)).status_code == 422
    customer = a["customer_id"]
    event = json.dumps({"id": "evt_1", "type": "paid", "customer_id": customer, "amount_cents": 2500}).encode()
    for _ in range(2):
        r = h.client.post("/v1/billing/webhook", content=event, headers={"x-fake-signature": fakes.sign(event)})
        assert r.status_code == 200
    assert _balance(h, key) == 250_000
    r = h.client.post("/v1/billing/webhook", content=event, headers={"x-fake-signature": "forged"})
    assert r.status_code == 400 and _balance(h, key) == 250_000


def test_topup_without_a_provider_is_503(make_client) -> None:
    h = make_client()
    r = h.client.post("/v1/billing/topup", json={"amount_cents": 2500}, headers=h.auth(h.key()))
    assert r.status_code == 503 and "not configured" in r.json()["detail"]


def test_no_auth_mode_runs_uncharged_and_has_no_ledger(make_client, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="dream.server"):
        h = make_client(auth=False)
    assert any("AUTH IS OFF" in rec.getMessage() for rec in caplog.records)
    r = h.client.post("/v1/predict", files=predict_files())
    assert r.status_code == 200 and r.headers["x-dreamengine-customer-id"] == "anonymous"
    assert h.client.get("/v1/billing/balance").status_code == 503


# --------------------------------------------------------------------------- sessions


def _open_session(h, key: str, model: str = "tiny-16") -> dict:
    r = h.client.post(
        "/v1/sessions", data={"model": model, "seed": "0"},
        files={"initial_frame": ("initial_frame.png", png(frame_array(16)), "image/png")}, headers=h.auth(key),
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_session_streams_frames_bills_per_chunk_and_closes(make_client) -> None:
    h = make_client()
    key = h.key(credits_mils=1000)
    env = _open_session(h, key)
    assert env["ws_url"].startswith("ws://") and env["state"] == "open"
    with h.client.websocket_connect(f"/v1/sessions/{env['id']}/stream", headers=h.auth(key)) as ws:
        assert ws.receive_json()["type"] == "session_started"
        ws.send_text(json.dumps({"type": "submit_actions", "actions": actions_array(10).tolist()}))
        kinds = []
        while True:
            msg = ws.receive_json()
            kinds.append(msg["type"])
            if msg["type"] == "rollout_complete":
                break
        assert kinds.count("frame") == 11 and msg["frames_streamed_total"] == 11  # first rollout echoes frame 0
        assert kinds.count("billing") == 2  # two chunks of 8 + 2 actions
        ws.send_text(json.dumps({"type": "submit_actions", "actions": [[1.0, 2.0, 3.0]]}))
        err = ws.receive_json()
        assert err["type"] == "error" and err["error"]["code"] == "input_validation"
        ws.send_text(json.dumps({"type": "ping"}))
        assert ws.receive_json()["type"] == "pong"
        ws.send_text(json.dumps({"type": "control", "command": "stop"}))
    assert _balance(h, key) == 1000 - 11
    final = h.client.delete(f"/v1/sessions/{env['id']}", headers=h.auth(key)).json()
    assert final["state"] == "closed" and final["frames_streamed"] == 11
    assert h.client.delete(f"/v1/sessions/{env['id']}", headers=h.auth(key)).status_code == 404


def test_opening_a_session_twice_with_one_key_gives_one_session(make_client) -> None:
    h = make_client()
    key = h.key()
    files = {"initial_frame": ("initial_frame.png", png(frame_array(16)), "image/png")}
    hdr = {**h.auth(key), "Idempotency-Key": "open-1"}
    a = h.client.post("/v1/sessions", data={"model": "tiny-16"}, files=files, headers=hdr).json()
    b = h.client.post("/v1/sessions", data={"model": "tiny-16"}, files=files, headers=hdr).json()
    assert a["id"] == b["id"] and len(h.services.sessions._sessions) == 1


def test_session_stops_with_an_error_when_credit_runs_out(make_client) -> None:
    h = make_client()
    key = h.key(credits_mils=12)  # the first chunk (9 frames) fits, the second does not
    env = _open_session(h, key)
    with h.client.websocket_connect(f"/v1/sessions/{env['id']}/stream", headers=h.auth(key)) as ws:
        ws.receive_json()
        ws.send_text(json.dumps({"type": "submit_actions", "actions": actions_array(16).tolist()}))
        frames = 0
        while True:
            msg = ws.receive_json()
            if msg["type"] == "frame":
                frames += 1
            if msg["type"] == "error":
                break
    assert frames == 9 and msg["error"]["code"] == "insufficient_credits" and msg["error"]["requested_mils"] == 8
    assert _balance(h, key) == 3


def test_session_websocket_needs_the_owners_key(make_client) -> None:
    from starlette.websockets import WebSocketDisconnect

    h = make_client()
    env = _open_session(h, h.key())
    with pytest.raises(WebSocketDisconnect), h.client.websocket_connect(
        f"/v1/sessions/{env['id']}/stream", headers=h.auth(h.key("mallory"))
    ) as ws:
        ws.receive_json()
    assert _open_session.__name__  # the session itself is untouched
    r = h.client.post(
        "/v1/sessions", data={"model": "nope"}, files={"initial_frame": ("f.png", png(frame_array(16)), "image/png")},
        headers=h.auth(h.key()),
    )
    assert r.status_code == 422 and r.headers["x-dreamengine-error-code"] == "model_not_found"
