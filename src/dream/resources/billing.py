"""Billing: prepaid balance, ledger transactions and top-up checkout sessions."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from dream.types import BillingBalance, BillingTransaction, TopupSession

if TYPE_CHECKING:
    from dream.client.async_client import AsyncClient
    from dream.client.sync_client import Client

__all__ = [
    "MAX_TOPUP_USD",
    "MAX_TRANSACTIONS_LIMIT",
    "MIN_TOPUP_USD",
    "MIN_TRANSACTIONS_LIMIT",
    "AsyncBilling",
    "Billing",
]

MIN_TOPUP_USD = 5.0
MAX_TOPUP_USD = 10000.0
MIN_TRANSACTIONS_LIMIT = 1
MAX_TRANSACTIONS_LIMIT = 200


def topup_cents(amount_usd: float) -> int:
    """Validate a top-up amount (before any network call) and convert it to cents."""
    try:
        usd = float(amount_usd)
    except (TypeError, ValueError):
        raise ValueError(f"amount_usd must be a number between {MIN_TOPUP_USD} and {MAX_TOPUP_USD}; got {amount_usd!r}") from None
    if math.isnan(usd) or not MIN_TOPUP_USD <= usd <= MAX_TOPUP_USD:
        raise ValueError(f"amount_usd must be between ${MIN_TOPUP_USD:.2f} and ${MAX_TOPUP_USD:.2f}; got {amount_usd!r}")
    return max(1, round(usd * 100))


def transactions_limit(limit: int) -> int:
    """Validate a transactions limit: an int ≥ 1; values over 200 are clamped to 200."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < MIN_TRANSACTIONS_LIMIT:
        raise ValueError(f"limit must be an integer between {MIN_TRANSACTIONS_LIMIT} and {MAX_TRANSACTIONS_LIMIT}; got {limit!r}")
    return min(limit, MAX_TRANSACTIONS_LIMIT)


def _transactions(payload: Any) -> list[BillingTransaction]:
    if not isinstance(payload, dict):
        return []
    return [BillingTransaction.from_dict(t) for t in payload.get("transactions") or [] if isinstance(t, dict)]


class Billing:
    """Credits of the API key's customer (needs a server with a ledger)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def balance(self) -> BillingBalance:
        return BillingBalance.from_dict(self._client._transport.billing_balance())

    def topup(self, *, amount_usd: float) -> TopupSession:
        """Start a checkout session for `amount_usd` ($5–$10,000); open its ``url`` to pay."""
        cents = topup_cents(amount_usd)
        return TopupSession.from_dict(self._client._transport.billing_topup(cents))

    def transactions(self, *, limit: int = 50) -> list[BillingTransaction]:
        """Ledger entries, newest first."""
        return _transactions(self._client._transport.billing_transactions(transactions_limit(limit)))


class AsyncBilling:
    """Async twin of `Billing`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def balance(self) -> BillingBalance:
        return BillingBalance.from_dict(await self._client._transport.billing_balance())

    async def topup(self, *, amount_usd: float) -> TopupSession:
        cents = topup_cents(amount_usd)
        return TopupSession.from_dict(await self._client._transport.billing_topup(cents))

    async def transactions(self, *, limit: int = 50) -> list[BillingTransaction]:
        return _transactions(await self._client._transport.billing_transactions(transactions_limit(limit)))
