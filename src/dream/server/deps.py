"""Dependencies shared by the routers: services, request id, the caller (auth + rate limit)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated

from fastapi import Depends, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Connection

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


def _authenticate_and_limit(svc: Services, token: str | None, client: str) -> Principal:
    """The caller's principal after its rate limit (one worker-thread hop for both database calls).

    Runs the request against its key's rate (429): the limit is shared by every replica on
    this ledger (`services.limiter`). Under --no-auth each calling address has its own.
    """
    # A 429 is counted in dream_rate_limited_total by the error handler, whatever raised it.
    if not svc.settings.auth:
        principal = dataclasses.replace(ANONYMOUS, client=client)
        svc.limiter.check_request(principal.limiter_key)
        return principal
    if not token:
        raise AuthError("missing API key: send Authorization: Bearer dre_… (create one with `dream keys create`)",
                        status_code=401)

    def limit(conn: Connection, principal: Principal) -> None:
        limits = principal.limits
        svc.limiter.check_in(conn, principal.limiter_key, rate=limits.rate_limit_rps if limits else None,
                             burst=limits.burst if limits else None, relaxed=True)  # authentication writes nothing

    return svc.ledger.authenticate(token, then=limit)


def _client(conn: Request | WebSocket) -> str:
    return conn.client.host if conn.client else "unknown"


async def require_principal(request: Request, svc: ServicesDep, creds: Credentials) -> Principal:
    """The calling key's principal (401/403 otherwise), after its rate limit (429)."""
    return await asyncio.to_thread(_authenticate_and_limit, svc, creds.credentials if creds else None, _client(request))


async def optional_principal(request: Request, svc: ServicesDep, creds: Credentials) -> Principal | None:
    """Public endpoints: no key is fine (the calling address's rate limit applies), but a key
    that is sent must be valid."""
    if creds is None or not svc.settings.auth:
        await asyncio.to_thread(svc.limiter.check_request, f"ip:{_client(request)}")
        return None
    return await require_principal(request, svc, creds)


PrincipalDep = Annotated[Principal, Depends(require_principal)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]


async def websocket_principal(websocket: WebSocket, svc: Services) -> Principal:
    """A WebSocket's principal (Bearer header, else ``?api_key=``), after its rate limit."""
    header = websocket.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = websocket.query_params.get("api_key", "")
    return await asyncio.to_thread(_authenticate_and_limit, svc, token.strip() or None, _client(websocket))
