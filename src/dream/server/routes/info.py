"""GET /v1/specs, /v1/status, /healthz (liveness), /readyz (readiness), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from dream._version import __version__
from dream.errors import AuthError
from dream.server.deps import Credentials, OptionalPrincipalDep, ServicesDep
from dream.server.routes.common import errors
from dream.server.routes.models import catalog
from dream.server.schemas import Health, Ready, SpecsList, Status

router = APIRouter(tags=["service"])


@router.get("/v1/specs", response_model=SpecsList, responses=errors(401, 403, 429), summary="Specs and prices")
async def specs(svc: ServicesDep, _: OptionalPrincipalDep) -> Any:
    entries = await asyncio.to_thread(catalog, svc)
    default = svc.engine.spec(svc.settings.default_spec)
    return {"object": "list", "specs": entries, "default_spec": default.slug,
            "default_price_usd_per_frame": default.price_per_frame_usd}


@router.get("/v1/status", response_model=Status, responses=errors(401, 403, 429), summary="Models, uptime, 24 h latency")
async def status(svc: ServicesDep, _: OptionalPrincipalDep) -> Any:
    models = []
    for slug in svc.settings.specs:
        wall = svc.engine.rollout_wall_s(slug, measure=False) if svc.readiness.is_loaded(slug) else None
        models.append({"slug": slug, "loaded": svc.readiness.is_loaded(slug), "error": svc.readiness.errors.get(slug),
                       "canonical_rollout_wall_s": wall})
    m = svc.metrics
    return {
        "object": "status",
        "transport": "http",
        "version": __version__,
        "uptime_s": round(time.time() - svc.started, 3),
        "ready": svc.readiness.ready,
        "default_model": svc.settings.default_spec,
        "models": models,
        "latency_24h": m.request_latency.summary(),
        "engine_latency_24h": m.engine_latency.summary(),
        "dynamic_batching": {"window_ms": svc.settings.batch_window_ms, "max_batch": svc.settings.max_fused_batch},
        "auth": svc.settings.auth,
    }


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Any:
    return {"ok": True}


@router.get(
    "/readyz", response_model=Ready, responses={503: {"model": Ready, "description": "models still loading"}},
    summary="Readiness: every served model is loaded and warmed up",
)
async def readyz(svc: ServicesDep) -> Any:
    body = svc.readiness.summary()
    svc.metrics.ready.set(1 if body["ready"] else 0)
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get(
    "/metrics", response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
               **errors(401)},
    summary="Prometheus metrics (Authorization: Bearer <metrics token> when the server sets one)",
)
async def metrics(svc: ServicesDep, creds: Credentials) -> Any:
    token = svc.settings.metrics_token
    # The totals charged are business data: with a token set, scrapers must present it.
    if token and (creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode())):
        raise AuthError("/metrics needs this server's metrics token: Authorization: Bearer <token>", status_code=401)
    svc.metrics.ready.set(1 if svc.readiness.ready else 0)
    return Response(svc.metrics.render(), media_type=svc.metrics.content_type)
