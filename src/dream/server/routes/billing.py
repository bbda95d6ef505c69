"""Billing: balance, transactions, top-up checkout and the payment provider's webhook."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from dream.server.deps import PrincipalDep, ServicesDep
from dream.server.routes.common import errors
from dream.server.schemas import Balance, TopupRequest, TopupSession, Transactions, WebhookAck

router = APIRouter(tags=["billing"])


@router.get("/v1/billing/balance", response_model=Balance, responses=errors(401, 403, 429, 503), summary="Prepaid balance")
async def balance(svc: ServicesDep, principal: PrincipalDep) -> Any:
    return await svc.billing.balance(principal)


@router.get(
    "/v1/billing/transactions", response_model=Transactions, responses=errors(401, 403, 429, 503),
    summary="Ledger entries, newest first",
)
async def transactions(
    svc: ServicesDep, principal: PrincipalDep,
    limit: Annotated[int, Query(description="1..200; values outside are clamped")] = 50,
) -> Any:
    return await svc.billing.transactions(principal, limit)


@router.post(
    "/v1/billing/topup", response_model=TopupSession, responses=errors(400, 401, 403, 409, 413, 422, 429, 502, 503),
    summary="Start a checkout session to buy credits",
)
async def topup(
    body: TopupRequest, svc: ServicesDep, principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    return await svc.billing.topup(principal, body.amount_cents, idempotency_key)


@router.post(
    "/v1/billing/webhook", response_model=WebhookAck, responses=errors(400, 403, 413, 422, 503),
    summary="Payment provider webhook (verified with the provider's signature; credits a paid top-up once)",
)
async def payment_webhook(request: Request, svc: ServicesDep) -> Any:
    return await svc.billing.webhook(await request.body(), request.headers)
