"""The request-context middleware (pure ASGI, outermost): ids, body limits, last-resort 500s.

For every HTTP request and WebSocket handshake it

* mints ``req_<32 hex>``, puts it in the logging context and on the response as
  ``X-DreamEngine-Request-Id``, errors included (also on the WebSocket accept);
* refuses bodies over the limit with 413, by Content-Length up front or by counting
  a chunked body, after draining what the client sends so it reads the answer
  instead of failing on a broken pipe;
* turns any exception that escaped the app into a plain 500 ``{"detail": …}`` naming
  the request id, with the traceback only in the log (the app's own error handlers
  sit inside and never see these);
* records Prometheus counts and latency by route template.

It is pure ASGI rather than BaseHTTPMiddleware so streaming and WebSockets pass
through untouched and the per-request cost stays small.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from dream.server.logs import request_id_var
from dream.server.services.codes import ERROR_CODE_HEADER
from dream.server.services.db import new_id

if TYPE_CHECKING:
    from dream.server.services.metrics import Metrics

logger = logging.getLogger("dream.server.http")

REQUEST_ID_HEADER = b"x-dreamengine-request-id"
_DRAIN_LIMIT = 256 * 1024 * 1024

Scope = dict[str, Any]
Message = dict[str, Any]


class RequestContextMiddleware:
    def __init__(self, app: Any, *, max_body_bytes: int, metrics: Metrics | None = None) -> None:
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = new_id("req")
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        try:
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send, rid)
            else:
                await self._http(scope, receive, send, rid)
        finally:
            request_id_var.reset(token)

    async def _websocket(self, scope: Scope, receive: Any, send: Any, rid: str) -> None:
        async def send_with_id(message: Message) -> None:
            if message["type"] == "websocket.accept":
                headers = list(message.get("headers") or [])
                headers.append((REQUEST_ID_HEADER, rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error in WebSocket %s", scope.get("path"))

    async def _http(self, scope: Scope, receive: Any, send: Any, rid: str) -> None:
        state = {"started": False, "status": 500, "too_large": False, "received": 0, "body_done": False}

        async def send_with_id(message: Message) -> None:
            if state["too_large"]:
                return  # the app's answer to a truncated body is replaced by our 413
            if message["type"] == "http.response.start":
                state["started"] = True
                state["status"] = message["status"]
                headers = list(message.get("headers") or [])
                if not any(k.lower() == REQUEST_ID_HEADER for k, _ in headers):
                    headers.append((REQUEST_ID_HEADER, rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        async def counting_receive() -> Message:
            if state["too_large"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    state["body_done"] = True
                if state["received"] > self.max_body_bytes:
                    state["too_large"] = True
                    return {"type": "http.disconnect"}
            return message

        m = self.metrics
        t0 = time.perf_counter()
        if m is not None:
            m.in_flight.inc()
        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                state["too_large"] = True
            else:
                try:
                    await self.app(scope, counting_receive, send_with_id)
                except Exception:
                    if state["too_large"]:
                        pass  # the app choked on the cut-off body; answered with 413 below
                    else:
                        logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
                        if not state["started"]:
                            await self._reply(send_with_id, 500, f"internal server error (request id {rid})", "internal")
                            state["status"] = 500
                        return
            if state["too_large"] and not state["started"]:
                if not state["body_done"]:
                    await _drain(receive, _DRAIN_LIMIT)
                state["too_large"] = False
                limit_mib = self.max_body_bytes / (1024 * 1024)
                await self._reply(
                    send_with_id, 413,
                    f"request body is over this server's {self.max_body_bytes}-byte ({limit_mib:.1f} MiB) limit",
                    "payload_too_large",
                )
                state["status"] = 413
        finally:
            if m is not None:
                m.in_flight.dec()
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                elapsed = time.perf_counter() - t0
                m.requests.labels(template, scope.get("method", ""), str(state["status"])).inc()
                m.request_seconds.labels(template).observe(elapsed)
                if template.startswith("/v1/") and state["status"] < 500:
                    m.request_latency.add(elapsed * 1000.0)

    @staticmethod
    async def _reply(send: Any, status: int, detail: str, code: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (ERROR_CODE_HEADER.lower().encode(), code.encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers") or []:
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


async def _drain(receive: Any, limit: int) -> None:
    """Read and drop the rest of a request body (up to `limit` bytes)."""
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
