"""POST /v1/predict (raw mp4 + headers) and /v1/predict/batch (tar of K mp4s).

Both take an optional ``model`` text field (our extension; other servers ignore it):
without it they run the server's default spec, as wire-protocol §9 says.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, UploadFile
from fastapi.responses import Response

from dream.server.deps import PrincipalDep, RequestId, ServicesDep
from dream.server.routes.common import ROLLOUT_ERRORS, legacy_headers

router = APIRouter(tags=["predict"])

MODEL_HELP = "model slug (extension of this server; default: the server's default model)"


@router.post(
    "/v1/predict",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
                     "description": "the rollout's mp4 (T + 1 frames); metadata in X-DreamEngine-* headers"},
               **ROLLOUT_ERRORS},
    summary="Run one rollout; raw mp4",
)
async def predict(
    svc: ServicesDep,
    principal: PrincipalDep,
    request_id: RequestId,
    frame: Annotated[UploadFile, File(description="start frame: PNG or JPEG, any mode")],
    actions: Annotated[UploadFile, File(description=".npy, float (T, action_dim)")],
    seed: Annotated[str, Form(description="int")] = "0",
    num_steps: Annotated[str | None, Form(description="int; default: the spec's")] = None,
    guidance: Annotated[str | None, Form(description="float; default: the spec's")] = None,
    model: Annotated[str | None, Form(description=MODEL_HELP)] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    frame_bytes, actions_bytes = await frame.read(), await actions.read()
    job = await asyncio.to_thread(
        svc.rollouts.parse_single, model=model, frame_bytes=frame_bytes, actions_bytes=actions_bytes, seed=seed,
        num_steps=num_steps, guidance=guidance,
    )
    result = await svc.rollouts.single(principal, job, request_id=request_id, idempotency_key=idempotency_key)
    headers = legacy_headers(
        wall_ms=result.engine_wall_ms, cost_usd=result.cost_usd, customer_id=result.customer_id,
        rollout_id=result.rollout_id, model=result.model, frames=result.num_frames,
        resolution=f"{result.resolution[0]}x{result.resolution[1]}", seed=result.seed, fused=result.fused,
        idempotent_replay=str(result.replayed).lower(),
    )
    return Response(result.mp4, media_type="video/mp4", headers=headers)


@router.post(
    "/v1/predict/batch",
    response_class=Response,
    responses={200: {"content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
                     "description": "tar of rollout_000.mp4 … one per actions part, in order"},
               **ROLLOUT_ERRORS},
    summary="K rollouts from one start frame, fused; tar of mp4s",
)
async def predict_batch(
    svc: ServicesDep,
    principal: PrincipalDep,
    request_id: RequestId,
    frame: Annotated[UploadFile, File(description="start frame: PNG or JPEG, any mode")],
    actions: Annotated[list[UploadFile], File(description="K .npy parts, all named actions, each (T, action_dim)",
                                              json_schema_extra={"minItems": 1})],
    seed: Annotated[str, Form(description="int")] = "0",
    num_steps: Annotated[str | None, Form(description="int; default: the spec's")] = None,
    guidance: Annotated[str | None, Form(description="float; default: the spec's")] = None,
    model: Annotated[str | None, Form(description=MODEL_HELP)] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    frame_bytes = await frame.read()
    blobs = [await a.read() for a in actions]
    job = await asyncio.to_thread(
        svc.rollouts.parse_batch, model=model, frame_bytes=frame_bytes, actions_list=blobs, seed=seed,
        num_steps=num_steps, guidance=guidance,
    )
    result = await svc.rollouts.batch(principal, job, request_id=request_id, idempotency_key=idempotency_key)
    headers = legacy_headers(
        wall_ms=result.engine_wall_ms, cost_usd=result.cost_usd, customer_id=result.customer_id,
        batch_size=result.batch_size, model=result.model, frames=result.num_frames,
        resolution=f"{result.resolution[0]}x{result.resolution[1]}", seed=result.seed,
        idempotent_replay=str(result.replayed).lower(),
    )
    return Response(result.tar, media_type="application/x-tar", headers=headers)
