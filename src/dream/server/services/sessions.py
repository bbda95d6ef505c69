"""Streaming sessions (wire-protocol §13): step-by-step rollouts over a WebSocket.

A session holds a spec, a seed, its last frame and the model's rollout carried forward
(`dream.engine.engine.SteppedRollouts`). Each ``submit_actions`` advances it chunk by
chunk (`dream.resources.sessions.plan_chunks` and `advance_session`, the same chunking
and stepping as the embedded transport's in-process sessions, so both give the same
frames) and streams every new frame as soon as its chunk is done. A chunk costs its own
actions only: for models that step incrementally (pusht-96) the frames equal one
``predict`` of every action submitted so far. The first rollout of a session also echoes the
initial frame, so it yields T + 1 frames like ``predict``; later rollouts continue from
where the previous one stopped and yield T.

Billing is per chunk and exact: the chunk's frames are reserved before its engine call,
settled when it succeeds, refunded when it fails. Between chunks nothing is held, so a
client that disconnects mid-stream pays for exactly the chunks it was sent.

Messages are produced here as plain dicts; the route only sends them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dream.errors import (
    DreamError,
    InputValidationError,
    InsufficientCreditsError,
    ModelNotFoundError,
    RateLimitError,
)
from dream.server.services.db import new_id
from dream.server.services.ledger import Principal, usd_to_mils

if TYPE_CHECKING:
    import numpy as np

    from dream.engine.specs import EngineSpec
    from dream.server.services.container import Services

logger = logging.getLogger("dream.server.sessions")

# The 0.5.0 client refuses WebSocket messages over 1 MiB (wire-protocol §13.2).
MAX_MESSAGE_BYTES = 1024 * 1024
_MAX_SESSIONS_PER_CUSTOMER = 64


class SessionNotFound(ModelNotFoundError):
    """No open session with this id for this API key (HTTP 404)."""


def encode_frame_message(frame: np.ndarray, index: int) -> dict[str, Any]:
    """A ``frame`` message: base64 PNG, or JPEG when the PNG would break the 1 MiB limit."""
    import io

    from PIL import Image

    from dream.inputs import encode_png

    data = encode_png(frame)
    fmt = "png"
    if len(data) * 4 // 3 + 200 > MAX_MESSAGE_BYTES:
        buf = io.BytesIO()
        Image.fromarray(frame, "RGB").save(buf, format="JPEG", quality=92)
        data, fmt = buf.getvalue(), "jpeg"
    return {"type": "frame", "index": index, "format": fmt, "data": base64.b64encode(data).decode("ascii")}


@dataclass
class ServerSession:
    id: str
    principal: Principal
    spec: EngineSpec
    seed: int
    num_steps: int | None
    last_frame: np.ndarray  # uint8 (H, W, 3) at the spec's resolution
    created: float
    last_active: float
    state: str = "open"  # open | streaming | closed
    echoed: bool = False  # initial frame sent
    frames_streamed: int = 0
    debited_mils: int = 0
    rollouts: int = 0
    connected: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    # The model's rollout carried from chunk to chunk (`dream.resources.sessions.advance_session`).
    engine: Any = field(default=None, repr=False)
    steps: Any = field(default=None, repr=False)
    _params: Any = field(default=None, repr=False)

    def envelope(self, base_url: str = "") -> dict[str, Any]:
        ws = base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return {
            "id": self.id,
            "object": "session",
            "model": self.spec.slug,
            "state": self.state,
            "ws_url": f"{ws}/v1/sessions/{self.id}/stream" if base_url else "",
            "created": int(self.created),
            "seed": self.seed,
            "num_steps": self.num_steps,
            "resolution": [self.spec.resolution[0], self.spec.resolution[1]],
            "action_dim": self.spec.action_dim,
            "chunk_size": self.spec.chunk_size,
            "frames_streamed": self.frames_streamed,
            "rollouts": self.rollouts,
            "billing": {"debited_mils": self.debited_mils},
        }


class SessionService:
    """Open sessions (in memory: a session lives in the process that streams it)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.settings = svc.settings
        self._sessions: dict[str, ServerSession] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle

    def admit(self, principal: Principal, *, model: str, frame_bytes: bytes, seed: Any, num_steps: Any
              ) -> tuple[EngineSpec, int, int | None]:
        """Everything about a new session that needs no pixels: its parameters, the frame's
        header, the customer's session cap and credit. Raises before anything is decoded."""
        from dream.engine.engine import validate_num_steps, validate_seed

        spec = self.svc.rollouts.spec(model)
        s = validate_seed(0 if seed in (None, "") else seed)
        n = validate_num_steps(None if num_steps in (None, "") else num_steps)
        self.svc.rollouts.check_frame(spec, frame_bytes, "initial_frame")  # header only: no pixels yet
        self.expire_idle()
        self._check_session_cap(principal)
        one_frame = usd_to_mils(spec.price_per_frame_usd)
        balance = self.svc.ledger.balance_mils(principal.customer_id) if principal.billed else one_frame
        if balance < one_frame:
            raise InsufficientCreditsError(
                f"a session on {spec.slug} needs credit for at least one frame ({one_frame} mils); the balance is "
                f"{balance} mils",
                balance_mils=balance,
                requested_mils=one_frame,
            )
        return spec, s, n

    def _check_session_cap(self, principal: Principal) -> None:
        mine = sum(1 for x in self._sessions.values() if x.principal.customer_id == principal.customer_id)
        if mine >= _MAX_SESSIONS_PER_CUSTOMER:
            raise RateLimitError(
                f"{mine} sessions are open for this customer (max {_MAX_SESSIONS_PER_CUSTOMER}); close some first",
                retry_after=self.settings.concurrency_retry_after_s,
            )

    async def create(self, principal: Principal, *, model: str, frame_bytes: bytes, seed: Any, num_steps: Any
                     ) -> ServerSession:
        """Validate and open a session: `admit` first, then the frame is decoded with the
        server's bounded decodes (`RolloutService.decode_frame`), as every rollout's is."""
        spec, s, n = await asyncio.to_thread(
            self.admit, principal, model=model, frame_bytes=frame_bytes, seed=seed, num_steps=num_steps
        )
        frame = await self.svc.rollouts.decode_frame(spec, frame_bytes, "initial_frame")
        with self._lock:
            self._check_session_cap(principal)  # again: another open may have won the race
            now = time.time()
            sess = ServerSession(new_id("sess"), principal, spec, s, n, frame, now, now, engine=self.svc.engine)
            self._sessions[sess.id] = sess
        self.svc.metrics.sessions_open.set(len(self._sessions))
        logger.info("session %s opened: spec=%s customer=%s", sess.id, spec.slug, principal.customer_id)
        return sess

    async def open(
        self, principal: Principal, *, model: str, frame_bytes: bytes, seed: Any, num_steps: Any,
        idempotency_key: str | None,
    ) -> ServerSession:
        """`create`, once per Idempotency-Key: a repeated POST returns the same session."""
        from dream.server.services.idempotency import Completer, StoredResult, check_key, fingerprint

        async def call(complete: Completer | None) -> ServerSession:
            sess = await self.create(principal, model=model, frame_bytes=frame_bytes, seed=seed, num_steps=num_steps)
            if complete is not None:
                store = complete(StoredResult({"kind": "session", "session_id": sess.id}, b""))

                def write() -> None:
                    with self.svc.db.begin() as conn:
                        store(conn)

                await asyncio.to_thread(write)
            return sess

        if idempotency_key is None:
            return await call(None)
        fp = fingerprint("session", model, str(seed), str(num_steps), frame_bytes)
        key = (check_key(idempotency_key), self.settings.idempotency_ttl_s)
        return await self.svc.idem.run(
            principal.customer_id, key, fp, call, lambda stored: self.get(principal, stored.meta["session_id"]), "session"
        )

    def get(self, principal: Principal, session_id: str) -> ServerSession:
        self.expire_idle()
        with self._lock:
            sess = self._sessions.get(session_id)
        if sess is None or sess.principal.customer_id != principal.customer_id:
            raise SessionNotFound(f"no open session {session_id!r} for this API key", status_code=404)
        return sess

    def close(self, principal: Principal, session_id: str) -> ServerSession:
        sess = self.get(principal, session_id)
        with self._lock:
            self._sessions.pop(session_id, None)
        sess.state = "closed"
        self.svc.metrics.sessions_open.set(len(self._sessions))
        logger.info("session %s closed after %d frames", sess.id, sess.frames_streamed)
        return sess

    def expire_idle(self) -> None:
        cutoff = time.time() - self.settings.session_idle_s
        with self._lock:
            stale = [k for k, s in self._sessions.items() if s.last_active < cutoff and not s.connected]
            for k in stale:
                self._sessions.pop(k).state = "closed"
        if stale:
            logger.info("closed %d idle session(s)", len(stale))
            self.svc.metrics.sessions_open.set(len(self._sessions))

    # ----------------------------------------------------------------- streaming

    async def stream(self, sess: ServerSession, message: dict[str, Any], request_id: str) -> AsyncIterator[dict[str, Any]]:
        """Messages answering one ``submit_actions``: frame*, billing*, then rollout_complete or error."""
        from dream.engine.engine import validate_num_steps, validate_seed
        from dream.inputs import actions_to_array
        from dream.resources.sessions import plan_chunks, stream_chunk_len

        async with sess.lock:
            sess.last_active = time.time()
            spec = sess.spec
            slot = contextlib.AsyncExitStack()  # the key's rollout slot while this rollout streams
            try:
                await self.svc.rollouts.require_loaded(spec)
                # Off the event loop: a long nested list takes a while to convert.
                actions = await asyncio.to_thread(
                    actions_to_array, message.get("actions"), action_dim=spec.action_dim, chunk_size=spec.chunk_size
                )
                self.svc.rollouts.check_budget(int(actions.shape[0]))  # the same limits as /v1/predict
                num_steps = validate_num_steps(message["num_steps"]) if message.get("num_steps") is not None else sess.num_steps
                seed = validate_seed(message["seed"]) if message.get("seed") is not None else sess.seed
                await slot.enter_async_context(self.svc.limiter.slot(sess.principal))
            except DreamError as exc:
                yield error_message(exc)
                return
            sess.state = "streaming"
            streamed = 0
            try:
                for part in plan_chunks(int(actions.shape[0]), stream_chunk_len(spec.chunk_size, self.settings.session_chunk_actions)):
                    chunk = actions[part]
                    echo = not sess.echoed
                    n_frames = int(chunk.shape[0]) + (1 if echo else 0)
                    try:
                        frames, charged = await self._run_chunk(sess, chunk, n_frames, seed, num_steps, request_id)
                    except DreamError as exc:
                        yield error_message(exc)
                        return
                    except Exception as exc:  # the engine blew up: refunded in _run_chunk
                        logger.error("session %s chunk failed", sess.id, exc_info=exc)
                        yield {"type": "error", "error": {"code": "engine_error", "message": f"{type(exc).__name__}: {exc}"}}
                        return
                    out = frames if echo else frames[1:]
                    for frame in out:
                        yield encode_frame_message(frame, sess.frames_streamed)
                        sess.frames_streamed += 1
                        streamed += 1
                    sess.echoed = True
                    sess.debited_mils += charged
                    balance = (
                        await asyncio.to_thread(self.svc.ledger.balance_mils, sess.principal.customer_id)
                        if sess.principal.billed else None
                    )
                    yield {
                        "type": "billing", "frames_streamed": sess.frames_streamed, "debited_mils": sess.debited_mils,
                        "balance_mils": balance,
                    }
                sess.rollouts += 1
                yield {"type": "rollout_complete", "frames_streamed": streamed, "frames_streamed_total": sess.frames_streamed}
            finally:
                await slot.aclose()
                sess.state = "open"
                sess.last_active = time.time()

    async def _run_chunk(
        self, sess: ServerSession, chunk: np.ndarray, n_frames: int, seed: int, num_steps: int | None, request_id: str
    ) -> tuple[np.ndarray, int]:
        """Reserve → engine → settle (or refund); returns (frames (T+1, H, W, 3), mils charged).

        The engine carries the session's rollout forward (`advance_session`): a chunk
        costs its own actions, not a new rollout from the last frame, and it takes a
        fair turn on the engine like every chunk of a streamed rollout.
        """
        from dream.resources.sessions import advance_session

        spec = sess.spec
        principal = sess.principal
        amount = usd_to_mils(spec.price_per_frame_usd * n_frames)
        rsv = None
        if principal.billed and amount > 0:
            rsv = await asyncio.to_thread(
                self.svc.ledger.reserve, principal.customer_id, amount, request_id=f"{sess.id}:{new_id('chunk')}",
                detail=f"session · {spec.slug} · {n_frames} frames",
            )
        try:
            loop = asyncio.get_running_loop()
            async with self.svc.scheduler.turn(principal.customer_id):
                t0 = time.perf_counter()
                frames = await loop.run_in_executor(
                    self.svc.engine_executor, advance_session, sess, chunk, seed, num_steps
                )
                self.svc.metrics.engine_seconds.labels(spec.slug).observe(time.perf_counter() - t0)
            if rsv is not None:
                await asyncio.to_thread(self.svc.ledger.settle, rsv)
        except BaseException as exc:
            if rsv is not None:
                from dream.server.services.idempotency import run_cleanup

                await run_cleanup(self.svc.ledger.refund, rsv, reason=f"{type(exc).__name__} during session · {spec.slug}")
            raise
        self.svc.metrics.frames.labels(spec.slug).inc(n_frames)
        if rsv is not None:
            self.svc.metrics.charged_mils.labels(spec.slug).inc(amount)
        return frames, (amount if rsv is not None else 0)


def error_message(exc: DreamError) -> dict[str, Any]:
    """A WebSocket ``error`` message for a typed error (codes match the HTTP error codes)."""
    from dream.server.services.codes import error_code

    err: dict[str, Any] = {"code": error_code(exc), "message": exc.message}
    if isinstance(exc, InsufficientCreditsError):
        err.update(balance_mils=exc.balance_mils, requested_mils=exc.requested_mils)
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        err["retry_after"] = exc.retry_after
    if isinstance(exc, InputValidationError):
        err["code"] = "input_validation"
    return {"type": "error", "error": err}
