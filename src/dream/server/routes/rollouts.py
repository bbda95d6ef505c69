"""POST /v1/rollouts (JSON envelope, sync or async), GET /v1/rollouts/{id}, and
GET /v1/webhooks/secret (the key that signs an async rollout's webhook).

Never 404 for a bad model or parameter here: a 404 makes the 0.5.0 client rerun the
request on /v1/predict (wire-protocol §7.3). Unknown models are 422.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Request, UploadFile
from fastapi.responses import JSONResponse

from dream.errors import ValidationError
from dream.server.deps import PrincipalDep, RequestId, ServicesDep, base_url
from dream.server.routes.common import ROLLOUT_ERRORS, errors, legacy_headers
from dream.server.schemas import RolloutEnvelope, WebhookSecret
from dream.server.services.webhooks import check_webhook_url

router = APIRouter(tags=["rollouts"])

PARAMS_HELP = (
    'JSON object: {"model": slug, "seed": int, "score": bool, "num_steps": int?, "guidance": float?, '
    '"mode": "sync"|"async"?, "webhook_url": str?}'
)


def parse_params(text: str) -> dict[str, Any]:
    """The ``params`` text field (wire-protocol §7.1), shape-checked; values are checked later."""
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"params must be a JSON object; got unparsable text ({exc})", status_code=422) from None
    except RecursionError:
        raise ValidationError(
            f"params nests arrays or objects too deeply to parse ({len(text)} characters); send a flat JSON object",
            status_code=422,
        ) from None
    if not isinstance(params, dict):
        raise ValidationError(f"params must be a JSON object; got {type(params).__name__}", status_code=422)
    model = params.get("model")
    if model is not None and not isinstance(model, str):
        raise ValidationError(f"params.model must be a string; got {model!r}", status_code=422)
    mode = params.get("mode", "sync")
    if mode not in ("sync", "async"):
        raise ValidationError(f"params.mode must be 'sync' or 'async'; got {mode!r}", status_code=422)
    webhook = params.get("webhook_url")
    if webhook is not None:
        if not isinstance(webhook, str):
            raise ValidationError("params.webhook_url must be a string", status_code=422)
        check_webhook_url(webhook)
    for name in ("seed", "num_steps", "guidance"):
        if isinstance(params.get(name), (dict, list)):
            raise ValidationError(f"params.{name} must be a number; got {params[name]!r}", status_code=422)
    return params


@router.post(
    "/v1/rollouts",
    response_model=RolloutEnvelope,
    responses={202: {"model": RolloutEnvelope, "description": "queued (params.mode = async)"}, **ROLLOUT_ERRORS},
    summary="Run one rollout; JSON envelope with a signed video_url",
)
async def create_rollout(
    request: Request,
    svc: ServicesDep,
    principal: PrincipalDep,
    request_id: RequestId,
    params: Annotated[str, Form(description=PARAMS_HELP)],
    start_frame: Annotated[UploadFile, File(description="start frame: PNG or JPEG, any mode (converted to RGB)")],
    actions: Annotated[UploadFile, File(description=".npy, float (T, action_dim), T a multiple of chunk_size")],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    p = parse_params(params)
    if p.get("webhook_url"):
        await asyncio.to_thread(svc.webhooks.check_target, p["webhook_url"])  # DNS: off the loop
    frame_bytes, actions_bytes = await start_frame.read(), await actions.read()
    job = await asyncio.to_thread(
        svc.rollouts.parse_single, model=p.get("model"), frame_bytes=frame_bytes, actions_bytes=actions_bytes,
        seed=p.get("seed"), num_steps=p.get("num_steps"), guidance=p.get("guidance"), frame_part="start_frame",
    )
    base = base_url(request, svc)
    if p.get("mode") == "async":
        record = await svc.rollouts.submit_async(
            principal, job, request_id=request_id, idempotency_key=idempotency_key, webhook_url=p.get("webhook_url"),
            base_url=base,
        )
        return JSONResponse(svc.rollouts.public_envelope(record, base), status_code=202)
    result = await svc.rollouts.single(principal, job, request_id=request_id, idempotency_key=idempotency_key)
    path, expires = svc.videos.signed_path(result.video_id)
    headers = legacy_headers(
        wall_ms=result.engine_wall_ms, cost_usd=result.cost_usd, customer_id=result.customer_id,
        rollout_id=result.rollout_id, fused=result.fused, idempotent_replay=str(result.replayed).lower(),
    )
    return JSONResponse(result.envelope(base + path, expires), headers=headers)


@router.get(
    "/v1/rollouts/{rollout_id}",
    response_model=RolloutEnvelope,
    responses=errors(401, 403, 404, 429),
    summary="A rollout's envelope (poll async rollouts here)",
)
async def get_rollout(rollout_id: str, request: Request, svc: ServicesDep, principal: PrincipalDep) -> Any:
    record = await asyncio.to_thread(svc.rollouts.get_record, principal, rollout_id)
    return JSONResponse(svc.rollouts.public_envelope(record, base_url(request, svc)))


@router.get(
    "/v1/webhooks/secret",
    response_model=WebhookSecret,
    responses=errors(401, 403, 429),
    summary="This customer's webhook signing secret (Standard Webhooks v1)",
)
async def webhook_secret(svc: ServicesDep, principal: PrincipalDep) -> Any:
    return {
        "object": "webhook_secret",
        "secret": svc.webhooks.secret_for(principal.customer_id),
        "scheme": "standard-webhooks v1: webhook-signature = v1,base64(HMAC-SHA256(key, "
                  "'<webhook-id>.<webhook-timestamp>.<body>'))",
        "customer_id": principal.customer_id,
    }
