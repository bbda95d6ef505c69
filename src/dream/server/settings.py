"""Server settings: one dataclass, filled by `dream serve` flags or by tests.

Plain data with no heavy imports, so the CLI can build it before FastAPI, SQLAlchemy or
torch are loaded. Everything a test wants to control (the engine, the payment provider,
the limiter's clock) can be injected here instead of patched.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dream import DEFAULT_SPEC

if TYPE_CHECKING:
    from dream.engine.engine import Engine
    from dream.server.services.payments import PaymentProvider

MIB = 1024 * 1024


def default_db_url() -> str:
    """DREAM_DB_URL, else a SQLite file in the working directory (shared by `serve` and `keys`)."""
    return os.environ.get("DREAM_DB_URL") or "sqlite:///dream-ledger.sqlite3"


@dataclass
class Settings:
    """Everything `create_app` needs. Defaults suit `dream serve` on one machine."""

    # --- models
    specs: list[str] = field(default_factory=lambda: [DEFAULT_SPEC])  # first = default for /v1/predict
    device: str | None = None  # None: CUDA when available
    threads: int | None = None  # torch CPU threads
    weights: dict[str, str] = field(default_factory=dict)  # slug -> weights file/folder
    engine: Engine | None = None  # inject a ready Engine (tests, embedding); built from the fields above otherwise
    load_on_startup: bool = True  # load + warm up every spec at startup (readiness waits for it)
    # Requests that arrive while their model loads are held this long (then 503), not refused:
    # the 0.5.0 client's retries end long before a model has loaded. 0: refuse at once.
    warmup_hold_s: float = 180.0

    # --- ledger and auth
    db_url: str = field(default_factory=default_db_url)
    auth: bool = True  # False: --no-auth, local development only (no keys, no charges)
    # What this server holds in the ledger (reservations, in-flight idempotency records,
    # async rollouts) is released by any replica once its heartbeat is this old.
    lease_s: float = 30.0
    metrics_token: str | None = None  # /metrics answers 401 without Authorization: Bearer <this>; None: open

    # --- limits
    rate_limit_rps: float = 20.0  # sustained requests per second per key (0: unlimited)
    rate_limit_burst: int = 40  # bucket size
    max_concurrent_rollouts: int = 8  # rollouts in flight per key (0: unlimited)
    concurrency_retry_after_s: float = 1.0  # Retry-After when the concurrency cap is hit
    max_body_bytes: int = 64 * MIB  # larger request bodies get 413
    max_batch_k: int = 64  # K candidates per /v1/predict/batch
    max_actions_T: int = 4096  # actions per rollout
    # Frames one request may produce, K × (T + 1) summed over its rollouts: what bounds a
    # request's memory and engine time. 413 names it when exceeded.
    max_request_frames: int = 8192
    # Start frames: pixels a frame may declare in its header (None: 36 × the spec's H × W,
    # at least 1920 × 1080), checked before any decoding; a 16-bit or alpha frame gets
    # proportionally fewer. Decodes run after the credit reservation, a few at a time.
    max_frame_pixels: int | None = None
    max_concurrent_decodes: int = 2
    # Rollouts longer than stream_min_frames (and every /v1/predict/batch) are computed and
    # encoded a chunk of about stream_chunk_frames frames at a time: memory holds one chunk,
    # and other customers' work runs between chunks (engine turns go round-robin by customer).
    stream_min_frames: int = 128
    stream_chunk_frames: int = 16
    max_request_wall_s: float = 600.0  # a streamed request still running after this is stopped (413) and refunded

    # --- dynamic batching
    batch_window_ms: float = 5.0  # 0: off (every rollout runs alone)
    # Fuse only specs whose runner is batch-invariant (fused bytes == single bytes);
    # True fuses every spec, accepting low-bit differences from a single predict.
    fuse_any_model: bool = False
    max_fused_batch: int = 16  # rollouts fused into one engine call at most

    # --- results
    data_dir: str | None = None  # videos for video_url; None: a temporary folder for this process
    public_base_url: str | None = None  # base of video_url / ws_url; None: from each request's Host
    url_secret: str | None = None  # HMAC key of signed video URLs and webhooks; None: random per process
    video_url_ttl_s: int = 3600
    idempotency_ttl_s: float = 24 * 3600.0  # explicit Idempotency-Key records
    # Requests without an Idempotency-Key are deduplicated on their content for this long,
    # so the 0.5.0 client's blind retries of /v1/predict (wire-protocol §5) never run or
    # charge twice. The engine is deterministic, so a replay is the same video. 0: off.
    implicit_idempotency_s: float = 600.0
    webhook_timeout_s: float = 10.0
    # Webhooks go to public addresses only; these hosts or CIDR networks are allowed anyway.
    webhook_allow: list[str] = field(default_factory=list)

    # --- sessions
    session_idle_s: float = 600.0  # idle sessions are closed after this long
    # WebSocket messages a client may send, checked before they are parsed: a larger one
    # gets an error message (the socket stays open); one over twice this is refused by
    # the WebSocket protocol itself (close 1009) before it is read in.
    max_ws_message_bytes: int = 4 * MIB
    session_chunk_actions: int = 8  # actions per engine call in a streaming session (rounded up to chunk_size)

    # --- payments
    payment_provider: PaymentProvider | str | None = None  # None: top-up off; "stripe": from env; "module:attr"
    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    checkout_success_url: str = "https://example.invalid/dream/topup/success"
    checkout_cancel_url: str = "https://example.invalid/dream/topup/cancel"

    # --- test hooks
    clock: Callable[[], float] = time.time  # the limiter's clock (wall time: replicas on one ledger share its state)
    # How webhook hosts are resolved, (host, port) -> addresses; None: the system resolver.
    webhook_resolve: Callable[[str, int], list[str]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def default_spec(self) -> str:
        return self.specs[0] if self.specs else DEFAULT_SPEC

    def validate(self) -> None:
        if not self.specs:
            raise ValueError("a server needs at least one spec (--spec SLUG)")
        if len(set(self.specs)) != len(self.specs):
            raise ValueError(f"--spec repeated: {self.specs}")
        if self.batch_window_ms < 0:
            raise ValueError("batch_window_ms must be >= 0 (0 turns dynamic batching off)")
        if self.warmup_hold_s < 0:
            raise ValueError(f"warmup_hold_s must be >= 0 (0 answers 503 while loading), got {self.warmup_hold_s!r}")
        if self.max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be positive")
        if not self.max_request_wall_s > 0:
            raise ValueError(f"max_request_wall_s must be > 0; got {self.max_request_wall_s}")
        for name in ("max_request_frames", "max_concurrent_decodes", "stream_chunk_frames", "stream_min_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.max_ws_message_bytes < 1024:
            raise ValueError(f"max_ws_message_bytes must be >= 1024; got {self.max_ws_message_bytes}")
        if self.max_frame_pixels is not None and self.max_frame_pixels < 1:
            raise ValueError(f"max_frame_pixels must be >= 1; got {self.max_frame_pixels}")
