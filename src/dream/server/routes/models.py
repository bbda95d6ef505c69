"""GET /v1/models and /v1/models/{slug}: the catalog of what this server runs."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from dream.errors import ModelNotFoundError
from dream.server.deps import OptionalPrincipalDep, ServicesDep
from dream.server.routes.common import errors
from dream.server.schemas import ModelEntry, ModelList
from dream.server.services.container import Services
from dream.server.services.readiness import weights_status

router = APIRouter(tags=["models"])


def catalog(svc: Services) -> list[dict[str, Any]]:
    """ModelEntry dicts of the served specs; ``active`` = this server can run it."""
    out = []
    for slug in svc.settings.specs:
        spec = svc.engine.spec(slug)
        loaded = svc.readiness.is_loaded(slug)
        if loaded:
            active, message = True, ""
        elif slug in svc.readiness.errors:
            active, message = False, svc.readiness.errors[slug]
        else:
            status = weights_status(svc.engine, slug)
            active, message = status.available, status.message
        entry = spec.to_model_entry(active=active, status_message=message)
        entry["loaded"] = loaded
        entry["default"] = slug == svc.settings.default_spec
        out.append(entry)
    return out


@router.get("/v1/models", response_model=ModelList, responses=errors(401, 403, 429), summary="List served models")
async def list_models(svc: ServicesDep, _: OptionalPrincipalDep) -> Any:
    return {"object": "list", "data": await asyncio.to_thread(catalog, svc)}


@router.get(
    "/v1/models/{slug:path}", response_model=ModelEntry, responses=errors(401, 403, 404, 429), summary="One model"
)
async def get_model(slug: str, svc: ServicesDep, _: OptionalPrincipalDep) -> Any:
    for entry in await asyncio.to_thread(catalog, svc):
        if entry["slug"] == slug:
            return entry
    raise ModelNotFoundError(f"model {slug!r} is not served here; served: {', '.join(svc.settings.specs)}", status_code=404)
