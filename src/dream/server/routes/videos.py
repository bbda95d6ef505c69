"""GET /v1/videos/{video_id}.mp4?expires=…&sig=…: signed, expiring, no auth (wire-protocol §8)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from dream.server.deps import ServicesDep
from dream.server.routes.common import errors

router = APIRouter(tags=["videos"])


@router.get(
    "/v1/videos/{video_file}",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
                     "description": "the rollout's mp4"},
               **errors(403, 404, 422)},
    summary="Download a rollout video through its signed URL",
)
async def get_video(
    video_file: str,
    svc: ServicesDep,
    expires: Annotated[int, Query(description="epoch seconds after which the URL stops working")],
    sig: Annotated[str, Query(description="HMAC signature of the video id and expiry")],
) -> Any:
    video_id = video_file.removesuffix(".mp4")
    svc.videos.verify(video_id, expires, sig)
    data = await asyncio.to_thread(svc.videos.read, video_id)
    return Response(data, media_type="video/mp4", headers={"Cache-Control": "private, max-age=3600"})
