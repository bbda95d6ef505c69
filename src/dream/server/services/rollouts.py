"""Rollouts as a service: validate → (replay?) → limit → reserve → engine → settle/refund.

Nothing here knows HTTP. Routes hand over raw part bytes and form values; this module
decodes them with `dream.inputs` (the same checks and messages as the embedded engine),
runs them, and returns plain result objects that routes encode (JSON envelope, raw mp4
with headers, or a tar).

The order of a single rollout, and why:

1. validate params and actions, look up the spec, read the start frame's header
   (format, size, bit depth; no decoding) against the frame budget → 422 / 413
2. idempotency record (explicit key, else the request's content): a finished twin is
   replayed without running or charging; a running twin is waited for
3. the key's concurrent-rollout slot             → 429
4. reserve the expected charge                   → 402 before any engine work
5. decode the start frame (a few decodes at a time server-wide), so a caller without
   credit or over its limits never makes the server allocate a frame's pixels
6. engine (through the dynamic batcher), mp4 encode, store the video
7. settle, storing the idempotent result in the same transaction; on any failure
   refund instead (the one failure path: every exception passes through it)
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from dream.errors import (
    DreamError,
    InputValidationError,
    ModelNotFoundError,
    PayloadTooLargeError,
    ServerError,
    ValidationError,
)
from dream.server.services.batcher import BatchItem
from dream.server.services.db import new_id, rollout_records
from dream.server.services.idempotency import Completer, StoredResult, check_key, fingerprint, run_cleanup
from dream.server.services.ledger import Principal, Reservation, usd_to_mils
from dream.server.services.limiter import HeldSlot

if TYPE_CHECKING:
    import numpy as np

    from dream.engine.specs import EngineSpec
    from dream.server.services.container import Services

logger = logging.getLogger("dream.server.rollouts")


class StillLoadingError(ServerError):
    """503 while a model loads: expected during warm-up, so logged at INFO, not ERROR."""

    log_level = logging.INFO


class UnknownModelError(ValidationError):
    """A request names a model this server does not serve (HTTP 422, never 404: a 404 on
    /v1/rollouts makes the 0.5.0 client rerun the request on /v1/predict; wire-protocol §7.3)."""

    http_status = 422
    error_code = "model_not_found"


class RolloutNotFound(ModelNotFoundError):
    """GET /v1/rollouts/{id} for an id this customer does not own (HTTP 404)."""


def cost_mils(spec: EngineSpec, num_actions: int, k: int = 1) -> int:
    """What `k` rollouts of `num_actions` actions are charged, in whole mils."""
    return usd_to_mils(spec.price_per_frame_usd * spec.frames_for(num_actions)) * k


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SingleJob:
    """One validated single rollout; its start frame is still encoded (header checked)."""

    spec: EngineSpec
    frame_bytes: bytes  # PNG or JPEG, decoded only after the reservation
    actions: np.ndarray  # float32 (T, A)
    seed: int
    num_steps: int | None
    guidance: float | None
    frame_part: str = "frame"  # the part's name, for messages

    def fingerprint(self, kind: str) -> str:
        return fingerprint(
            kind, self.spec.slug, self.seed, self.num_steps, self.guidance,
            self.frame_bytes, list(self.actions.shape), self.actions.tobytes(),
        )


@dataclass(frozen=True)
class BatchJob:
    spec: EngineSpec
    frame_bytes: bytes
    actions: np.ndarray  # float32 (K, T, A)
    seed: int
    num_steps: int | None
    guidance: float | None

    def fingerprint(self) -> str:
        return fingerprint(
            "batch", self.spec.slug, self.seed, self.num_steps, self.guidance,
            self.frame_bytes, list(self.actions.shape), self.actions.tobytes(),
        )


class RequestTooLargeError(PayloadTooLargeError):
    """A request over the server's per-request frame budget (HTTP 413); the message names it."""

    error_code = "request_too_large"


# --------------------------------------------------------------------------- results


class _StoredMeta:
    """What single and batch results share: their price in USD, and their idempotency
    record's JSON meta (every field but the body).

    `replayed` and the body (mp4 / tar bytes, stored beside the meta) are left out; a
    field missing from an older record takes its default.
    """

    KIND: ClassVar[str]
    _NOT_IN_META: ClassVar[frozenset[str]] = frozenset({"replayed", "mp4", "tar"})

    @property
    def cost_usd(self) -> float:
        return self.cost_mils / 10_000  # type: ignore[attr-defined]

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.KIND}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name not in self._NOT_IN_META:
                out[f.name] = getattr(self, f.name)
        out["resolution"] = list(out["resolution"])
        return out

    @classmethod
    def _from_stored(cls, stored: StoredResult, **body: Any) -> Any:
        m = stored.meta
        values = {f.name: m[f.name] for f in fields(cls) if f.name not in cls._NOT_IN_META and f.name in m}  # type: ignore[arg-type]
        values["resolution"] = (int(m["resolution"][0]), int(m["resolution"][1]))
        return cls(**values, replayed=True, **body)


@dataclass(frozen=True)
class SingleResult(_StoredMeta):
    KIND = "single"

    rollout_id: str
    request_id: str  # of the request that ran it
    model: str
    created: int
    num_frames: int
    resolution: tuple[int, int]
    engine_wall_ms: float
    cost_mils: int
    seed: int
    customer_id: str
    video_id: str
    fused: int = 1
    replayed: bool = False
    mp4: bytes = field(default=b"", repr=False)

    @classmethod
    def from_stored(cls, stored: StoredResult) -> SingleResult:
        return cls._from_stored(stored, mp4=stored.body)

    def envelope(self, video_url: str, expires_at: int) -> dict[str, Any]:
        """wire-protocol §7.2, keys in the SDK's to_json order (+ status)."""
        return {
            "id": self.rollout_id,
            "object": "rollout",
            "model": self.model,
            "created": self.created,
            "frames": self.num_frames,
            "resolution": [self.resolution[0], self.resolution[1]],
            "engine_wall_ms": round(self.engine_wall_ms, 3),
            "psnr_db": None,
            "ssim": None,
            "lpips": None,
            "cost_usd": self.cost_usd,
            "video_url": video_url,
            "video_url_expires_at": expires_at,
            "seed": self.seed,
            "status": "succeeded",
        }


@dataclass(frozen=True)
class BatchResult(_StoredMeta):
    KIND = "batch"

    request_id: str
    model: str
    batch_size: int
    num_frames: int
    resolution: tuple[int, int]
    engine_wall_ms: float
    cost_mils: int
    seed: int
    customer_id: str
    replayed: bool = False
    tar: bytes = field(default=b"", repr=False)

    @classmethod
    def from_stored(cls, stored: StoredResult) -> BatchResult:
        return cls._from_stored(stored, tar=stored.body)


def tar_of(mp4s: list[bytes]) -> bytes:
    """rollout_000.mp4, rollout_001.mp4, … (wire-protocol §10; 4 digits past K = 1000)."""
    width = max(3, len(str(len(mp4s) - 1)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for k, mp4 in enumerate(mp4s):
            info = tarfile.TarInfo(f"rollout_{k:0{width}d}.mp4")
            info.size = len(mp4)
            info.mtime = 0  # same inputs → same tar bytes
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(mp4))
    return buf.getvalue()


# --------------------------------------------------------------------------- service


class RolloutService:
    """Runs single, batch and async rollouts with billing, limits and idempotency."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.settings = svc.settings
        self._jobs: set[asyncio.Task[None]] = set()
        self._decodes = asyncio.Semaphore(self.settings.max_concurrent_decodes)

    # ----------------------------------------------------------------- parsing

    def spec(self, slug: str | None) -> EngineSpec:
        """The served spec `slug` (None: the server default); 422 for anything else."""
        slug = slug or self.settings.default_spec
        if slug not in self.settings.specs:
            raise UnknownModelError(
                f"model {slug!r} is not served here; served: {', '.join(self.settings.specs)} (GET /v1/models)",
                status_code=422,
            )
        return self.svc.engine.spec(slug)

    def _params(self, seed: Any, num_steps: Any, guidance: Any) -> tuple[int, int | None, float | None]:
        from dream.engine.engine import validate_guidance, validate_num_steps, validate_seed

        def blank(v: Any) -> Any:
            return None if v is None or (isinstance(v, str) and not v.strip()) else v

        return (
            validate_seed(0 if blank(seed) is None else seed),
            validate_num_steps(blank(num_steps)),
            validate_guidance(blank(guidance)),
        )

    def check_budget(self, T: int, K: int = 1) -> None:
        """K rollouts of T actions against max_actions_T (422) and max_request_frames (413)."""
        if self.settings.max_actions_T < T:
            raise InputValidationError(f"actions has T={T} steps; this server takes at most {self.settings.max_actions_T}")
        frames, budget = K * (T + 1), self.settings.max_request_frames
        if frames > budget:
            raise RequestTooLargeError(
                f"this request asks for K={K} × (T + 1)={T + 1} = {frames} frames; this server's max_request_frames "
                f"is {budget} per request (split it into smaller requests)",
                status_code=413,
            )

    # ----------------------------------------------------------------- start frames

    def max_frame_pixels(self, spec: EngineSpec) -> int:
        """Pixels (8-bit RGB equivalent) a start frame for `spec` may declare."""
        if self.settings.max_frame_pixels is not None:
            return self.settings.max_frame_pixels
        h, w = spec.resolution
        return max(36 * h * w, 1920 * 1080)

    def check_frame(self, spec: EngineSpec, data: bytes, what: str) -> None:
        """Refuse a start frame from its header alone: not PNG/JPEG, or over the pixel budget.

        The budget is in decoded bytes (pixels × 3 at 8 bits), so a 16-bit or alpha frame
        gets proportionally fewer pixels: what a decoder would allocate is what is bounded.
        """
        from dream.inputs import MAX_FRAME_BYTES, read_image_header

        if len(data) > MAX_FRAME_BYTES:
            raise InputValidationError(f"{what}: {len(data)} bytes is over the {MAX_FRAME_BYTES}-byte limit")
        header = read_image_header(data, what=what)
        limit = self.max_frame_pixels(spec)
        if header.decoded_bytes > 3 * limit:
            raise InputValidationError(
                f"{what}: {header.format} header declares {header.width}x{header.height} pixels, "
                f"{header.channels} channel(s) at {header.bit_depth} bits = {header.decoded_bytes} decoded bytes; "
                f"this server takes at most {3 * limit} ({limit} RGB pixels at 8 bits, max_frame_pixels) "
                f"for {spec.slug} ({spec.resolution[0]}x{spec.resolution[1]}); downscale the frame first"
            )

    async def decode_frame(self, spec: EngineSpec, data: bytes, what: str) -> np.ndarray:
        """Decode a header-checked start frame and fit it to the spec's resolution.

        At most `max_concurrent_decodes` run at once server-wide (each may hold a full
        frame's pixels); the fitted frame is small, so queued rollouts hold little.
        """
        from dream.inputs import decode_image_bytes, fit_frame

        async with self._decodes:
            return await asyncio.to_thread(lambda: fit_frame(decode_image_bytes(data, what=what), spec.resolution))

    def parse_single(
        self, *, model: str | None, frame_bytes: bytes, actions_bytes: bytes, seed: Any, num_steps: Any, guidance: Any,
        frame_part: str = "frame",
    ) -> SingleJob:
        """Validate one rollout's parts (CPU: run it in a thread); the frame's header only."""
        from dream.inputs import actions_to_array

        spec = self.spec(model)
        s, n, g = self._params(seed, num_steps, guidance)
        self.check_frame(spec, frame_bytes, frame_part)
        actions = actions_to_array(actions_bytes, action_dim=spec.action_dim, chunk_size=spec.chunk_size)
        self.check_budget(int(actions.shape[0]))
        return SingleJob(spec, bytes(frame_bytes), actions, s, n, g, frame_part)

    def parse_batch(
        self, *, model: str | None, frame_bytes: bytes, actions_list: list[bytes], seed: Any, num_steps: Any, guidance: Any
    ) -> BatchJob:
        import numpy as np

        from dream.inputs import actions_to_array

        spec = self.spec(model)
        s, n, g = self._params(seed, num_steps, guidance)
        self.check_frame(spec, frame_bytes, "frame")
        if not actions_list:
            raise InputValidationError("actions list is empty; need at least one entry.")
        if len(actions_list) > self.settings.max_batch_k:
            raise InputValidationError(
                f"predict_batch takes at most K={self.settings.max_batch_k} candidates here; got K={len(actions_list)}"
            )
        arrays = [
            actions_to_array(b, action_dim=spec.action_dim, chunk_size=spec.chunk_size, what=f"actions[{i}]")
            for i, b in enumerate(actions_list)
        ]
        lengths = sorted({int(a.shape[0]) for a in arrays})
        if len(lengths) > 1:
            raise InputValidationError(f"actions for predict_batch must all have the same length T; got lengths {lengths}")
        self.check_budget(lengths[0], len(arrays))
        return BatchJob(spec, bytes(frame_bytes), np.stack(arrays), s, n, g)

    # ----------------------------------------------------------------- idempotency

    def _idem_key(self, key: str | None, fp: str) -> tuple[str, float] | None:
        if key is not None:
            return check_key(key), self.settings.idempotency_ttl_s
        if self.settings.implicit_idempotency_s > 0:
            return f"implicit:{fp}", self.settings.implicit_idempotency_s
        return None

    # ----------------------------------------------------------------- money

    def _take_and_reserve(
        self, principal: Principal, amount: int, request_id: str, detail: str
    ) -> tuple[HeldSlot, Reservation | None]:
        """The key's rollout slot (429), then the reservation (402): one transaction (blocking)."""
        limiter = self.svc.limiter
        cap, key = limiter.cap(principal), principal.limiter_key
        if not (principal.billed and amount > 0):
            return limiter.take(principal), None
        slots: list[str] = []
        rsv = self.svc.ledger.reserve(
            principal.customer_id, amount, request_id=request_id, detail=detail,
            first=(lambda conn: slots.append(limiter.acquire_in(conn, key, cap))) if cap > 0 else None,
        )
        return HeldSlot(limiter, key, slots[0] if slots else None), rsv

    async def _reserve(self, principal: Principal, amount: int, request_id: str, detail: str) -> Reservation | None:
        if not principal.billed or amount <= 0:
            return None
        return await asyncio.to_thread(self.svc.ledger.reserve, principal.customer_id, amount, request_id=request_id, detail=detail)

    def _settle_now(self, rsv: Reservation | None, also: list[Callable[[Connection], None]]) -> None:
        """Settle (blocking), running `also` in the same transaction."""

        def run_all(conn: Connection) -> None:
            for fn in also:
                fn(conn)

        if rsv is not None:
            self.svc.ledger.settle(rsv, also=run_all)
        elif also:
            with self.svc.db.begin() as conn:
                run_all(conn)

    async def _settle(self, rsv: Reservation | None, also: list[Callable[[Connection], None]]) -> None:
        await asyncio.to_thread(self._settle_now, rsv, also)

    async def _refund(self, rsv: Reservation | None, spec: str, reason: str) -> None:
        if rsv is None:
            return
        if await run_cleanup(self.svc.ledger.refund, rsv, reason=reason):
            self.svc.metrics.refunded_mils.labels(spec).inc(rsv.amount_mils)

    # ----------------------------------------------------------------- engine

    async def require_loaded(self, spec: EngineSpec) -> None:
        """Return once `spec` can run. A request that arrives while it is still loading is
        held (up to `warmup_hold_s`) instead of refused, so a client started together with
        the server, whose retries would run out first, just waits; then 503."""
        ready = self.svc.readiness
        hold_s = float(self.svc.settings.warmup_hold_s)
        if not ready.is_loaded(spec.slug) and spec.slug not in ready.errors and not ready.finished and hold_s > 0:
            logger.info("holding a request for %s while it loads (up to %.0f s)", spec.slug, hold_s)
            t0 = time.perf_counter()
            await asyncio.to_thread(ready.wait_for, spec.slug, hold_s)
            logger.info("held a request for %s %.1f s while it loaded", spec.slug, time.perf_counter() - t0)
        if not ready.is_loaded(spec.slug):
            err = ready.errors.get(spec.slug)
            if err:
                raise ServerError(f"model {spec.slug!r} cannot run on this server: {err}", status_code=503)
            raise StillLoadingError(
                f"model {spec.slug!r} is still loading (held {hold_s:.0f} s); retry shortly", status_code=503
            )

    def run_items(self, items: list[BatchItem]) -> Any:
        """The batcher's engine call (in the engine executor)."""
        engine = self.svc.engine
        first = items[0]
        t0 = time.perf_counter()
        if len(items) == 1:
            res = engine.predict(
                first.frame, first.actions, spec=first.spec, num_steps=first.num_steps, guidance=first.guidance, seed=first.seed
            )
        else:
            res = engine.predict_fused(
                [it.frame for it in items], [it.actions for it in items], spec=first.spec, seeds=[it.seed for it in items],
                num_steps=first.num_steps, guidance=first.guidance,
            )
        self.svc.metrics.engine_seconds.labels(first.spec).observe(time.perf_counter() - t0)
        self.svc.metrics.engine_latency.add(res.wall_ms)
        return res

    # ----------------------------------------------------------------- single

    async def single(
        self, principal: Principal, job: SingleJob, *, request_id: str, idempotency_key: str | None
    ) -> SingleResult:
        await self.require_loaded(job.spec)
        fp = job.fingerprint("single")
        return await self.svc.idem.run(
            principal.customer_id,
            self._idem_key(idempotency_key, fp),
            fp,
            lambda complete: self._run_single(principal, job, request_id, complete),
            self._replay_single,
            "single",
            rerun=lambda stored: self._rerun_single(principal, job, stored),
        )

    def _replay_single(self, stored: StoredResult) -> SingleResult:
        result = SingleResult.from_stored(stored)
        if not self.svc.videos.exists(result.video_id):
            self.svc.videos.put(result.video_id, result.mp4)
        return result

    async def _rerun_single(self, principal: Principal, job: SingleJob, stored: StoredResult) -> SingleResult:
        """A replay of a rollout paid for on another replica whose body is not readable here:
        the engine runs again, uncharged (same inputs, same bytes), under the key's slot."""
        async with self.svc.limiter.slot(principal):
            encode, wall_ms, _fused = await self._compute_single(principal, job, None)

            def finish() -> SingleResult:
                mp4 = encode()
                self.svc.idempotency.keep_body(stored, mp4)
                return self._replay_single(StoredResult(stored.meta, mp4, stored.ref))

            result = await asyncio.to_thread(finish)
        self._count_rerun("single", job.spec.slug, result.num_frames)
        logger.info("rollout %s replayed by running it again uncharged (engine_wall_ms=%.1f): its result body "
                    "is kept by another replica", result.rollout_id, wall_ms)
        return result

    def _count_rerun(self, kind: str, slug: str, frames: int) -> None:
        self.svc.metrics.reruns.labels(kind).inc()
        self.svc.metrics.frames.labels(slug).inc(frames)

    async def _compute_single(
        self, principal: Principal, job: SingleJob, frame: np.ndarray | None
    ) -> tuple[Callable[[], bytes], float, int]:
        """The engine part of one rollout: (a blocking function giving its mp4, engine ms, rollouts fused).

        Short rollouts go through the dynamic batcher (the mp4 is encoded by the function,
        off the event loop); long ones stream chunk by chunk (already encoded)."""
        spec = job.spec
        if frame is None:
            frame = await self.decode_frame(spec, job.frame_bytes, job.frame_part)
        if self.settings.stream_min_frames < int(job.actions.shape[0]) + 1:
            mp4s, wall_ms = await self.stream_rollouts(
                principal, spec, frame, job.actions[None], job.seed, job.num_steps, job.guidance
            )
            return (lambda: mp4s[0]), wall_ms, 1
        item = await self.svc.batcher.submit(
            BatchItem(spec.slug, frame, job.actions, job.seed, job.num_steps, job.guidance, customer=principal.customer_id)
        )
        return (lambda: self.svc.engine.encode_mp4(item.frames, spec.slug)), float(item.result.wall_ms), item.fused

    async def _run_single(
        self,
        principal: Principal,
        job: SingleJob,
        request_id: str,
        complete: Completer | None,
        *,
        queued: bool = False,
        rsv: Reservation | None = None,
        rollout_id: str | None = None,
        frame: np.ndarray | None = None,
    ) -> SingleResult:
        """One rollout, charged. `queued`: an async job's, whose slot and reservation (`rsv`,
        None when unbilled) were taken when it was queued."""
        spec = job.spec
        T = int(job.actions.shape[0])
        amount = cost_mils(spec, T)
        held: HeldSlot | None = None
        if not queued:
            held, rsv = await asyncio.to_thread(
                self._take_and_reserve, principal, amount, request_id, f"predict · {spec.slug} · {T + 1} frames"
            )
        try:
            encode, wall_ms, fused = await self._compute_single(principal, job, frame)

            def finish() -> SingleResult:
                # One worker-thread hop for everything after the engine: encode, store, settle
                # (and give the slot back in the settle's transaction).
                data = encode()
                done = SingleResult(
                    rollout_id=rollout_id or new_id("rollout"), request_id=request_id, model=spec.slug,
                    created=int(time.time()), num_frames=T + 1, resolution=spec.resolution,
                    engine_wall_ms=wall_ms, cost_mils=amount if principal.billed else 0,
                    seed=job.seed, customer_id=principal.customer_id, video_id=new_id("vid"), fused=fused,
                    mp4=data,
                )
                self.svc.videos.put(done.video_id, data)
                also = [self._record_rollout(principal, done)]
                if complete is not None:
                    also.append(complete(StoredResult(done.meta(), data)))
                if held is not None:
                    also.append(held.release_in)
                self._settle_now(rsv, also)
                if held is not None:
                    held.released = True
                return done

            result = await asyncio.to_thread(finish)
        except BaseException as exc:
            self.svc.metrics.rollouts.labels(spec.slug, "failed").inc()
            await self._refund(rsv, spec.slug, f"{type(exc).__name__} during predict · {spec.slug}")
            raise
        finally:
            if held is not None and not held.released:
                await run_cleanup(held.release)
        m = self.svc.metrics
        m.rollouts.labels(spec.slug, "succeeded").inc()
        m.frames.labels(spec.slug).inc(result.num_frames)
        if rsv is not None:
            m.charged_mils.labels(spec.slug).inc(rsv.amount_mils)
        logger.info(
            "rollout %s spec=%s T=%d fused=%d engine_wall_ms=%.1f charged_mils=%d",
            result.rollout_id, spec.slug, T, fused, wall_ms, result.cost_mils,
        )
        return result

    async def stream_rollouts(
        self,
        principal: Principal,
        spec: EngineSpec,
        frame: np.ndarray,
        actions: np.ndarray,
        seed: int,
        num_steps: int | None,
        guidance: float | None,
    ) -> tuple[list[bytes], float]:
        """K rollouts from one start frame, computed and encoded chunk by chunk: (mp4s, engine ms).

        Each chunk takes one engine turn of this customer's (round-robin with the others),
        then is encoded off the engine thread while other work runs; memory holds one chunk
        plus the K growing mp4s. Past `max_request_wall_s` the request stops with 413.
        """
        from dream.engine.video import Mp4Writer

        engine, loop = self.svc.engine, asyncio.get_running_loop()
        K = int(actions.shape[0])
        deadline = time.monotonic() + self.settings.max_request_wall_s
        t0 = time.perf_counter()
        stream = await loop.run_in_executor(
            self.svc.engine_executor,
            lambda: engine.stream([frame], actions, spec=spec.slug, seeds=[seed] * K, num_steps=num_steps,
                                  guidance=guidance, chunk_frames=self.settings.stream_chunk_frames),
        )
        writers = [Mp4Writer(spec.fps) for _ in range(K)]

        def encode(chunk: np.ndarray) -> None:
            for k, writer in enumerate(writers):
                writer.write(chunk[k])

        try:
            while not stream.done:
                async with self.svc.scheduler.turn(principal.customer_id):
                    chunk = await loop.run_in_executor(self.svc.engine_executor, stream.next_chunk)
                assert chunk is not None  # a stream not done has another chunk
                await asyncio.to_thread(encode, chunk)
                del chunk
                if time.monotonic() > deadline and not stream.done:
                    raise RequestTooLargeError(
                        f"this request ran past this server's max_request_wall_s of {self.settings.max_request_wall_s:g} s "
                        f"after {stream.frames_done} of {stream.num_frames} frames per rollout (K={K}); it was stopped "
                        "and refunded: split it into shorter requests",
                        status_code=413,
                    )
            mp4s = await asyncio.to_thread(lambda: [w.finish() for w in writers])
        finally:
            for w in writers:
                w.close()
            if not stream.done:
                await loop.run_in_executor(self.svc.engine_executor, stream.close)
        self.svc.metrics.engine_seconds.labels(spec.slug).observe(time.perf_counter() - t0)
        self.svc.metrics.engine_latency.add(stream.wall_ms)
        return mp4s, stream.wall_ms

    def _record_rollout(self, principal: Principal, result: SingleResult) -> Callable[[Connection], None]:
        def run(conn: Connection) -> None:
            envelope = result.envelope("", 0)
            now = time.time()
            row = conn.execute(select(rollout_records.c.id).where(rollout_records.c.id == result.rollout_id)).first()
            values = {
                "customer_id": principal.customer_id, "status": "succeeded", "updated": now,
                "envelope": json.dumps(envelope), "video_id": result.video_id, "error": None,
                "video_base": self._video_base(),
            }
            if row is None:
                conn.execute(rollout_records.insert().values(id=result.rollout_id, created=now, **values))
            else:
                conn.execute(update(rollout_records).where(rollout_records.c.id == result.rollout_id).values(**values))

        return run

    # ----------------------------------------------------------------- batch

    async def batch(
        self, principal: Principal, job: BatchJob, *, request_id: str, idempotency_key: str | None
    ) -> BatchResult:
        await self.require_loaded(job.spec)
        fp = job.fingerprint()
        return await self.svc.idem.run(
            principal.customer_id,
            self._idem_key(idempotency_key, fp),
            fp,
            lambda complete: self._run_batch(principal, job, request_id, complete),
            BatchResult.from_stored,
            "batch",
            rerun=lambda stored: self._rerun_batch(principal, job, stored),
        )

    async def _compute_batch(self, principal: Principal, job: BatchJob) -> tuple[bytes, float]:
        """The engine part of a batch: (its tar of K mp4s, engine ms)."""
        frame = await self.decode_frame(job.spec, job.frame_bytes, "frame")
        self.svc.metrics.fused_batch_size.observe(int(job.actions.shape[0]))
        mp4s, wall_ms = await self.stream_rollouts(
            principal, job.spec, frame, job.actions, job.seed, job.num_steps, job.guidance
        )
        return await asyncio.to_thread(tar_of, mp4s), wall_ms

    async def _rerun_batch(self, principal: Principal, job: BatchJob, stored: StoredResult) -> BatchResult:
        """`_rerun_single` for a batch: paid for on another replica, run again here uncharged."""
        async with self.svc.limiter.slot(principal):
            tar, wall_ms = await self._compute_batch(principal, job)
        await asyncio.to_thread(self.svc.idempotency.keep_body, stored, tar)
        result = BatchResult.from_stored(StoredResult(stored.meta, tar, stored.ref))
        self._count_rerun("batch", job.spec.slug, result.batch_size * result.num_frames)
        logger.info("batch %s replayed by running it again uncharged (engine_wall_ms=%.1f): its result body is "
                    "kept by another replica", result.request_id, wall_ms)
        return result

    async def _run_batch(
        self,
        principal: Principal,
        job: BatchJob,
        request_id: str,
        complete: Completer | None,
    ) -> BatchResult:
        spec = job.spec
        K, T = int(job.actions.shape[0]), int(job.actions.shape[1])
        amount = cost_mils(spec, T, K)
        async with self.svc.limiter.slot(principal):
            rsv = await self._reserve(principal, amount, request_id, f"predict_batch · {spec.slug} · {K}×{T + 1} frames")
            try:
                tar, wall_ms = await self._compute_batch(principal, job)
                result = BatchResult(
                    request_id=request_id, model=spec.slug, batch_size=K, num_frames=T + 1, resolution=spec.resolution,
                    engine_wall_ms=wall_ms, cost_mils=amount if principal.billed else 0, seed=job.seed,
                    customer_id=principal.customer_id, tar=tar,
                )
                also = [complete(StoredResult(result.meta(), tar))] if complete is not None else []
                await self._settle(rsv, also)
            except BaseException as exc:
                self.svc.metrics.rollouts.labels(spec.slug, "failed").inc(K)
                await self._refund(rsv, spec.slug, f"{type(exc).__name__} during predict_batch · {spec.slug}")
                raise
        m = self.svc.metrics
        m.rollouts.labels(spec.slug, "succeeded").inc(K)
        m.frames.labels(spec.slug).inc(K * (T + 1))
        if rsv is not None:
            m.charged_mils.labels(spec.slug).inc(rsv.amount_mils)
        logger.info("batch %s spec=%s K=%d T=%d engine_wall_ms=%.1f", request_id, spec.slug, K, T, wall_ms)
        return result

    # ----------------------------------------------------------------- async mode

    async def submit_async(
        self,
        principal: Principal,
        job: SingleJob,
        *,
        request_id: str,
        idempotency_key: str | None,
        webhook_url: str | None,
        base_url: str,
    ) -> dict[str, Any]:
        """Queue a rollout: 402/429 now, the run in the background; returns the record."""
        await self.require_loaded(job.spec)
        fp = job.fingerprint("job")
        rid = await self.svc.idem.run(
            principal.customer_id,
            self._idem_key(idempotency_key, fp),
            fp,
            lambda complete: self._start_job(principal, job, request_id, complete, webhook_url, base_url),
            lambda stored: stored.meta["rollout_id"],
            "job",
            failed=lambda stored: self._job_failed(principal, stored.meta["rollout_id"]),
        )
        return await asyncio.to_thread(self.get_record, principal, rid)

    async def _start_job(
        self,
        principal: Principal,
        job: SingleJob,
        request_id: str,
        complete: Completer | None,
        webhook_url: str | None,
        base_url: str,
    ) -> str:
        spec = job.spec
        T = int(job.actions.shape[0])
        slot = contextlib.AsyncExitStack()  # held until the job ends (`_run_job`)
        await slot.enter_async_context(self.svc.limiter.slot(principal))
        rsv: Reservation | None = None
        try:
            rsv = await self._reserve(principal, cost_mils(spec, T), request_id, f"predict · {spec.slug} · {T + 1} frames")
            frame = await self.decode_frame(spec, job.frame_bytes, job.frame_part)
        except BaseException:
            if rsv is not None:
                await self._refund(rsv, spec.slug, "the start frame could not be decoded")
            await slot.aclose()
            raise
        rollout_id = new_id("rollout")
        queued = {
            "id": rollout_id, "object": "rollout", "model": spec.slug, "created": int(time.time()), "frames": 0,
            "resolution": [spec.resolution[0], spec.resolution[1]], "engine_wall_ms": 0.0, "psnr_db": None,
            "ssim": None, "lpips": None, "cost_usd": 0.0, "video_url": "", "video_url_expires_at": 0,
            "seed": job.seed, "status": "queued",
        }

        def record(conn: Connection) -> None:
            now = time.time()
            conn.execute(
                rollout_records.insert().values(
                    id=rollout_id, customer_id=principal.customer_id, status="queued", created=now, updated=now,
                    envelope=json.dumps(queued), video_id=None, error=None, owner=self.svc.leases.id,
                )
            )
            if complete is not None:
                complete(StoredResult({"kind": "job", "rollout_id": rollout_id}, b""))(conn)

        try:
            def write() -> None:
                with self.svc.db.begin() as conn:
                    record(conn)

            await asyncio.to_thread(write)
        except BaseException:
            await self._refund(rsv, spec.slug, "could not queue the rollout")
            await slot.aclose()
            raise
        task = asyncio.get_running_loop().create_task(
            self._run_job(principal, job, frame, request_id, rsv, rollout_id, webhook_url, base_url, slot)
        )
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        return rollout_id

    async def _run_job(
        self,
        principal: Principal,
        job: SingleJob,
        frame: np.ndarray,
        request_id: str,
        rsv: Reservation | None,
        rollout_id: str,
        webhook_url: str | None,
        base_url: str,
        slot: contextlib.AsyncExitStack,
    ) -> None:
        async with slot:
            await asyncio.to_thread(self._set_status, rollout_id, "running", None)
            try:
                await self._run_single(principal, job, request_id, None, queued=True, rsv=rsv, rollout_id=rollout_id,
                                       frame=frame)
            except Exception as exc:
                logger.warning("async rollout %s failed: %s", rollout_id, exc)
                message = exc.message if isinstance(exc, DreamError) else "internal error (see the server log)"
                if not isinstance(exc, DreamError):
                    logger.error("async rollout %s crashed", rollout_id, exc_info=exc)
                await asyncio.to_thread(self._set_status, rollout_id, "failed", message)
        if webhook_url:
            envelope = self.public_envelope(await asyncio.to_thread(self.get_record, principal, rollout_id), base_url)
            await self.svc.webhooks.deliver(webhook_url, envelope, customer_id=principal.customer_id)

    def _job_failed(self, principal: Principal, rollout_id: str) -> bool:
        try:
            return self.get_record(principal, rollout_id)["status"] == "failed"
        except RolloutNotFound:
            return True  # its record is gone: nothing to replay

    def _set_status(self, rollout_id: str, status: str, error: str | None) -> None:
        with self.svc.db.begin() as conn:
            row = conn.execute(select(rollout_records).where(rollout_records.c.id == rollout_id)).mappings().first()
            if row is None:
                return
            env = json.loads(row["envelope"])
            if row["status"] == "succeeded":
                return
            env["status"] = status
            if error:
                env["error"] = {"code": "rollout_failed", "message": error}
            conn.execute(
                update(rollout_records).where(rollout_records.c.id == rollout_id).values(
                    status=status, envelope=json.dumps(env), error=error, updated=time.time()
                )
            )

    def get_record(self, principal: Principal, rollout_id: str) -> dict[str, Any]:
        """The stored record of a rollout owned by this customer; 404 otherwise."""
        with self.svc.db.begin() as conn:
            row = conn.execute(
                select(rollout_records).where(
                    rollout_records.c.id == rollout_id, rollout_records.c.customer_id == principal.customer_id
                )
            ).mappings().first()
        if row is None:
            raise RolloutNotFound(f"no rollout {rollout_id!r} for this API key", status_code=404)
        return dict(row)

    def _video_base(self) -> str | None:
        """Where this replica's videos are fetched, when it has a folder of its own (its --public-url)."""
        url = self.settings.public_base_url
        return url.rstrip("/") if url else None

    def public_envelope(self, record: dict[str, Any], base_url: str) -> dict[str, Any]:
        """A record's envelope with a freshly signed video_url when it has a video: at the
        replica that holds the video when it has its own data folder, else at `base_url`."""
        env = json.loads(record["envelope"])
        if record.get("video_id") and record["status"] == "succeeded":
            path, expires = self.svc.videos.signed_path(record["video_id"])
            env["video_url"] = (record.get("video_base") or base_url) + path
            env["video_url_expires_at"] = expires
        return env

    async def drain(self) -> None:
        """Let queued async rollouts finish (shutdown)."""
        if self._jobs:
            await asyncio.gather(*list(self._jobs), return_exceptions=True)
