"""Streaming sessions: POST /v1/sessions, GET/DELETE /v1/sessions/{id}, WS …/stream (wire-protocol §13)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Request, UploadFile, WebSocket, WebSocketDisconnect

from dream.errors import DreamError, status_for_error
from dream.server.deps import PrincipalDep, ServicesDep, base_url, websocket_principal
from dream.server.routes.common import errors
from dream.server.schemas import SessionEnvelope
from dream.server.services.sessions import error_message

router = APIRouter(tags=["sessions"])
logger = logging.getLogger("dream.server.sessions")


@router.post(
    "/v1/sessions", response_model=SessionEnvelope, responses=errors(400, 401, 403, 404, 409, 413, 422, 429, 503),
    summary="Open a streaming session from an initial frame",
)
async def create_session(
    request: Request,
    svc: ServicesDep,
    principal: PrincipalDep,
    model: Annotated[str, Form(description="model slug")],
    initial_frame: Annotated[UploadFile, File(description="PNG or JPEG, any mode")],
    seed: Annotated[str, Form(description="int")] = "0",
    num_steps: Annotated[str | None, Form(description="int; default: the spec's")] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    frame_bytes = await initial_frame.read()
    sess = await svc.sessions.open(
        principal, model=model, frame_bytes=frame_bytes, seed=seed, num_steps=num_steps, idempotency_key=idempotency_key
    )
    return sess.envelope(base_url(request, svc))


@router.get("/v1/sessions/{session_id}", response_model=SessionEnvelope, responses=errors(401, 403, 404, 429))
async def get_session(session_id: str, request: Request, svc: ServicesDep, principal: PrincipalDep) -> Any:
    return svc.sessions.get(principal, session_id).envelope(base_url(request, svc))


@router.delete(
    "/v1/sessions/{session_id}", response_model=SessionEnvelope, responses=errors(401, 403, 404, 429),
    summary="Close a session (returns its final envelope)",
)
async def close_session(session_id: str, request: Request, svc: ServicesDep, principal: PrincipalDep) -> Any:
    return svc.sessions.close(principal, session_id).envelope(base_url(request, svc))


@router.websocket("/v1/sessions/{session_id}/stream")
async def stream_session(websocket: WebSocket, session_id: str) -> None:
    svc = websocket.app.state.services
    request_id = str(websocket.scope.get("state", {}).get("request_id", ""))
    try:
        principal = await websocket_principal(websocket, svc)
        sess = svc.sessions.get(principal, session_id)
    except DreamError as exc:
        # Refused before the upgrade: the client sees an HTTP 403 handshake failure.
        logger.info("session stream refused: %s", exc.message)
        await websocket.close(code=4000 + status_for_error(exc) % 1000, reason=exc.message[:120])
        return
    if sess.connected:
        await websocket.close(code=4409, reason="this session is already streaming on another connection")
        return
    await websocket.accept()
    sess.connected = True
    try:
        await websocket.send_text(json.dumps(
            {"type": "session_started", "session_id": sess.id, "model": sess.spec.slug, "request_id": request_id}
        ))
        while True:
            incoming = await websocket.receive()
            if incoming["type"] == "websocket.disconnect":
                break
            raw = incoming.get("text") if incoming.get("text") is not None else incoming.get("bytes")
            limit = svc.settings.max_ws_message_bytes
            if raw is not None and len(raw) > limit:  # before parsing: JSON costs ~8x its size in memory
                await websocket.send_text(json.dumps({"type": "error", "error": {
                    "code": "message_too_large",
                    "message": f"this message is {len(raw)} bytes; this server takes WebSocket messages of at most "
                               f"{limit} bytes (dream serve --max-ws-message-mb): send fewer actions per submit_actions",
                }}))
                del raw, incoming
                continue
            try:
                message = await asyncio.to_thread(parse_message, raw)  # off the loop: messages may be MBs
            except ValueError as exc:
                await websocket.send_text(json.dumps(
                    {"type": "error", "error": {"code": "bad_message", "message": f"messages are JSON objects: {exc}"}}
                ))
                continue
            kind = message.get("type")
            if kind == "submit_actions":
                async for out in svc.sessions.stream(sess, message, request_id):
                    await websocket.send_text(json.dumps(out))
            elif kind == "control" and message.get("command") == "stop":
                break
            elif kind == "ping":
                await websocket.send_text(json.dumps({"type": "pong"}))
            else:
                await websocket.send_text(json.dumps(
                    {"type": "error", "error": {"code": "unknown_message", "message": f"unknown message type {kind!r}"}}
                ))
    except WebSocketDisconnect:
        pass
    except DreamError as exc:
        await _send_quietly(websocket, error_message(exc))
    finally:
        sess.connected = False
        with contextlib.suppress(Exception):
            await websocket.close()


def parse_message(raw: str | bytes | None) -> dict[str, Any]:
    """One WebSocket message as a JSON object; ValueError (with the reason) otherwise."""
    try:
        message = json.loads(raw or "")
    except RecursionError:
        raise ValueError("it nests arrays or objects too deeply to parse") from None
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


async def _send_quietly(websocket: WebSocket, message: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps(message))
