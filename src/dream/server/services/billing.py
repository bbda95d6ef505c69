"""Billing as a service: balances, history, top-up checkouts (idempotent) and paid webhooks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dream.errors import ServerError, ValidationError
from dream.server.services.idempotency import Completer, StoredResult, check_key, fingerprint
from dream.server.services.ledger import Principal

if TYPE_CHECKING:
    from dream.server.services.container import Services

MIN_TOPUP_CENTS = 500  # $5, as the 0.5.0 client checks (wire-protocol §12.2)
MAX_TOPUP_CENTS = 1_000_000  # $10,000


class BillingService:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    @staticmethod
    def require_ledger(principal: Principal) -> None:
        if not principal.billed:
            # wire-protocol §12.1: a deployment without a credits ledger answers 503.
            raise ServerError("this server runs without auth (--no-auth), so it keeps no credits ledger", status_code=503)

    async def balance(self, principal: Principal) -> dict[str, Any]:
        self.require_ledger(principal)
        mils = await asyncio.to_thread(self.svc.ledger.balance_mils, principal.customer_id)
        return {"object": "balance", "customer_id": principal.customer_id, "balance_mils": mils,
                "balance_cents": mils // 100, "balance_usd": mils / 10_000}

    async def transactions(self, principal: Principal, limit: int) -> dict[str, Any]:
        self.require_ledger(principal)
        rows = await asyncio.to_thread(self.svc.ledger.transactions, principal.customer_id, max(1, min(int(limit), 200)))
        return {"object": "list", "transactions": rows}

    async def topup(self, principal: Principal, amount_cents: int, idempotency_key: str | None) -> dict[str, Any]:
        """A checkout session; the same Idempotency-Key returns the same session (no duplicates on retry)."""
        self.require_ledger(principal)
        if not MIN_TOPUP_CENTS <= amount_cents <= MAX_TOPUP_CENTS:
            raise ValidationError(
                f"amount_cents must be between {MIN_TOPUP_CENTS} and {MAX_TOPUP_CENTS} ($5 to $10,000); got {amount_cents}",
                status_code=422,
            )
        provider = self.svc.payments
        if provider is None:
            raise ServerError("top-ups are not configured on this server (start it with a payment provider)",
                              status_code=503)
        key = check_key(idempotency_key) if idempotency_key is not None else None
        fp = fingerprint("topup", amount_cents)

        async def call(complete: Completer | None) -> dict[str, Any]:
            session = await asyncio.to_thread(
                provider.create_checkout, customer_id=principal.customer_id, customer_name=principal.customer_name,
                amount_cents=amount_cents, idempotency_key=key or fingerprint(principal.customer_id, amount_cents, fp),
            )
            out = {"object": "topup_session", "session_id": session.session_id, "url": session.url,
                   "amount_cents": amount_cents, "customer_id": principal.customer_id, "provider": provider.name}
            if complete is not None:
                store = complete(StoredResult({"kind": "topup"}, json.dumps(out).encode()))

                def write() -> None:
                    with self.svc.db.begin() as conn:
                        store(conn)

                await asyncio.to_thread(write)
            return out

        scoped = (key, self.svc.settings.idempotency_ttl_s) if key else None
        return await self.svc.idem.run(
            principal.customer_id, scoped, fp, call, lambda stored: json.loads(stored.body), "topup"
        )

    async def webhook(self, payload: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """Credit a verified, completed payment once (the provider's event id dedupes)."""
        provider = self.svc.payments
        if provider is None:
            raise ServerError("no payment provider is configured", status_code=503)
        event = await asyncio.to_thread(provider.parse_webhook, payload, headers)
        if event is None:
            return {"received": True, "credited_mils": 0}
        await asyncio.to_thread(
            self.svc.ledger.credit, event.customer_id, event.amount_mils, txn_id=event.event_id, detail=event.detail,
            external_id=f"{provider.name}:{event.event_id}",
        )
        return {"received": True, "credited_mils": event.amount_mils}
