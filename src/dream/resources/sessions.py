"""Streaming sessions: step-by-step rollouts that yield frames as they are made (sdk-surface §12).

    with client.sessions.create(model="pusht-96", initial_frame=frame) as session:
        for frame in session.submit_actions(actions):      # (H, W, 3) uint8, one per frame
            ...
        for frame in session.submit_actions(more_actions): # continues from the last frame
            ...

One generator API on both transports:

* over HTTP, ``POST /v1/sessions`` opens the session and a WebSocket streams it
  (wire-protocol §13; the messages are parsed once, in `_Pump`, for sync and async);
* on the embedded engine, the session runs in this process: each ``submit_actions``
  runs the engine chunk by chunk from the session's last frame (`plan_chunks`, the
  same chunking a ``dream serve`` server uses, so both transports yield the same frames).

The first rollout of a session also yields the initial frame, so it gives T + 1 frames
like ``predict``; later rollouts give T. Actions are checked before anything is sent
(2-D, and action_dim / chunk_size when the session knows its model's), raising
`InputValidationError` (a ValueError, as in 0.5.0). Failures while streaming raise
`SessionError`, a RuntimeError as in 0.5.0, with a machine-readable ``code``.

⚠ Deliberate differences from 0.5.0: ``create`` raises typed `DreamError`s instead of
raw ``httpx.HTTPStatusError`` (sdk-surface §20.4), and async sessions connect (0.5.0
passes ``additional_headers`` to the legacy ``websockets.client.connect``, a TypeError
on websockets 12 and 17; §20.3); we use ``websockets.asyncio.client`` (websockets ≥ 13)
or the legacy client's ``extra_headers`` on 12.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from dream.errors import InputValidationError, ModelNotActiveError

if TYPE_CHECKING:
    import numpy as np

    from dream.client.async_client import AsyncClient
    from dream.client.sync_client import Client

__all__ = ["AsyncSession", "AsyncSessions", "Session", "SessionError", "Sessions", "plan_chunks", "stream_chunk_len"]

DEFAULT_STREAM_CHUNK = 8  # actions per engine call while streaming (rounded up to the model's chunk_size)
WS_MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # our client accepts more than 0.5.0's 1 MiB
WS_OPEN_TIMEOUT_S = 10.0


class SessionError(RuntimeError):
    """A rollout failed while streaming (server ``error`` message, or the embedded engine).

    ``code`` is machine-readable (``engine_error``, ``insufficient_credits``,
    ``rate_limit``, ``input_validation``…); ``details`` holds the rest of the message.
    """

    def __init__(self, message: str, *, code: str = "unknown", details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = dict(details or {})


def stream_chunk_len(chunk_size: int, preferred: int = DEFAULT_STREAM_CHUNK) -> int:
    """Actions per engine call: `preferred` rounded up to a multiple of the model's chunk size."""
    c, p = max(1, int(chunk_size)), max(1, int(preferred))
    return -(-p // c) * c


def plan_chunks(num_actions: int, chunk_len: int) -> list[slice]:
    """Consecutive slices of the action sequence, each run as one engine call."""
    step = max(1, int(chunk_len))
    return [slice(i, min(i + step, num_actions)) for i in range(0, num_actions, step)]


def _decode_frame_b64(data: str) -> np.ndarray:
    """A base64 image (PNG, or JPEG for big frames) → (H, W, 3) uint8."""
    import numpy as np
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def _check_actions(actions: Any, envelope: dict[str, Any]) -> np.ndarray:
    """float32 (T, A), checked against the session's model when the envelope says it."""
    import numpy as np

    from dream.inputs import check_actions

    try:
        arr = np.asarray(actions, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputValidationError(f"actions: could not convert to a float32 array: {exc}") from exc
    if arr.ndim != 2:
        raise InputValidationError(f"actions must be 2-D (T, A); got {arr.ndim}-D")
    return check_actions(
        arr, action_dim=int(envelope.get("action_dim") or 0) or None, chunk_size=int(envelope.get("chunk_size") or 0) or None
    )


def _submit_message(arr: np.ndarray, num_steps: int | None, seed: int | None) -> str:
    msg: dict[str, Any] = {"type": "submit_actions", "actions": arr.tolist()}
    if num_steps is not None:
        msg["num_steps"] = int(num_steps)
    if seed is not None:
        msg["seed"] = int(seed)
    return json.dumps(msg)


class _Pump:
    """Interprets server messages for one rollout (shared by the sync and async sessions)."""

    def __init__(self, envelope: dict[str, Any]) -> None:
        self.envelope = envelope

    @staticmethod
    def started(raw: Any) -> None:
        try:
            payload = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise SessionError(f"unexpected first WS message (not JSON): {raw!r}", code="protocol") from exc
        if not isinstance(payload, dict) or payload.get("type") != "session_started":
            if isinstance(payload, dict) and payload.get("type") == "error":
                _Pump._raise(payload)
            raise SessionError(f"unexpected first WS message: {payload}", code="protocol")

    @staticmethod
    def _raise(payload: dict[str, Any]) -> None:
        err = payload.get("error") or {}
        code = str(err.get("code", "unknown"))
        raise SessionError(f"server error during stream: {code}: {err.get('message', '')}", code=code, details=err)

    def handle(self, raw: Any) -> tuple[str, Any]:
        """("frame", array) | ("done", None) | ("skip", None); raises SessionError on ``error``."""
        try:
            payload = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise SessionError(f"WS message not JSON: {raw!r}", code="protocol") from exc
        if not isinstance(payload, dict):
            return "skip", None
        kind = payload.get("type")
        if kind == "frame":
            return "frame", _decode_frame_b64(payload["data"])
        if kind == "rollout_complete":
            self.envelope["frames_streamed"] = int(payload.get("frames_streamed_total", self.envelope.get("frames_streamed", 0)))
            self.envelope["rollouts"] = int(self.envelope.get("rollouts", 0)) + 1
            return "done", None
        if kind == "billing":
            self.envelope["billing"] = {
                "frames_streamed": payload.get("frames_streamed"),
                "debited_mils": payload.get("debited_mils"),
                "balance_mils": payload.get("balance_mils"),
            }
            return "skip", None
        if kind == "error":
            self._raise(payload)
        return "skip", None  # pong and unknown types (forward compatible)


# --------------------------------------------------------------------------- embedded


class _LocalStream:
    """An in-process session on the embedded engine.

    It carries the model's rollout forward (`Engine.begin` → `SteppedRollouts`), so each
    chunk costs its own actions only and the frames equal one ``predict`` of every action
    submitted so far. A submit with other sampling parameters (a seed or num_steps that
    change the model's output) continues from the last frame with them.
    """

    def __init__(self, engine: Any, slug: str, frame: np.ndarray, seed: int, num_steps: int | None) -> None:
        self.engine = engine
        self.spec = engine.spec(slug)
        self.last_frame = frame
        self.seed = seed
        self.num_steps = num_steps
        self.echoed = False
        self.steps: Any = None  # SteppedRollouts, begun at the first chunk
        self._params: tuple[Any, ...] | None = None

    def chunks(self, actions: np.ndarray) -> list[slice]:
        return plan_chunks(int(actions.shape[0]), stream_chunk_len(self.spec.chunk_size))

    def run_chunk(self, chunk: np.ndarray, num_steps: int | None, seed: int | None) -> list[np.ndarray]:
        """One engine call; the frames to yield (the initial frame too, the first time)."""
        from dream.errors import DreamError

        try:
            frames = advance_session(
                self, chunk, seed if seed is not None else self.seed, num_steps if num_steps is not None else self.num_steps,
            )
        except DreamError as exc:
            code = "input_validation" if isinstance(exc, InputValidationError) else "engine_error"
            raise SessionError(f"engine error during stream: {code}: {exc.message}", code=code) from exc
        out = list(frames if not self.echoed else frames[1:])
        self.echoed = True
        return out


def advance_session(session: Any, chunk: np.ndarray, seed: int, num_steps: int | None) -> np.ndarray:
    """A session's next chunk of actions (n, A) on its engine: frames (n + 1, H, W, 3), the
    session's last frame first. Shared by the embedded sessions and ``dream serve``'s.

    `session` has ``engine``, ``spec``, ``last_frame``, ``steps`` and ``_params``. Its
    rollout is carried forward by `Engine.begin` / `SteppedRollouts.advance` (O(chunk)
    work, the frames of one ``predict`` of everything so far for families that step
    incrementally); it is begun from the last frame at the first chunk, and again when
    the seed or num_steps change and the spec uses them.
    """
    import numpy as np

    engine, spec = session.engine, session.spec
    params = (seed if spec.uses_seed else None, num_steps if spec.uses_num_steps else None)
    if session.steps is None or params != session._params:
        session.steps = engine.begin(session.last_frame, spec=spec.slug, seeds=[seed], num_steps=num_steps)
        session._params = params
    elif seed or num_steps is not None:
        engine.check_params(spec, num_steps, None, [seed])  # warns about knobs this spec ignores, as predict does
    try:
        drawn = session.steps.advance(np.asarray(chunk, np.float32)[None])[0]
    except BaseException:
        session.steps = None  # a failed chunk may have moved the rollout part way: the next one begins again
        raise
    frames = np.concatenate([session.last_frame[None], drawn])
    session.last_frame = frames[-1]
    return frames


def _local_envelope(slug: str, spec: Any, seed: int, num_steps: int | None) -> dict[str, Any]:
    return {
        "id": f"sess_{uuid.uuid4().hex}",
        "object": "session",
        "model": slug,
        "state": "open",
        "ws_url": "",
        "created": int(time.time()),
        "seed": seed,
        "num_steps": num_steps,
        "resolution": [spec.resolution[0], spec.resolution[1]],
        "action_dim": spec.action_dim,
        "chunk_size": spec.chunk_size,
        "frames_streamed": 0,
        "rollouts": 0,
        "billing": {"debited_mils": 0},
    }


def _open_local(engine: Any, model: str, initial_frame: Any, seed: int, num_steps: int | None) -> tuple[dict[str, Any], _LocalStream]:
    from dream.engine.engine import validate_num_steps, validate_seed
    from dream.inputs import fit_frame, frame_to_array

    spec = engine.spec(model)  # ModelNotFoundError for an unknown slug
    status = engine.weights_status(model)
    if not status.available:
        raise ModelNotActiveError(f"model {model!r} is not active on the embedded engine. {status.message}")
    s = validate_seed(seed)
    n = validate_num_steps(num_steps)
    frame = fit_frame(frame_to_array(initial_frame, what="initial_frame"), spec.resolution)
    return _local_envelope(spec.slug, spec, s, n), _LocalStream(engine, spec.slug, frame, s, n)


def _after_local_rollout(envelope: dict[str, Any], streamed: int) -> None:
    envelope["frames_streamed"] = int(envelope.get("frames_streamed", 0)) + streamed
    envelope["rollouts"] = int(envelope.get("rollouts", 0)) + 1
    envelope["billing"] = {"frames_streamed": envelope["frames_streamed"], "debited_mils": 0, "balance_mils": None}


def _ws_options(connect: Any, headers: list[tuple[str, str]]) -> dict[str, Any]:
    """Keyword arguments for a websockets ``connect`` (sync or asyncio flavour, any version ≥ 12)."""
    import inspect

    params = inspect.signature(connect).parameters
    opts: dict[str, Any] = {
        "additional_headers": [(k, v) for k, v in headers if k.lower() != "user-agent"],
        "max_size": WS_MAX_MESSAGE_BYTES,
        "open_timeout": WS_OPEN_TIMEOUT_S,
    }
    ua = next((v for k, v in headers if k.lower() == "user-agent"), None)
    if ua and "user_agent_header" in params:
        opts["user_agent_header"] = ua
    if "legacy" in params:  # websockets >= 16 wants a context manager unless told otherwise
        opts["legacy"] = True
    return opts


def _frame_bytes(initial_frame: Any) -> bytes:
    from dream.inputs import coerce_start_frame

    return coerce_start_frame(initial_frame)


# --------------------------------------------------------------------------- sync


class Session:
    """One streaming session; use as a context manager or call `close()`."""

    def __init__(self, *, envelope: dict[str, Any], client: Client, _local: _LocalStream | None = None) -> None:
        self._envelope = dict(envelope)
        self._client = client
        self._local = _local
        self._ws: Any = None
        self._closed = False

    @property
    def id(self) -> str:
        return str(self._envelope["id"])

    @property
    def model(self) -> str:
        return str(self._envelope["model"])

    @property
    def state(self) -> str:
        return str(self._envelope.get("state", "unknown"))

    @property
    def envelope(self) -> dict[str, Any]:
        """The latest session envelope (a copy), with ``frames_streamed`` and ``billing`` kept current."""
        return dict(self._envelope)

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, model={self.model!r}, state={self.state!r})"

    def _connect_ws(self) -> Any:
        if self._ws is not None:
            return self._ws
        try:
            from websockets.sync.client import connect
        except ImportError as exc:
            raise ImportError(
                "sessions over HTTP need the websockets package: pip install 'dream-engine[sessions]'"
            ) from exc
        from dream.client.http import ws_url

        self._ws = connect(
            ws_url(self._envelope, self._client.base_url),
            **_ws_options(connect, self._client._transport.ws_headers()),
        )
        try:
            _Pump.started(self._ws.recv())
        except BaseException:
            self._teardown_ws()
            raise
        return self._ws

    def submit_actions(self, actions: Any, *, num_steps: int | None = None, seed: int | None = None) -> Iterator[np.ndarray]:
        """Run `actions` (T, A) from the session's last frame; yield each (H, W, 3) uint8 frame.

        A generator: nothing is checked or sent until the first ``next()``.
        Raises InputValidationError for malformed actions, SessionError when the rollout fails.
        """
        if self._closed:
            raise RuntimeError("session is closed")
        arr = _check_actions(actions, self._envelope)
        if self._local is not None:
            yield from self._submit_local(arr, num_steps, seed)
            return
        ws = self._connect_ws()
        pump = _Pump(self._envelope)
        try:
            ws.send(_submit_message(arr, num_steps, seed))
            while True:
                kind, value = pump.handle(ws.recv())
                if kind == "frame":
                    yield value
                elif kind == "done":
                    return
        except BaseException:
            self._teardown_ws()
            raise

    def _submit_local(self, arr: np.ndarray, num_steps: int | None, seed: int | None) -> Iterator[np.ndarray]:
        local = self._local
        assert local is not None
        streamed = 0
        self._envelope["state"] = "streaming"
        try:
            for part in local.chunks(arr):
                for frame in local.run_chunk(arr[part], num_steps, seed):
                    streamed += 1
                    yield frame
        finally:
            self._envelope["state"] = "open"
            _after_local_rollout(self._envelope, streamed)

    def _teardown_ws(self) -> None:
        if self._ws is None:
            return
        with contextlib.suppress(Exception):
            self._ws.close()
        self._ws = None

    def close(self) -> None:
        """Stop streaming, close the WebSocket and the server-side session. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        self._envelope["state"] = "closed"
        if self._local is not None:
            return
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.send(json.dumps({"type": "control", "command": "stop"}))
            self._teardown_ws()
        final = self._client._transport.session_delete(self.id)
        if isinstance(final, dict):
            self._envelope.update({k: v for k, v in final.items() if k in ("state", "frames_streamed", "billing")})

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Sessions:
    """``client.sessions``: open streaming sessions."""

    def __init__(self, *, client: Client) -> None:
        self._client = client

    def create(
        self,
        *,
        model: str,
        initial_frame: Any,
        seed: int = 0,
        num_steps: int | None = None,
        timeout_s: float | None = None,
    ) -> Session:
        """Open a session of `model` starting from `initial_frame` (array, PIL image, bytes or path).

        Raises ModelNotFoundError (unknown model), InputValidationError (bad frame),
        AuthError / RateLimitError / … from a server. Not retried: a retry could open two sessions.
        """
        if self._client.is_local:
            envelope, local = _open_local(self._client.engine, model, initial_frame, seed, num_steps)
            return Session(envelope=envelope, client=self._client, _local=local)
        envelope = self._client._transport.session_create(
            model=model, frame_bytes=_frame_bytes(initial_frame), seed=seed, num_steps=num_steps, timeout_s=timeout_s
        )
        return Session(envelope=envelope, client=self._client)


# --------------------------------------------------------------------------- async


async def _async_connect(url: str, headers: list[tuple[str, str]]) -> Any:
    """Connect with whichever async client this websockets has (the 0.5.0 bug, fixed)."""
    try:
        from websockets.asyncio.client import connect  # websockets >= 13
    except ImportError:
        try:
            from websockets.legacy.client import connect as legacy_connect  # websockets 12
        except ImportError as exc:
            raise ImportError(
                "sessions over HTTP need the websockets package: pip install 'dream-engine[sessions]'"
            ) from exc
        return await legacy_connect(url, extra_headers=headers, max_size=WS_MAX_MESSAGE_BYTES,
                                    open_timeout=WS_OPEN_TIMEOUT_S)
    return await connect(url, **_ws_options(connect, headers))


class AsyncSession:
    """Async twin of `Session` (``async for frame in session.submit_actions(...)``)."""

    def __init__(self, *, envelope: dict[str, Any], client: AsyncClient, _local: _LocalStream | None = None) -> None:
        self._envelope = dict(envelope)
        self._client = client
        self._local = _local
        self._ws: Any = None
        self._closed = False

    id = Session.id
    model = Session.model
    state = Session.state
    envelope = Session.envelope
    closed = Session.closed

    def __repr__(self) -> str:
        return f"AsyncSession(id={self.id!r}, model={self.model!r}, state={self.state!r})"

    async def _connect_ws(self) -> Any:
        if self._ws is not None:
            return self._ws
        from dream.client.http import ws_url

        transport = self._client._transport
        self._ws = await _async_connect(ws_url(self._envelope, self._client.base_url), transport.ws_headers())
        try:
            _Pump.started(await self._ws.recv())
        except BaseException:
            await self._teardown_ws()
            raise
        return self._ws

    async def submit_actions(
        self, actions: Any, *, num_steps: int | None = None, seed: int | None = None
    ) -> AsyncIterator[np.ndarray]:
        """Async-iterator twin of `Session.submit_actions`."""
        if self._closed:
            raise RuntimeError("session is closed")
        arr = _check_actions(actions, self._envelope)
        if self._local is not None:
            async for frame in self._submit_local(arr, num_steps, seed):
                yield frame
            return
        ws = await self._connect_ws()
        pump = _Pump(self._envelope)
        try:
            await ws.send(_submit_message(arr, num_steps, seed))
            while True:
                kind, value = pump.handle(await ws.recv())
                if kind == "frame":
                    yield value
                elif kind == "done":
                    return
        except BaseException:
            await self._teardown_ws()
            raise

    async def _submit_local(self, arr: np.ndarray, num_steps: int | None, seed: int | None) -> AsyncIterator[np.ndarray]:
        local = self._local
        assert local is not None
        streamed = 0
        self._envelope["state"] = "streaming"
        try:
            for part in local.chunks(arr):
                frames = await asyncio.to_thread(local.run_chunk, arr[part], num_steps, seed)
                for frame in frames:
                    streamed += 1
                    yield frame
        finally:
            self._envelope["state"] = "open"
            _after_local_rollout(self._envelope, streamed)

    async def _teardown_ws(self) -> None:
        if self._ws is None:
            return
        with contextlib.suppress(Exception):
            await self._ws.close()
        self._ws = None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._envelope["state"] = "closed"
        if self._local is not None:
            return
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.send(json.dumps({"type": "control", "command": "stop"}))
            await self._teardown_ws()
        final = await self._client._transport.session_delete(self.id)
        if isinstance(final, dict):
            self._envelope.update({k: v for k, v in final.items() if k in ("state", "frames_streamed", "billing")})

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class AsyncSessions:
    """``async_client.sessions``."""

    def __init__(self, *, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        model: str,
        initial_frame: Any,
        seed: int = 0,
        num_steps: int | None = None,
        timeout_s: float | None = None,
    ) -> AsyncSession:
        if self._client.is_local:
            envelope, local = await asyncio.to_thread(
                _open_local, self._client.engine, model, initial_frame, seed, num_steps
            )
            return AsyncSession(envelope=envelope, client=self._client, _local=local)
        envelope = await self._client._transport.session_create(
            model=model, frame_bytes=_frame_bytes(initial_frame), seed=seed, num_steps=num_steps, timeout_s=timeout_s
        )
        return AsyncSession(envelope=envelope, client=self._client)
