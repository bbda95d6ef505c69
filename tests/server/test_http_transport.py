"""The HTTP transport against scripted responses (httpx.MockTransport): retries, idempotency
keys, error mapping and the /v1/rollouts → /v1/predict fallback. No sleeps: retries wait
through an injected function that only records the delay."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

import dream
from dream._retry import RetryPolicy
from dream.client.http import AsyncHttpTransport, HttpTransport, user_agent
from dream.client.transport import RolloutRequest
from dream.errors import (
    AuthError,
    InputValidationError,
    InsufficientCreditsError,
    ModelNotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from dream.types import ModelSpec
from tests.server.conftest import npy, png

MP4 = b"\x00\x00\x00\x18ftypmp42 fake mp4"
HEADERS = {
    "X-DreamEngine-Request-Id": "req_abc",
    "X-DreamEngine-Engine-Wall-Ms": "12.5",
    "X-DreamEngine-Estimated-Charge-USD": "0.0049",
    "X-DreamEngine-Customer-Id": "cus_1",
}


def _transport(handler, *, api_key: str | None = "dre_k", attempts: int = 3) -> tuple[HttpTransport, list[float]]:
    slept: list[float] = []
    http = httpx.Client(base_url="http://srv", transport=httpx.MockTransport(handler))
    t = HttpTransport(base_url="http://srv", api_key=api_key, retry_policy=RetryPolicy(max_attempts=attempts, jitter=False),
                      http=http, sleep=slept.append)
    return t, slept


def _predict(t: HttpTransport, **kw):
    return t.predict_bytes(frame_bytes=b"png", actions_bytes=b"npy", **kw)


def _spec() -> ModelSpec:
    return ModelSpec.from_dict({"slug": "m1", "active": True, "spec": {"action_dim": 2, "resolution": [16, 16]}})


def _rollout_request(key: str | None = None) -> RolloutRequest:
    return RolloutRequest(spec=_spec(), frame=np.zeros((16, 16, 3), np.uint8), frame_bytes=None,
                          actions=np.zeros((4, 2), np.float32), seed=1, idempotency_key=key)


def test_headers_user_agent_and_bearer() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"data": []})

    t, _ = _transport(handler)
    t.list_models()
    t2, _ = _transport(handler, api_key=None)
    t2.list_models()
    assert seen[0].headers["user-agent"] == user_agent() and user_agent().startswith("dream-engine/")
    assert seen[0].headers["authorization"] == "Bearer dre_k" and "authorization" not in seen[1].headers


def test_one_idempotency_key_per_call_reused_on_every_retry() -> None:
    keys: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        keys.append(req.headers["idempotency-key"])
        if len(keys) < 3:
            return httpx.Response(503, json={"detail": "busy"})
        return httpx.Response(200, content=MP4, headers=HEADERS)

    t, slept = _transport(handler)
    pr = _predict(t)
    assert len(keys) == 3 and len(set(keys)) == 1 and slept == [0.25, 0.5]
    assert (pr.request_id, pr.engine_wall_ms, pr.estimated_charge_usd, pr.customer_id, pr.mp4_bytes) == (
        "req_abc", 12.5, 0.0049, "cus_1", MP4)
    keys.clear()
    _predict(t, idempotency_key="row-7")
    assert set(keys) == {"row-7"}


def test_429_retry_after_is_honoured_then_surfaces() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "0.3", **HEADERS})

    t, slept = _transport(handler)
    with pytest.raises(RateLimitError) as ei:
        t.billing_balance()
    assert slept == [0.3, 0.3] and ei.value.retry_after == 0.3 and ei.value.attempts_made == 3
    assert ei.value.request_id == "req_abc" and "slow down" in str(ei.value)


def test_transport_failures_are_retried_then_become_server_error() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    t, slept = _transport(handler)
    with pytest.raises(ServerError) as ei:
        t.specs()
    # an outage: retried until the 10 s backoff budget is spent (0.25 + 0.5 + 1 + 2 + 4 + the 2.25 left)
    assert ei.value.status_code is None and str(ei.value).startswith("transport error") and ei.value.attempts_made == 7
    assert slept == [0.25, 0.5, 1.0, 2.0, 4.0, 2.25]


@pytest.mark.parametrize(
    ("status", "body", "headers", "exc"),
    [
        (401, {"detail": "invalid API key"}, {}, AuthError),
        (403, {"detail": "revoked"}, {}, AuthError),
        (404, {"detail": "nope"}, {}, ModelNotFoundError),
        (413, {"detail": "too big"}, {}, PayloadTooLargeError),
        (422, {"detail": "bad frame"}, {"X-DreamEngine-Error-Code": "input_validation"}, InputValidationError),
        (422, {"detail": "unknown model"}, {"X-DreamEngine-Error-Code": "model_not_found"}, ModelNotFoundError),
        (422, {"detail": [{"loc": ["body", "frame"]}]}, {}, ValidationError),  # another server's 422
        (500, {"detail": "boom"}, {}, ServerError),
        (400, "plain text", {}, ValidationError),
    ],
)
def test_status_table_and_error_codes(status, body, headers, exc) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        kw = {"json": body} if not isinstance(body, str) else {"text": body}
        return httpx.Response(status, headers={**HEADERS, **headers}, **kw)

    t, slept = _transport(handler)
    with pytest.raises(exc) as ei:
        _predict(t)
    assert type(ei.value) is exc and ei.value.status_code == status and ei.value.request_id == "req_abc"
    assert slept == []  # none of these is retried
    if exc is InputValidationError:
        assert ei.value.message == "bad frame" and isinstance(ei.value, ValueError)


def test_402_detail_object_gives_mils() -> None:
    detail = {"message": "insufficient", "balance_mils": 3, "requested_mils": 49}
    t, _ = _transport(lambda req: httpx.Response(402, json={"detail": detail}, headers=HEADERS))
    with pytest.raises(InsufficientCreditsError) as ei:
        _predict(t)
    assert (ei.value.balance_mils, ei.value.requested_mils, ei.value.requested_cents) == (3, 49, 1)


def _envelope() -> dict:
    return {"id": "rollout_1", "object": "rollout", "model": "m1", "created": 5, "frames": 5, "resolution": [16, 16],
            "engine_wall_ms": 3.0, "cost_usd": 0.0005, "video_url": "http://cdn/v.mp4", "video_url_expires_at": 9, "seed": 1}


def test_rollouts_json_envelope() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=_envelope(), headers={**HEADERS, "X-DreamEngine-Customer-Id": "cus_9"})

    t, _ = _transport(handler)
    r = t.rollout(_rollout_request("my-key"))
    assert r == dream.Rollout(id="rollout_1", model="m1", created=5, num_frames=5, resolution=(16, 16), engine_wall_ms=3.0,
                              cost_usd=0.0005, video_url="http://cdn/v.mp4", video_url_expires_at=9, seed=1,
                              customer_id="cus_9")
    body = seen[0].content
    assert seen[0].url.path == "/v1/rollouts" and seen[0].headers["idempotency-key"] == "my-key"
    assert b'name="params"' in body and b'"model": "m1"' in body and b'name="start_frame"; filename="frame.png"' in body


@pytest.mark.parametrize("failure", ["404", "connect"])
def test_rollouts_falls_back_to_predict_with_the_model_and_the_same_key(failure: str) -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.url.path == "/v1/rollouts":
            if failure == "connect":
                raise httpx.ReadTimeout("slow", request=req)
            return httpx.Response(404, json={"detail": "Not Found"})
        return httpx.Response(200, content=MP4, headers={**HEADERS, "X-DreamEngine-Rollout-Id": "rollout_7"})

    t, _ = _transport(handler)
    r = t.rollout(_rollout_request())
    assert [q.url.path for q in seen] == ["/v1/rollouts", "/v1/predict"]
    assert seen[0].headers["idempotency-key"] == seen[1].headers["idempotency-key"]
    assert b'name="model"\r\n\r\nm1' in seen[1].content
    assert (r.id, r.model, r.num_frames, r.resolution, r.cost_usd, bytes(r.mp4_bytes)) == (
        "rollout_7", "m1", 5, (16, 16), 0.0049, MP4)


def test_rollouts_4xx_other_than_404_surfaces_without_fallback() -> None:
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.url.path)
        return httpx.Response(405, json={"detail": "Method Not Allowed"})

    t, _ = _transport(handler)
    with pytest.raises(ValidationError):
        t.rollout(_rollout_request())
    assert seen == ["/v1/rollouts"]


def test_batch_tar_members_are_sorted_by_name() -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in ["rollout_001.mp4", "rollout_000.mp4"]:
            info = tarfile.TarInfo(name)
            info.size = len(name)
            tf.addfile(info, io.BytesIO(name.encode()))
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, content=buf.getvalue(), headers={**HEADERS, "X-DreamEngine-Batch-Size": "2"})

    t, _ = _transport(handler)
    br = t.predict_batch_bytes(frame_bytes=png(np.zeros((4, 4, 3), np.uint8)), actions_bytes_list=[b"a", b"b"])
    assert [r.mp4_bytes for r in br.rollouts] == [b"rollout_000.mp4", b"rollout_001.mp4"] and br.batch_size == 2
    assert [r.estimated_charge_usd for r in br.rollouts] == [0.0, 0.0] and br.estimated_charge_usd == 0.0049
    assert seen[0].content.count(b'name="actions"') == 2 and b'filename="actions_001.npy"' in seen[0].content


def test_topup_sends_one_key_and_json() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if len(seen) == 1:
            return httpx.Response(502, json={"detail": "bad gateway"})
        return httpx.Response(200, json={"session_id": "cs_1", "url": "https://pay", "amount_cents": 500, "customer_id": "c"})

    t, _ = _transport(handler)
    assert t.billing_topup(500)["session_id"] == "cs_1"
    assert json.loads(seen[0].content) == {"amount_cents": 500}
    assert seen[0].headers["idempotency-key"] == seen[1].headers["idempotency-key"]


def test_async_transport_shares_the_logic() -> None:
    keys: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        keys.append(req.headers.get("idempotency-key", ""))
        if req.url.path == "/v1/rollouts":
            raise httpx.ConnectError("down", request=req)
        if len(keys) < 3:
            return httpx.Response(504, json={"detail": "gateway timeout"})
        return httpx.Response(200, content=MP4, headers=HEADERS)

    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)

    async def main() -> dream.Rollout:
        http = httpx.AsyncClient(base_url="http://srv", transport=httpx.MockTransport(handler))
        t = AsyncHttpTransport(base_url="http://srv", api_key="k", retry_policy=RetryPolicy(jitter=False), http=http, sleep=sleep)
        try:
            return await t.rollout(_rollout_request())
        finally:
            await http.aclose()

    r = asyncio.run(main())
    assert bytes(r.mp4_bytes) == MP4 and len(set(keys)) == 1 and slept == [0.25]


def test_client_env_vars_pick_the_http_transport(monkeypatch) -> None:
    monkeypatch.setenv("DREAM_BASE_URL", "http://127.0.0.1:1/")
    monkeypatch.setenv("DREAM_API_KEY", "dre_env")
    c = dream.Client()
    assert c.base_url == "http://127.0.0.1:1" and c.api_key == "dre_env"
    assert isinstance(c._transport, HttpTransport) and c._http.headers["authorization"] == "Bearer dre_env"
    c2 = c.with_options(timeout_s=5, retry_policy=RetryPolicy(max_attempts=1))
    assert c2._transport.timeout_s == 5 and c2._transport.retry_policy.max_attempts == 1
    with pytest.raises(ServerError) as ei:
        c2.models.list()  # nothing listens there: one attempt, transport error
    assert ei.value.status_code is None and ei.value.attempts_made == 1
    c.close()
    c2.close()
    assert npy(np.zeros(1)).startswith(b"\x93NUMPY")
