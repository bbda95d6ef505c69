"""Top-ups: a pluggable payment provider behind ``POST /v1/billing/topup``.

The server asks the provider for a hosted checkout page (wire-protocol §12.2) and credits
the ledger only when the provider's signed webhook says the payment went through
(``POST /v1/billing/webhook``), once per event id.

`StripePayments` uses the real ``stripe`` library (Checkout Sessions); it is off unless
an API key is configured (``--stripe-api-key`` / ``STRIPE_API_KEY``). Other providers
implement the same two methods; ``--payment-provider module:attr`` loads one.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from dream.errors import AuthError, ServerError

logger = logging.getLogger("dream.server.payments")


@dataclass(frozen=True)
class CheckoutSession:
    session_id: str
    url: str


@dataclass(frozen=True)
class PaymentEvent:
    """A verified, completed payment: credit `amount_mils` to `customer_id` once per `event_id`."""

    event_id: str
    customer_id: str
    amount_mils: int
    detail: str


@runtime_checkable
class PaymentProvider(Protocol):
    name: str

    def create_checkout(
        self, *, customer_id: str, customer_name: str, amount_cents: int, idempotency_key: str
    ) -> CheckoutSession:
        """A hosted checkout page for `amount_cents`; raise a DreamError on provider failure."""

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> PaymentEvent | None:
        """Verify a webhook; a completed payment → PaymentEvent, other events → None, bad signature → AuthError."""


class StripePayments:
    """Stripe Checkout through the official ``stripe`` library."""

    name = "stripe"

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str | None,
        success_url: str,
        cancel_url: str,
        currency: str = "usd",
        http_client: Any = None,
    ) -> None:
        import stripe

        self._stripe = stripe
        self._client = stripe.StripeClient(api_key, http_client=http_client, max_network_retries=2)
        self._webhook_secret = webhook_secret
        self.success_url = success_url
        self.cancel_url = cancel_url
        self.currency = currency

    def create_checkout(
        self, *, customer_id: str, customer_name: str, amount_cents: int, idempotency_key: str
    ) -> CheckoutSession:
        params = {
            "mode": "payment",
            "client_reference_id": customer_id,
            "metadata": {"dream_customer_id": customer_id, "amount_cents": str(amount_cents)},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": self.currency,
                        "unit_amount": amount_cents,
                        "product_data": {"name": f"Dream Engine credits for {customer_name}"},
                    },
                }
            ],
            "success_url": self.success_url,
            "cancel_url": self.cancel_url,
        }
        try:
            session = self._client.v1.checkout.sessions.create(
                params=params, options={"idempotency_key": f"dream-topup-{idempotency_key}"}
            )
        except self._stripe.StripeError as exc:
            # 502: the provider failed before anything was charged, so a retry is safe.
            raise ServerError(f"payment provider error: {exc.user_message or exc}", status_code=502) from exc
        return CheckoutSession(session_id=str(session.id), url=str(session.url or ""))

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> PaymentEvent | None:
        if not self._webhook_secret:
            raise ServerError("Stripe webhook secret is not configured (--stripe-webhook-secret)", status_code=503)
        try:
            event = self._stripe.Webhook.construct_event(payload, headers.get("stripe-signature"), self._webhook_secret)
        except (ValueError, self._stripe.SignatureVerificationError) as exc:
            raise AuthError(f"webhook signature check failed: {exc}", status_code=400) from exc
        if event["type"] not in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            return None
        obj = event["data"]["object"]
        obj = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)  # StripeObjects are not dicts (stripe ≥ 13)
        if obj.get("payment_status") != "paid":
            return None
        meta = obj.get("metadata") or {}
        customer_id = meta.get("dream_customer_id") or obj.get("client_reference_id")
        if not customer_id:
            logger.warning("Stripe event %s has no dream customer id; ignored", event["id"])
            return None
        cents = int(obj.get("amount_total") or meta.get("amount_cents") or 0)
        return PaymentEvent(
            event_id=str(event["id"]), customer_id=str(customer_id), amount_mils=cents * 100,
            detail=f"top-up · ${cents / 100:.2f} · stripe {obj.get('id', '')}",
        )


def load_provider(spec: Any, settings: Any) -> PaymentProvider | None:
    """The provider named by settings: an object, "stripe", "module:attr", or None (off)."""
    if spec is None:
        key = getattr(settings, "stripe_api_key", None) or os.environ.get("STRIPE_API_KEY")
        if not key:
            return None
        spec = "stripe"
    if not isinstance(spec, str):
        return spec
    if spec == "stripe":
        key = getattr(settings, "stripe_api_key", None) or os.environ.get("STRIPE_API_KEY")
        if not key:
            raise ValueError("the stripe payment provider needs --stripe-api-key or STRIPE_API_KEY")
        return StripePayments(
            api_key=key,
            webhook_secret=getattr(settings, "stripe_webhook_secret", None) or os.environ.get("STRIPE_WEBHOOK_SECRET"),
            success_url=settings.checkout_success_url,
            cancel_url=settings.checkout_cancel_url,
        )
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"payment provider must be 'stripe' or 'module:attr'; got {spec!r}")
    obj = getattr(importlib.import_module(module_name), attr)
    return obj() if isinstance(obj, type) else obj
