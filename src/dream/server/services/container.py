"""All services of one server, built once from `Settings` (no FastAPI here).

The app factory builds a `Services`, stores it on ``app.state`` and the routes reach it
through a dependency. Tests build one directly to drive the services without HTTP.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dream.server.services.batcher import DynamicBatcher
from dream.server.services.billing import BillingService
from dream.server.services.db import Database
from dream.server.services.idempotency import IdempotencyStore, IdempotentRunner
from dream.server.services.leases import Leases, ReplicaConfig
from dream.server.services.ledger import Ledger
from dream.server.services.limiter import Limiter
from dream.server.services.metrics import Metrics
from dream.server.services.payments import load_provider
from dream.server.services.readiness import Readiness
from dream.server.services.rollouts import RolloutService
from dream.server.services.scheduler import FairScheduler
from dream.server.services.sessions import SessionService
from dream.server.services.videos import VideoStore
from dream.server.services.webhooks import Webhooks
from dream.server.settings import Settings

logger = logging.getLogger("dream.server")


class Services:
    def __init__(self, settings: Settings) -> None:
        settings.validate()
        self.settings = settings
        self.started = time.time()
        self.engine = settings.engine if settings.engine is not None else self._build_engine(settings)
        for slug in settings.specs:
            self.engine.spec(slug)  # ModelNotFoundError names the served specs
        self.db = Database(settings.db_url)
        self.ledger = Ledger(self.db)
        self.idempotency = IdempotencyStore(self.db)
        self.leases = Leases(self.db, self.ledger, lease_s=settings.lease_s)
        self.ledger.owner = self.idempotency.owner = self.leases.id
        self.idempotency.owner_alive = self.leases.owner_alive
        self.limiter = Limiter(
            self.db,
            rate=settings.rate_limit_rps,
            burst=settings.rate_limit_burst,
            max_concurrent=settings.max_concurrent_rollouts,
            concurrency_retry_after_s=settings.concurrency_retry_after_s,
            clock=settings.clock,
            owner=self.leases.id,
        )
        self.metrics = Metrics()
        self.idem = IdempotentRunner(self.idempotency, on_replay=lambda kind: self.metrics.replays.labels(kind).inc())
        secret = (settings.url_secret or secrets.token_hex(32)).encode()
        data_dir = Path(settings.data_dir) if settings.data_dir else Path(tempfile.mkdtemp(prefix="dream-serve-"))
        self.data_dir = data_dir
        self.videos = VideoStore(data_dir / "videos", secret=secret, ttl_s=settings.video_url_ttl_s)
        self.videos.result_retain_s = max(settings.idempotency_ttl_s, settings.implicit_idempotency_s) + 3600.0
        self.idempotency.bodies = self.videos  # result bodies on disk, not in the database
        self.leases.housekeeping += [self.idempotency.prune, self.videos.prune, self.limiter.prune]
        self.webhooks = Webhooks(
            secret, timeout_s=settings.webhook_timeout_s, allow=settings.webhook_allow, resolve=settings.webhook_resolve
        )
        # Refuse now (a one-line error from `dream serve`) rather than serve next to replicas
        # whose URLs and signatures this one could not honour; checked again when registering.
        self.leases.config = ReplicaConfig.of(
            secret=secret, data_dir=data_dir, public_url=settings.public_base_url, random_secret=not settings.url_secret
        )
        self.leases.check_config()
        self.engine_executor = ThreadPoolExecutor(
            max_workers=max(2, len(settings.specs) + 1), thread_name_prefix="dream-engine"
        )
        self.readiness = Readiness(self.engine, settings.specs, on_change=lambda s: self.metrics.model_loaded.labels(s).set(1))
        self.payments = load_provider(settings.payment_provider, settings)
        self.scheduler = FairScheduler()
        self.rollouts = RolloutService(self)
        self.batcher = DynamicBatcher(
            self.rollouts.run_items,
            window_s=settings.batch_window_ms / 1000.0,
            max_batch=settings.max_fused_batch,
            executor=self.engine_executor,
            on_batch=self.metrics.fused_batch_size.observe,
            fusable=None if settings.fuse_any_model else self.engine.batch_invariant,
            gate=lambda items: self.scheduler.turn(items[0].customer),
        )
        self.sessions = SessionService(self)
        self.billing = BillingService(self)

    @staticmethod
    def _build_engine(settings: Settings) -> Any:
        from dream.engine.engine import Engine

        # coalesce=False: the server fuses concurrent requests in its own batcher (with a window).
        return Engine(
            settings.specs, device=settings.device, threads=settings.threads, weights=settings.weights, coalesce=False
        )

    def start(self) -> None:
        """Before serving: leases (release what stopped replicas held), then model loading in the background."""
        self.leases.start()
        self.idempotency.prune()
        if not self.settings.auth:
            logger.warning(
                "AUTH IS OFF (--no-auth): anyone who can reach this server can run rollouts, uncharged. "
                "Use it for local development only."
            )
        if self.settings.load_on_startup:
            self.readiness.start()
        else:
            self.readiness.mark_all_loaded()

    def stop(self) -> None:
        self.leases.stop()
        self.engine_executor.shutdown(wait=False, cancel_futures=True)
        self.db.dispose()
