"""`dream serve`: the engine as an HTTP service (FastAPI + uvicorn), wire-compatible with the
official 0.5.0 client.

    from dream.server import Settings, create_app
    app = create_app(Settings(specs=["pusht-96"], db_url="sqlite:///ledger.sqlite3"))

Layout: `app.create_app` assembles one router per resource (`routes/`), the shared
dependencies (`deps`), the exception handlers (`handlers`) and the request-context
middleware (`middleware`). The logic lives in `services/`, which never imports FastAPI:
ledger, idempotency, limiter, dynamic batcher, videos, sessions, payments, metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dream.server.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app(settings: Settings | None = None) -> FastAPI:
    from dream.server.app import create_app as _create_app

    return _create_app(settings)


__all__ = ["Settings", "create_app"]
