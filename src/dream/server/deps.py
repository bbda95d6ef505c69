"""Dependencies shared by the routers: services, request id, the caller (auth + rate limit)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated

from fastapi import Depends, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dream.errors import AuthError
from dream.server.services.container import Services
from dream.server.services.ledger import ANONYMOUS, Principal

bearer = HTTPBearer(auto_error=False, description="API key from `dream keys create`: Authorization: Bearer dre_…")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


RequestId = Annotated[str, Depends(get_request_id)]


def base_url(request: Request, svc: Services) -> str:
    """Where this server is reachable, for video_url and ws_url."""
    return (svc.settings.public_base_url or str(request.base_url)).rstrip("/")


async def authenticate(svc: Services, token: str | None) -> Principal:
    if not svc.settings.auth:
        return ANONYMOUS
    if not token:
        raise AuthError("missing API key: send Authorization: Bearer dre_… (create one with `dream keys create`)",
                        status_code=401)
    return await asyncio.to_thread(svc.ledger.authenticate, token)


def _limit(svc: Services, key: str, principal: Principal | None = None) -> None:
    limits = principal.limits if principal is not None else None
    # A 429 is counted in dream_rate_limited_total by the error handler, whatever raised it.
    svc.limiter.check_request(key, rate=limits.rate_limit_rps if limits else None, burst=limits.burst if limits else None)


async def require_principal(request: Request, svc: ServicesDep, creds: Credentials) -> Principal:
    """The calling key's principal (401/403 otherwise), after its rate limit (429)."""
    principal = await authenticate(svc, creds.credentials if creds else None)
    if principal.key_id is None:
        principal = dataclasses.replace(principal, client=request.client.host if request.client else "unknown")
    _limit(svc, principal.limiter_key, principal)
    return principal


async def optional_principal(request: Request, svc: ServicesDep, creds: Credentials) -> Principal | None:
    """Public endpoints: no key is fine, but a key that is sent must be valid."""
    if creds is None or not svc.settings.auth:
        host = request.client.host if request.client else "unknown"
        _limit(svc, f"ip:{host}")
        return None
    return await require_principal(request, svc, creds)


PrincipalDep = Annotated[Principal, Depends(require_principal)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]


async def websocket_principal(websocket: WebSocket, svc: Services) -> Principal:
    header = websocket.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = websocket.query_params.get("api_key", "")
    return await authenticate(svc, token.strip() or None)
