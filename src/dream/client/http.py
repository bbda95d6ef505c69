"""The HTTP transport: `Client(base_url=...)` / `AsyncClient(base_url=...)` over the wire protocol.

`HttpTransport` (httpx.Client) and `AsyncHttpTransport` (httpx.AsyncClient) share every
request builder and response parser in `_Wire`; they differ only in how they send.
They return the same result objects as the embedded transport and raise the same errors.

How calls go (wire-protocol.md, cited as WP §n):

* Headers: ``User-Agent: dream-engine/<ver> python/<x.y> <os>``, ``Authorization: Bearer``
  when a key is set (WP §1).
* Retries (`RetryPolicy`, WP §5): transport failures, 429 (honouring Retry-After), 502,
  503, 504. Every POST gets one ``Idempotency-Key``, created before the retry loop and
  sent on every attempt, so a server that honours it (ours does) never runs or charges a
  retried call twice. ⚠ Unlike 0.5.0 we therefore also retry ``/v1/rollouts`` and send
  keys on ``/v1/predict``, ``/v1/predict/batch`` and ``/v1/billing/topup``.
* Errors (WP §4): the status table in `dream.errors`, the request id from
  ``X-DreamEngine-Request-Id``, 402 mils from the detail object, 429 ``Retry-After``.
  Our server also names the error in ``X-DreamEngine-Error-Code``: ``input_validation``
  (422) becomes `InputValidationError` and ``model_not_found`` (422) `ModelNotFoundError`,
  the classes the embedded engine raises for the same inputs; other servers' 422s stay
  `ValidationError`.
* ``ModelHandle.predict``: ``POST /v1/rollouts`` first; a 404 or a transport failure falls
  back to ``POST /v1/predict`` (WP §7.3) with the same idempotency key and, as our
  extension, the model slug in a ``model`` field, so the fallback runs the requested
  spec and a server that did run the first attempt replays it instead of charging again.
"""

from __future__ import annotations

import dataclasses
import io
import json
import platform
import sys
import tarfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dream._retry import RetryPolicy, call_with_retry, call_with_retry_async
from dream._version import __version__
from dream.client.async_transport import AsyncTransport
from dream.client.transport import BatchRequest, RolloutRequest, Transport
from dream.errors import (
    DreamError,
    InputValidationError,
    ModelNotFoundError,
    ServerError,
    error_for_status,
)
from dream.rollout import BatchRollout, Rollout
from dream.types import BatchResponse, PredictResponse

if TYPE_CHECKING:
    import httpx

__all__ = ["AsyncHttpTransport", "HttpTransport", "error_from_response", "user_agent"]

ERROR_CODE_HEADER = "x-dreamengine-error-code"
REQUEST_ID_HEADER = "x-dreamengine-request-id"


def user_agent() -> str:
    """``dream-engine/<sdk ver> python/<major.minor> <os>`` (WP §1)."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"dream-engine/{__version__} python/{py} {platform.system().lower()}"


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def parse_retry_after(value: str | None) -> float | None:
    """Seconds only (float allowed); the HTTP-date form and garbage give None (WP §3)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 and seconds == seconds else None


def error_from_response(resp: httpx.Response) -> DreamError:
    """The typed error for a non-2xx response (WP §4)."""
    status = resp.status_code
    request_id = resp.headers.get(REQUEST_ID_HEADER)
    try:
        body: str | None = resp.text
    except Exception:  # pragma: no cover - undecodable body
        body = None
    detail_obj: Any = None
    detail_text = body or ""
    try:
        payload = json.loads(body) if body else None
        if isinstance(payload, dict) and "detail" in payload:
            detail_obj = payload["detail"]
            detail_text = str(detail_obj)
    except ValueError:
        pass
    code = resp.headers.get(ERROR_CODE_HEADER, "")
    if status == 422 and code == "input_validation":
        return InputValidationError(detail_text, status_code=status, request_id=request_id, body=body)
    if status in (400, 422) and code == "model_not_found":
        return ModelNotFoundError(detail_text, status_code=status, request_id=request_id, body=body)
    message = f"HTTP {status}: {detail_text or '<empty body>'}"
    return error_for_status(
        status, message, request_id=request_id, body=body, detail=detail_obj,
        retry_after=parse_retry_after(resp.headers.get("retry-after")) if status == 429 else None,
    )


def transport_error(exc: Exception) -> ServerError:
    """A failure with no response (refused, reset, timeout): retryable, status_code None."""
    return ServerError(f"transport error: {type(exc).__name__}: {exc}", status_code=None)


def _float(headers: Mapping[str, str], name: str) -> float:
    try:
        return float(headers.get(name) or 0.0)
    except ValueError:
        return 0.0


def _int(headers: Mapping[str, str], name: str) -> int:
    try:
        return int(headers.get(name) or 0)
    except ValueError:
        return 0


class LazyPredictResponse(PredictResponse):
    """A `PredictResponse` whose ``frames`` are decoded from the mp4 on first access
    (None without a decoder), so bulk runs that only store the mp4 never decode it."""

    @property  # type: ignore[override]
    def frames(self) -> Any:
        if "_frames" not in self.__dict__:
            try:
                from dream._decode import decode_mp4_to_ndarray

                self.__dict__["_frames"] = decode_mp4_to_ndarray(self.mp4_bytes)
            except ImportError:
                self.__dict__["_frames"] = None
        return self.__dict__["_frames"]

    @frames.setter
    def frames(self, value: Any) -> None:
        if value is not None:
            self.__dict__["_frames"] = value


@dataclass
class WireRequest:
    """One HTTP call, independent of sync/async."""

    method: str
    path: str
    data: dict[str, str] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        for name in ("data", "files", "json", "params"):
            value = getattr(self, name)
            if value is not None:
                kw[name] = value
        if self.headers:
            kw["headers"] = self.headers
        if self.timeout is not None:
            kw["timeout"] = self.timeout
        return kw


class _Fallback(Exception):
    """/v1/rollouts is absent (404) or unreachable: fall back to /v1/predict (WP §7.3)."""


def _sampling_fields(seed: int, num_steps: int | None, guidance: float | None, spec: str | None) -> dict[str, str]:
    data = {"seed": str(seed)}
    if num_steps is not None:
        data["num_steps"] = str(num_steps)
    if guidance is not None:
        data["guidance"] = str(guidance)
    if spec:
        data["model"] = spec  # our extension (ignored by other servers): run this spec, not the default
    return data


class _Wire:
    """Request builders and response parsers shared by the sync and async transports."""

    # ----------------------------------------------------------------- requests

    @staticmethod
    def frame_bytes(frame: Any, original: bytes | None) -> bytes:
        from dream.inputs import encode_png

        return original if original is not None else encode_png(frame)

    @classmethod
    def rollouts(cls, req: RolloutRequest, key: str) -> WireRequest:
        from dream.inputs import encode_npy

        params: dict[str, Any] = {"model": req.spec.slug, "seed": req.seed, "score": req.score}
        if req.num_steps is not None:
            params["num_steps"] = req.num_steps
        if req.guidance is not None:
            params["guidance"] = req.guidance
        if req.mode != "sync":
            params["mode"] = req.mode
        if req.webhook_url is not None:
            params["webhook_url"] = req.webhook_url
        return WireRequest(
            "POST", "/v1/rollouts",
            data={"params": json.dumps(params)},
            files=[
                ("start_frame", ("frame.png", cls.frame_bytes(req.frame, req.frame_bytes), "image/png")),
                ("actions", ("actions.npy", encode_npy(req.actions), "application/octet-stream")),
            ],
            headers={"Idempotency-Key": key},
            timeout=req.timeout_s,
        )

    @staticmethod
    def predict(
        frame_bytes: bytes, actions_bytes: bytes, *, seed: int, num_steps: int | None, guidance: float | None,
        spec: str | None, key: str, timeout: float | None = None,
    ) -> WireRequest:
        return WireRequest(
            "POST", "/v1/predict",
            data=_sampling_fields(seed, num_steps, guidance, spec),
            files=[
                ("frame", ("frame.png", frame_bytes, "image/png")),
                ("actions", ("actions.npy", actions_bytes, "application/octet-stream")),
            ],
            headers={"Idempotency-Key": key},
            timeout=timeout,
        )

    @staticmethod
    def batch(
        frame_bytes: bytes, blobs: list[bytes], *, seed: int, num_steps: int | None, guidance: float | None,
        spec: str | None, key: str,
    ) -> WireRequest:
        files = [("frame", ("frame.png", frame_bytes, "image/png"))]
        files += [("actions", (f"actions_{i:03d}.npy", b, "application/octet-stream")) for i, b in enumerate(blobs)]
        return WireRequest(
            "POST", "/v1/predict/batch", data=_sampling_fields(seed, num_steps, guidance, spec), files=files,
            headers={"Idempotency-Key": key},
        )

    @staticmethod
    def session_create(model: str, frame_bytes: bytes, seed: int, num_steps: int | None, timeout: float | None) -> WireRequest:
        data = {"model": model, "seed": str(seed)}
        if num_steps is not None:
            data["num_steps"] = str(num_steps)
        return WireRequest(
            "POST", "/v1/sessions", data=data,
            files=[("initial_frame", ("initial_frame.png", frame_bytes, "image/png"))], timeout=timeout,
        )

    # ----------------------------------------------------------------- responses

    @staticmethod
    def json_of(resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError as exc:
            raise ServerError(
                f"HTTP {resp.status_code}: expected JSON, got {resp.headers.get('content-type', '?')} "
                f"({len(resp.content)} bytes)",
                status_code=resp.status_code, request_id=resp.headers.get(REQUEST_ID_HEADER), body=resp.text[:500],
            ) from exc

    @classmethod
    def json_object(cls, resp: httpx.Response) -> dict[str, Any]:
        payload = cls.json_of(resp)
        if not isinstance(payload, dict):
            raise ServerError(
                f"HTTP {resp.status_code}: expected a JSON object, got {type(payload).__name__}",
                status_code=resp.status_code, request_id=resp.headers.get(REQUEST_ID_HEADER),
            )
        return payload

    @staticmethod
    def legacy_rollout(resp: httpx.Response, req: RolloutRequest) -> Rollout:
        """A raw-mp4 answer (/v1/predict, or /v1/rollouts without JSON) as a Rollout."""
        h = resp.headers
        r = Rollout._from_legacy_response(resp.content, h)
        return dataclasses.replace(
            r,
            id=h.get("x-dreamengine-rollout-id") or r.id,
            model=h.get("x-dreamengine-model") or req.spec.slug,
            created=int(time.time()),
            num_frames=_int(h, "x-dreamengine-frames") or int(req.actions.shape[0]) + 1,
            resolution=req.spec.resolution,
            seed=req.seed,
        )

    @classmethod
    def rollout(cls, resp: httpx.Response, req: RolloutRequest) -> Rollout:
        if "application/json" in resp.headers.get("content-type", ""):
            return Rollout.from_json_envelope(cls.json_object(resp), customer_id=resp.headers.get("x-dreamengine-customer-id", ""))
        return cls.legacy_rollout(resp, req)

    @staticmethod
    def predict_response(resp: httpx.Response) -> PredictResponse:
        h = resp.headers
        return LazyPredictResponse(
            frames=None,
            request_id=h.get(REQUEST_ID_HEADER, ""),
            engine_wall_ms=_float(h, "x-dreamengine-engine-wall-ms"),
            estimated_charge_usd=_float(h, "x-dreamengine-estimated-charge-usd"),
            customer_id=h.get("x-dreamengine-customer-id", ""),
            mp4_bytes=resp.content,
        )

    @staticmethod
    def tar_members(resp: httpx.Response) -> list[bytes]:
        """mp4s of a batch tar, sorted by member name (WP §10)."""
        try:
            with tarfile.open(fileobj=io.BytesIO(resp.content), mode="r") as tf:
                out = []
                for member in sorted(tf.getmembers(), key=lambda m: m.name):
                    f = tf.extractfile(member)
                    if f is not None:
                        out.append(f.read())
        except tarfile.TarError as exc:
            raise ServerError(
                f"HTTP {resp.status_code}: batch response is not a tar archive ({exc})",
                status_code=resp.status_code, request_id=resp.headers.get(REQUEST_ID_HEADER),
            ) from exc
        return out

    @classmethod
    def batch_response(cls, resp: httpx.Response) -> BatchResponse:
        h = resp.headers
        request_id = h.get(REQUEST_ID_HEADER, "")
        wall = _float(h, "x-dreamengine-engine-wall-ms")
        customer = h.get("x-dreamengine-customer-id", "")
        children: list[PredictResponse] = [
            LazyPredictResponse(
                frames=None, request_id=request_id, engine_wall_ms=wall, estimated_charge_usd=0.0, customer_id=customer,
                mp4_bytes=mp4,
            )
            for mp4 in cls.tar_members(resp)
        ]
        return BatchResponse(
            rollouts=children, request_id=request_id, batch_size=_int(h, "x-dreamengine-batch-size"),
            engine_wall_ms=wall, estimated_charge_usd=_float(h, "x-dreamengine-estimated-charge-usd"),
            customer_id=customer,
        )

    @classmethod
    def batch_rollout(cls, resp: httpx.Response, req: BatchRequest) -> BatchRollout:
        h = resp.headers
        request_id = h.get(REQUEST_ID_HEADER, "")
        wall = _float(h, "x-dreamengine-engine-wall-ms")
        customer = h.get("x-dreamengine-customer-id", "")
        frames = _int(h, "x-dreamengine-frames") or int(req.actions.shape[1]) + 1
        children = [
            Rollout._from_batch_mp4(
                mp4, request_id=request_id, engine_wall_ms=wall, model=h.get("x-dreamengine-model") or req.spec.slug,
                num_frames=frames, resolution=req.spec.resolution, seed=req.seed, customer_id=customer,
            )
            for mp4 in cls.tar_members(resp)
        ]
        return BatchRollout(
            rollouts=children, request_id=request_id, batch_size=_int(h, "x-dreamengine-batch-size") or len(children),
            engine_wall_ms=wall, estimated_charge_usd=_float(h, "x-dreamengine-estimated-charge-usd"),
            customer_id=customer,
        )

    @staticmethod
    def rollout_wall_s(status: Any, spec: str | None) -> float | None:
        if not isinstance(status, dict):
            return None
        slug = spec or status.get("default_model")
        for m in status.get("models") or []:
            if isinstance(m, dict) and m.get("slug") == slug:
                wall = m.get("canonical_rollout_wall_s")
                return float(wall) if isinstance(wall, (int, float)) else None
        return None


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": user_agent()}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def ws_url(envelope: Mapping[str, Any], base_url: str) -> str:
    """The session's WebSocket URL: ``ws_url`` verbatim, else derived from the base URL (WP §13.1)."""
    url = envelope.get("ws_url")
    if url:
        return str(url)
    sid = envelope.get("id")
    if not sid:
        raise RuntimeError("session envelope has neither ws_url nor id; cannot connect")
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    else:
        base = "wss://" + base
    return f"{base}/v1/sessions/{sid}/stream"


# =========================================================================== sync


class HttpTransport(Transport):
    """Talks to a `dream serve` server (or any wire-compatible one) with httpx.

    Args:
        base_url: server URL (a path prefix is kept).
        api_key: bearer key; None sends no Authorization header.
        timeout_s: one timeout for connect/read/write/pool.
        retry_policy: retries of transient failures.
        http: an httpx.Client to use instead of a new one (tests pass a TestClient).
        sleep: how retries wait (tests pass a no-op).
    """

    kind = "http"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        retry_policy: RetryPolicy | None = None,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = float(timeout_s)
        self.retry_policy = retry_policy or RetryPolicy()
        self._sleep = sleep
        self._owns_http = http is None
        if http is None:
            http = httpx.Client(
                base_url=self.base_url, headers=_headers(api_key), timeout=httpx.Timeout(self.timeout_s),
                follow_redirects=True,
            )
        else:
            http.headers.update(_headers(api_key))
        self.http = http

    # ----------------------------------------------------------------- plumbing

    def _send(self, wr: WireRequest) -> httpx.Response:
        import httpx

        try:
            resp = self.http.request(wr.method, wr.path, **wr.kwargs())
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        if not 200 <= resp.status_code < 300:
            raise error_from_response(resp)
        return resp

    def _call(self, wr: WireRequest, *, retry: bool = True) -> httpx.Response:
        if not retry:
            return self._send(wr)
        return call_with_retry(lambda: self._send(wr), self.retry_policy, sleep=self._sleep)

    def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return _Wire.json_of(self._call(WireRequest("GET", path, params=params)))

    # ----------------------------------------------------------------- catalog

    def list_models(self) -> list[dict[str, Any]]:
        payload = self._get_json("/v1/models")
        data = payload.get("data") if isinstance(payload, dict) else None
        return [e for e in data or [] if isinstance(e, dict)]

    def get_model(self, slug: str) -> dict[str, Any]:
        return _Wire.json_object(self._call(WireRequest("GET", f"/v1/models/{quote(slug, safe='')}")))

    # ----------------------------------------------------------------- rollouts

    def rollout(self, req: RolloutRequest) -> Rollout:
        key = req.idempotency_key or new_idempotency_key()
        wr = _Wire.rollouts(req, key)

        def attempt() -> httpx.Response:
            try:
                return self._send(wr)
            except ServerError as exc:
                if exc.status_code is None:
                    raise _Fallback(str(exc)) from exc
                raise
            except ModelNotFoundError as exc:
                if exc.status_code == 404:
                    raise _Fallback(str(exc)) from exc
                raise

        try:
            return _Wire.rollout(call_with_retry(attempt, self.retry_policy, sleep=self._sleep), req)
        except _Fallback:
            pass
        legacy = _Wire.predict(
            _Wire.frame_bytes(req.frame, req.frame_bytes), _encode_npy(req.actions), seed=req.seed,
            num_steps=req.num_steps, guidance=req.guidance, spec=req.spec.slug, key=key, timeout=req.timeout_s,
        )
        return _Wire.legacy_rollout(self._call(legacy), req)

    def rollout_batch(self, req: BatchRequest) -> BatchRollout:
        key = req.idempotency_key or new_idempotency_key()
        wr = _Wire.batch(
            _Wire.frame_bytes(req.frame, req.frame_bytes), [_encode_npy(a) for a in req.actions], seed=req.seed,
            num_steps=req.num_steps, guidance=req.guidance, spec=req.spec.slug, key=key,
        )
        return _Wire.batch_rollout(self._call(wr), req)

    def predict_bytes(
        self,
        *,
        frame_bytes: bytes,
        actions_bytes: bytes,
        seed: int = 0,
        num_steps: int | None = None,
        guidance: float | None = None,
        spec: str | None = None,
        idempotency_key: str | None = None,
    ) -> PredictResponse:
        wr = _Wire.predict(
            frame_bytes, actions_bytes, seed=seed, num_steps=num_steps, guidance=guidance, spec=spec,
            key=idempotency_key or new_idempotency_key(),
        )
        return _Wire.predict_response(self._call(wr))

    def predict_batch_bytes(
        self,
        *,
        frame_bytes: bytes,
        actions_bytes_list: list[bytes],
        seed: int = 0,
        num_steps: int | None = None,
        guidance: float | None = None,
        spec: str | None = None,
        idempotency_key: str | None = None,
    ) -> BatchResponse:
        wr = _Wire.batch(
            frame_bytes, list(actions_bytes_list), seed=seed, num_steps=num_steps, guidance=guidance, spec=spec,
            key=idempotency_key or new_idempotency_key(),
        )
        return _Wire.batch_response(self._call(wr))

    # ----------------------------------------------------------------- info

    def specs(self) -> dict[str, Any]:
        return self._get_json("/v1/specs")

    def status(self) -> dict[str, Any]:
        return self._get_json("/v1/status")

    def healthz(self) -> dict[str, Any]:
        return self._get_json("/healthz")

    def rollout_wall_s(self, spec: str | None) -> float | None:
        try:
            return _Wire.rollout_wall_s(self.status(), spec)
        except DreamError:
            return None

    # ----------------------------------------------------------------- billing

    def billing_balance(self) -> dict[str, Any]:
        return _Wire.json_object(self._call(WireRequest("GET", "/v1/billing/balance")))

    def billing_transactions(self, limit: int) -> dict[str, Any]:
        payload = self._get_json("/v1/billing/transactions", {"limit": limit})
        return payload if isinstance(payload, dict) else {}

    def billing_topup(self, amount_cents: int) -> dict[str, Any]:
        wr = WireRequest(
            "POST", "/v1/billing/topup", json={"amount_cents": amount_cents},
            headers={"Idempotency-Key": new_idempotency_key()},
        )
        return _Wire.json_object(self._call(wr))

    # ----------------------------------------------------------------- sessions

    def session_create(
        self, *, model: str, frame_bytes: bytes, seed: int = 0, num_steps: int | None = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """POST /v1/sessions (not retried: a retry could open a second session)."""
        return _Wire.json_object(self._call(_Wire.session_create(model, frame_bytes, seed, num_steps, timeout_s), retry=False))

    def session_delete(self, session_id: str) -> dict[str, Any] | None:
        """DELETE /v1/sessions/{id}; errors are swallowed (the server also cleans up on disconnect)."""
        try:
            resp = self._send(WireRequest("DELETE", f"/v1/sessions/{quote(session_id, safe='')}", timeout=10.0))
            return resp.json() if "application/json" in resp.headers.get("content-type", "") else None
        except Exception:  # best effort, as 0.5.0: the server also cleans up on disconnect
            return None

    def ws_headers(self) -> list[tuple[str, str]]:
        return list(_headers(self.api_key).items())

    def close(self) -> None:
        if self._owns_http:
            self.http.close()


# =========================================================================== async


class AsyncHttpTransport(AsyncTransport):
    """Async twin of `HttpTransport` (httpx.AsyncClient); same requests, parsers and errors."""

    kind = "http"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        retry_policy: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        import asyncio

        import httpx

        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = float(timeout_s)
        self.retry_policy = retry_policy or RetryPolicy()
        self._sleep = sleep or asyncio.sleep
        self._owns_http = http is None
        if http is None:
            http = httpx.AsyncClient(
                base_url=self.base_url, headers=_headers(api_key), timeout=httpx.Timeout(self.timeout_s),
                follow_redirects=True,
            )
        else:
            http.headers.update(_headers(api_key))
        self.http = http

    async def _send(self, wr: WireRequest) -> httpx.Response:
        import httpx

        try:
            resp = await self.http.request(wr.method, wr.path, **wr.kwargs())
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        if not 200 <= resp.status_code < 300:
            raise error_from_response(resp)
        return resp

    async def _call(self, wr: WireRequest, *, retry: bool = True) -> httpx.Response:
        if not retry:
            return await self._send(wr)
        return await call_with_retry_async(lambda: self._send(wr), self.retry_policy, sleep=self._sleep)

    async def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return _Wire.json_of(await self._call(WireRequest("GET", path, params=params)))

    async def list_models(self) -> list[dict[str, Any]]:
        payload = await self._get_json("/v1/models")
        data = payload.get("data") if isinstance(payload, dict) else None
        return [e for e in data or [] if isinstance(e, dict)]

    async def get_model(self, slug: str) -> dict[str, Any]:
        return _Wire.json_object(await self._call(WireRequest("GET", f"/v1/models/{quote(slug, safe='')}")))

    async def rollout(self, req: RolloutRequest) -> Rollout:
        key = req.idempotency_key or new_idempotency_key()
        wr = _Wire.rollouts(req, key)

        async def attempt() -> httpx.Response:
            try:
                return await self._send(wr)
            except ServerError as exc:
                if exc.status_code is None:
                    raise _Fallback(str(exc)) from exc
                raise
            except ModelNotFoundError as exc:
                if exc.status_code == 404:
                    raise _Fallback(str(exc)) from exc
                raise

        try:
            return _Wire.rollout(await call_with_retry_async(attempt, self.retry_policy, sleep=self._sleep), req)
        except _Fallback:
            pass
        legacy = _Wire.predict(
            _Wire.frame_bytes(req.frame, req.frame_bytes), _encode_npy(req.actions), seed=req.seed,
            num_steps=req.num_steps, guidance=req.guidance, spec=req.spec.slug, key=key, timeout=req.timeout_s,
        )
        return _Wire.legacy_rollout(await self._call(legacy), req)

    async def rollout_batch(self, req: BatchRequest) -> BatchRollout:
        key = req.idempotency_key or new_idempotency_key()
        wr = _Wire.batch(
            _Wire.frame_bytes(req.frame, req.frame_bytes), [_encode_npy(a) for a in req.actions], seed=req.seed,
            num_steps=req.num_steps, guidance=req.guidance, spec=req.spec.slug, key=key,
        )
        return _Wire.batch_rollout(await self._call(wr), req)

    async def predict_bytes(  # type: ignore[override]
        self,
        *,
        frame_bytes: bytes,
        actions_bytes: bytes,
        seed: int = 0,
        num_steps: int | None = None,
        guidance: float | None = None,
        spec: str | None = None,
        idempotency_key: str | None = None,
    ) -> PredictResponse:
        wr = _Wire.predict(
            frame_bytes, actions_bytes, seed=seed, num_steps=num_steps, guidance=guidance, spec=spec,
            key=idempotency_key or new_idempotency_key(),
        )
        return _Wire.predict_response(await self._call(wr))

    async def predict_batch_bytes(  # type: ignore[override]
        self,
        *,
        frame_bytes: bytes,
        actions_bytes_list: list[bytes],
        seed: int = 0,
        num_steps: int | None = None,
        guidance: float | None = None,
        spec: str | None = None,
        idempotency_key: str | None = None,
    ) -> BatchResponse:
        wr = _Wire.batch(
            frame_bytes, list(actions_bytes_list), seed=seed, num_steps=num_steps, guidance=guidance, spec=spec,
            key=idempotency_key or new_idempotency_key(),
        )
        return _Wire.batch_response(await self._call(wr))

    async def specs(self) -> dict[str, Any]:
        return await self._get_json("/v1/specs")

    async def status(self) -> dict[str, Any]:
        return await self._get_json("/v1/status")

    async def healthz(self) -> dict[str, Any]:
        return await self._get_json("/healthz")

    async def rollout_wall_s(self, spec: str | None) -> float | None:
        try:
            return _Wire.rollout_wall_s(await self.status(), spec)
        except DreamError:
            return None

    async def billing_balance(self) -> dict[str, Any]:
        return _Wire.json_object(await self._call(WireRequest("GET", "/v1/billing/balance")))

    async def billing_transactions(self, limit: int) -> dict[str, Any]:
        payload = await self._get_json("/v1/billing/transactions", {"limit": limit})
        return payload if isinstance(payload, dict) else {}

    async def billing_topup(self, amount_cents: int) -> dict[str, Any]:
        wr = WireRequest(
            "POST", "/v1/billing/topup", json={"amount_cents": amount_cents},
            headers={"Idempotency-Key": new_idempotency_key()},
        )
        return _Wire.json_object(await self._call(wr))

    async def session_create(
        self, *, model: str, frame_bytes: bytes, seed: int = 0, num_steps: int | None = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        wr = _Wire.session_create(model, frame_bytes, seed, num_steps, timeout_s)
        return _Wire.json_object(await self._call(wr, retry=False))

    async def session_delete(self, session_id: str) -> dict[str, Any] | None:
        try:
            resp = await self._send(WireRequest("DELETE", f"/v1/sessions/{quote(session_id, safe='')}", timeout=10.0))
            return resp.json() if "application/json" in resp.headers.get("content-type", "") else None
        except Exception:  # best effort, as 0.5.0: the server also cleans up on disconnect
            return None

    def ws_headers(self) -> list[tuple[str, str]]:
        return list(_headers(self.api_key).items())

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()


def _encode_npy(actions: Any) -> bytes:
    from dream.inputs import encode_npy

    return encode_npy(actions)
