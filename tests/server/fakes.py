"""A payment-provider test double (tests only): checkout sessions and HMAC-signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from dream.errors import AuthError
from dream.server.services.payments import CheckoutSession, PaymentEvent

SECRET = b"fake-webhook-secret"


class FakePayments:
    name = "fake"

    def __init__(self) -> None:
        self.created: list[dict] = []

    def create_checkout(self, *, customer_id: str, customer_name: str, amount_cents: int, idempotency_key: str) -> CheckoutSession:
        n = len(self.created)
        self.created.append({"customer_id": customer_id, "amount_cents": amount_cents, "key": idempotency_key})
        return CheckoutSession(session_id=f"cs_fake_{n}", url=f"https://pay.example/cs_fake_{n}")

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> PaymentEvent | None:
        if not hmac.compare_digest(sign(payload), headers.get("x-fake-signature", "")):
            raise AuthError("bad webhook signature", status_code=400)
        event = json.loads(payload)
        if event["type"] != "paid":
            return None
        return PaymentEvent(event["id"], event["customer_id"], event["amount_cents"] * 100, "top-up · fake")


def sign(payload: bytes) -> str:
    return hmac.new(SECRET, payload, hashlib.sha256).hexdigest()
