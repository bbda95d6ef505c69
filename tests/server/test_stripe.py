"""The Stripe provider through the real ``stripe`` library: its HTTP layer is replaced by a
recording fake (nothing leaves the machine), webhooks are signed the way Stripe signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qs

import pytest

stripe = pytest.importorskip("stripe")

from dream.errors import AuthError, ServerError  # noqa: E402
from dream.server.services.payments import StripePayments, load_provider  # noqa: E402

WEBHOOK_SECRET = "whsec_test"


class RecordingHTTPClient(stripe.HTTPClient):
    name = "recording"

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status
        self.calls: list[tuple[str, str, dict, str]] = []

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        self.calls.append((method, url, dict(headers or {}), post_data or ""))
        if self.status != 200:
            return json.dumps({"error": {"message": "card declined", "type": "card_error"}}), self.status, {}
        body = {"id": "cs_test_123", "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/cs_test_123"}
        return json.dumps(body), 200, {"request-id": "req_stripe"}

    def request_stream(self, *args, **kwargs):  # pragma: no cover - unused
        raise NotImplementedError

    def close(self) -> None:
        pass


def _provider(http: RecordingHTTPClient) -> StripePayments:
    return StripePayments(api_key="sk_test_x", webhook_secret=WEBHOOK_SECRET, success_url="https://ok", cancel_url="https://no",
                          http_client=http)


def test_checkout_session_goes_through_the_stripe_library() -> None:
    http = RecordingHTTPClient()
    session = _provider(http).create_checkout(customer_id="cus_1", customer_name="acme", amount_cents=2500,
                                              idempotency_key="abc")
    assert session.session_id == "cs_test_123" and session.url.startswith("https://checkout.stripe.com/")
    method, url, headers, body = http.calls[0]
    assert method == "post" and url.endswith("/v1/checkout/sessions")
    assert headers["Authorization"] == "Bearer sk_test_x" and headers["Idempotency-Key"] == "dream-topup-abc"
    form = parse_qs(body)
    assert form["line_items[0][price_data][unit_amount]"] == ["2500"] and form["metadata[dream_customer_id]"] == ["cus_1"]
    assert form["mode"] == ["payment"] and form["client_reference_id"] == ["cus_1"]


def test_provider_failures_become_retryable_server_errors() -> None:
    with pytest.raises(ServerError) as ei:
        _provider(RecordingHTTPClient(status=402)).create_checkout(
            customer_id="c", customer_name="n", amount_cents=500, idempotency_key="k")
    assert ei.value.status_code == 502


def _signed(event: dict, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict]:
    payload = json.dumps(event).encode()
    t = int(time.time())
    sig = hmac.new(secret.encode(), f"{t}.{payload.decode()}".encode(), hashlib.sha256).hexdigest()
    return payload, {"stripe-signature": f"t={t},v1={sig}"}


def test_paid_checkout_webhook_becomes_a_credit_event() -> None:
    event = {"id": "evt_1", "object": "event", "type": "checkout.session.completed", "data": {"object": {
        "id": "cs_test_123", "object": "checkout.session", "payment_status": "paid", "amount_total": 2500,
        "client_reference_id": "cus_1", "metadata": {"dream_customer_id": "cus_1", "amount_cents": "2500"}}}}
    provider = _provider(RecordingHTTPClient())
    paid = provider.parse_webhook(*_signed(event))
    assert paid is not None and (paid.event_id, paid.customer_id, paid.amount_mils) == ("evt_1", "cus_1", 250_000)
    event["data"]["object"]["payment_status"] = "unpaid"
    assert provider.parse_webhook(*_signed(event)) is None
    with pytest.raises(AuthError):
        provider.parse_webhook(*_signed(event, secret="whsec_other"))


def test_stripe_is_off_unless_configured(monkeypatch) -> None:
    from dream.server.settings import Settings

    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    assert load_provider(None, Settings()) is None
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_env")
    assert isinstance(load_provider(None, Settings()), StripePayments)
    assert load_provider("tests.server.fakes:FakePayments", Settings()).name == "fake"
