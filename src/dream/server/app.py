"""The app factory: `create_app(settings)` assembles services, routers and middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from dream._version import __version__
from dream.server import handlers
from dream.server.middleware import RequestContextMiddleware
from dream.server.routes import ROUTERS
from dream.server.services.container import Services
from dream.server.settings import Settings

DESCRIPTION = """\
Self-hosted Dream Engine: action-conditioned video world models over HTTP, wire-compatible
with the `dream-engine` 0.5.0 client. Authenticate with `Authorization: Bearer dre_…`
(`dream keys create`). Every response carries `X-DreamEngine-Request-Id`; errors are
`{"detail": …}` with `X-DreamEngine-Error-Code`. POSTs honour `Idempotency-Key`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A FastAPI app serving `settings.specs`. Models load in the background at startup;
    ``/readyz`` turns 200 once all are loaded and warmed up."""
    settings = settings or Settings()
    services = Services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.start()
        try:
            yield
        finally:
            await services.rollouts.drain()
            services.stop()

    app = FastAPI(title="Dream Engine", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    handlers.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, metrics=services.metrics)
    return app
