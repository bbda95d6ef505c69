"""/ui: the viewer page over the signed-in key's rollout history, plus a playground.

The page and its assets need no key (it asks for one); every `/ui/api/…` call
authenticates the Bearer key the page sends, counts against that key's rate limit like
any other request (the page waits out a 429's Retry-After and tries again), and sees only
that customer's rollouts (`HistoryView`). The playground's rollout goes through the same
rollout service, limits and ledger as POST /v1/rollouts.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse

from dream.server.deps import Credentials, PrincipalDep, RequestId, ServicesDep, require_principal
from dream.server.services.container import Services
from dream.server.services.history import HistoryView
from dream.view.app import view_router
from dream.view.media import FrameCache

router = APIRouter(prefix="/ui", include_in_schema=False)

# Decoded frames and thumbnails of each server's videos (video ids never change content).
_FRAME_CACHES: weakref.WeakKeyDictionary[Services, FrameCache] = weakref.WeakKeyDictionary()


def _frames(svc: Services) -> FrameCache:
    cache = _FRAME_CACHES.get(svc)
    if cache is None:
        cache = _FRAME_CACHES[svc] = FrameCache(svc.videos.read, lambda _video_id: None, max_images=4096)
    return cache


async def get_history_view(request: Request, svc: ServicesDep, creds: Credentials) -> HistoryView:
    principal = await require_principal(request, svc, creds)
    return HistoryView(svc, principal, _frames(svc))


router.include_router(view_router(get_history_view))


@router.post("/api/playground")
async def playground(
    svc: ServicesDep,
    principal: PrincipalDep,
    request_id: RequestId,
    start_frame: Annotated[UploadFile, File()],
    actions: Annotated[UploadFile, File()],
    model: Annotated[str | None, Form()] = None,
    seed: Annotated[int | None, Form()] = None,
    num_steps: Annotated[int | None, Form()] = None,
    guidance: Annotated[float | None, Form()] = None,
) -> Any:
    job = await asyncio.to_thread(
        svc.rollouts.parse_single, model=model or None, frame_bytes=await start_frame.read(),
        actions_bytes=await actions.read(), seed=seed, num_steps=num_steps, guidance=guidance,
        frame_part="start_frame",
    )
    result = await svc.rollouts.single(principal, job, request_id=request_id, idempotency_key=None)
    return JSONResponse({
        "rollout_id": result.rollout_id, "model": result.model, "frames": result.num_frames,
        "cost_usd": result.cost_usd, "engine_wall_ms": result.engine_wall_ms, "seed": result.seed,
    })
