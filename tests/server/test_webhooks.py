"""Webhooks of async rollouts: public targets only, pinned to the checked address, no redirects, signed.

DNS is faked at the resolver boundary only (``socket.getaddrinfo``, what both our check and
the HTTP client's connect would call); every delivery goes over real HTTP to receivers on
loopback addresses (Linux answers on all of 127.0.0.0/8).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable

import pytest

from dream.server.services.webhooks import Webhooks, WebhookTargetRefused
from tests.server.conftest import predict_files

PUBLIC = "93.184.215.14"


class Receiver:
    """A loopback HTTP server recording what is POSTed; /redirect answers 307, /flaky fails once."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        import http.server

        self.hits: list[dict] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                hits.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path == "/redirect":
                    self.send_response(307)
                    self.send_header("Location", "/target")
                elif self.path == "/flaky" and len(hits) == 1:
                    self.send_response(500)
                else:
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def paths(self) -> list[str]:
        return [h["path"] for h in self.hits]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(host: str = "127.0.0.1", port: int = 0) -> Receiver:
        made.append(Receiver(host, port))
        return made[-1]

    yield make
    for r in made:
        r.close()


def fake_dns(monkeypatch, answers: dict[str, Callable[[int], list[str]]]) -> list[str]:
    """Answer `socket.getaddrinfo` for the named hosts: answers[host](n) for its n-th lookup
    (a list of addresses; [] = the name does not resolve). Returns the looked-up names."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in answers:
            return real(host, port, family, type, proto, flags)
        n = sum(1 for a in asked if a == name)
        asked.append(name)
        addrs = answers[name](n)
        if not addrs:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        port_n = int(port or 0)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port_n, 0, 0) if ":" in a else (a, port_n)) for a in addrs]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_dns_rebinding_cannot_move_a_delivery_to_another_address(monkeypatch, receivers) -> None:
    # The operator allows 127.0.0.2 (the customer's receiver); 127.0.0.1 stands for the
    # server's own network. The name answers 127.0.0.2 when checked, then 127.0.0.1.
    legit = receivers("127.0.0.2")
    internal = receivers("127.0.0.1", legit.port)
    asked = fake_dns(monkeypatch, {"hooks.rebind.test": lambda n: ["127.0.0.2"] if n == 0 else ["127.0.0.1"]})
    hooks = Webhooks(b"s", allow=["127.0.0.2/32"], attempts=1, timeout_s=5)
    url = f"http://hooks.rebind.test:{legit.port}/hook"
    assert asyncio.run(hooks.deliver(url, {"id": "r"}, customer_id="cus_1")) is True
    assert internal.hits == []  # the second answer was never used to connect
    assert legit.paths == ["/hook"] and asked == ["hooks.rebind.test"]
    assert legit.hits[0]["headers"]["Host"] == f"hooks.rebind.test:{legit.port}"  # the name, not the address


def test_every_address_a_name_resolves_to_is_checked(monkeypatch) -> None:
    fake_dns(monkeypatch, {"mixed.test": lambda n: [PUBLIC, "10.0.0.7"], "public.test": lambda n: [PUBLIC],
                           "v6.test": lambda n: ["2606:2800:220:1::1", "fe80::1"]})
    hooks = Webhooks(b"s")
    with pytest.raises(WebhookTargetRefused, match=r"'mixed\.test' resolves to 10\.0\.0\.7, a private address"):
        hooks.check_target("https://mixed.test/x")
    with pytest.raises(WebhookTargetRefused, match=r"fe80::1, a link-local address"):
        hooks.check_target("https://v6.test/x")
    assert hooks.check_target("https://public.test/x") == [PUBLIC]
    for url in ("http://127.0.0.1:9/internal-admin", "http://localhost/x", "http://169.254.169.254/latest/meta-data",
                "http://10.1.2.3/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/"):
        with pytest.raises(WebhookTargetRefused, match="public addresses only"):
            hooks.check_target(url)
    Webhooks(b"s", allow=["localhost"]).check_target("http://localhost/x")
    Webhooks(b"s", allow=["127.0.0.0/8"]).check_target("http://127.0.0.1:9/x")


def test_a_name_that_does_not_resolve_is_refused_at_submission(make_client, monkeypatch) -> None:
    fake_dns(monkeypatch, {"hooks.nowhere.test": lambda n: []})
    h = make_client()
    key = h.key()
    files = predict_files()
    params = {"model": "tiny-16", "mode": "async", "webhook_url": "https://hooks.nowhere.test/x"}
    r = h.client.post("/v1/rollouts", data={"params": json.dumps(params)},
                      files={"start_frame": files["frame"], "actions": files["actions"]}, headers=h.auth(key))
    assert r.status_code == 422 and r.headers["x-dreamengine-error-code"] == "webhook_url_refused"
    assert "'hooks.nowhere.test' does not resolve" in r.json()["detail"]
    assert h.client.get("/v1/billing/balance", headers=h.auth(key)).json()["balance_mils"] == 1_000_000  # no charge


def test_an_async_rollout_cannot_aim_its_webhook_at_the_servers_network(make_client, receivers) -> None:
    receiver = receivers()
    h = make_client()
    key = h.key()
    files = predict_files()
    params = {"model": "tiny-16", "mode": "async", "webhook_url": receiver.url + "/internal-admin"}
    r = h.client.post("/v1/rollouts", data={"params": json.dumps(params)},
                      files={"start_frame": files["frame"], "actions": files["actions"]}, headers=h.auth(key))
    assert r.status_code == 422 and r.headers["x-dreamengine-error-code"] == "webhook_url_refused"
    assert "127.0.0.1, a loopback address" in r.json()["detail"]
    h.client.portal.call(h.services.rollouts.drain)
    assert receiver.hits == []


def test_a_redirect_ends_the_delivery(receivers) -> None:
    receiver = receivers()
    hooks = Webhooks(b"s", allow=["127.0.0.1/32"], attempts=3, backoff_s=0.0)
    assert asyncio.run(hooks.deliver(receiver.url + "/redirect", {"id": "r"}, customer_id="cus_1")) is False
    assert receiver.paths == ["/redirect"]  # not followed, and not tried again


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes, *, now: float,
                            tolerance_s: float = 300) -> bool:
    """A receiver's check, written from the Standard Webhooks spec (v1 symmetric signatures)."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts = h["webhook-id"], h["webhook-timestamp"]
    if abs(now - int(ts)) > tolerance_s:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return any(sig.split(",", 1) == ["v1", expected] for sig in h["webhook-signature"].split())


def test_deliveries_are_signed_with_an_id_and_a_timestamp(make_client, receivers) -> None:
    receiver = receivers()
    h = make_client(webhook_allow=["127.0.0.1/32"])
    key, other = h.key("acme"), h.key("other")
    secret = h.client.get("/v1/webhooks/secret", headers=h.auth(key)).json()["secret"]
    other_secret = h.client.get("/v1/webhooks/secret", headers=h.auth(other)).json()["secret"]
    assert secret.startswith("whsec_") and secret != other_secret
    files = predict_files()
    params = {"model": "tiny-16", "mode": "async", "webhook_url": receiver.url + "/flaky"}
    h.services.webhooks.backoff_s = 0.0
    r = h.client.post("/v1/rollouts", data={"params": json.dumps(params)},
                      files={"start_frame": files["frame"], "actions": files["actions"]}, headers=h.auth(key))
    assert r.status_code == 202, r.text
    h.client.portal.call(h.services.rollouts.drain)
    assert receiver.paths == ["/flaky", "/flaky"]  # a 500, then delivered on the second try
    first, second = receiver.hits
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]  # one message, tried twice
    assert first["headers"]["webhook-id"].startswith("msg_")
    assert json.loads(second["body"])["id"] == r.json()["id"] and json.loads(second["body"])["status"] == "succeeded"
    now = time.time()
    # the reference receiver library accepts the delivery and refuses a tampered body or another key
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    assert Webhook(secret).verify(second["body"], second["headers"])["id"] == r.json()["id"]
    for wrong_secret, body in ((other_secret, second["body"]), (secret, second["body"] + b" ")):
        with pytest.raises(WebhookVerificationError):
            Webhook(wrong_secret).verify(body, second["headers"])
    assert verify_standard_webhook(secret, second["headers"], second["body"], now=now)
    assert not verify_standard_webhook(other_secret, second["headers"], second["body"], now=now)
    assert not verify_standard_webhook(secret, second["headers"], second["body"] + b" ", now=now)
    assert not verify_standard_webhook(secret, second["headers"], second["body"], now=now + 3600)  # a replay, later
    forged = {**second["headers"], "webhook-timestamp": str(int(now) + 3600)}  # a replay with a fresh timestamp
    assert not verify_standard_webhook(secret, forged, second["body"], now=now + 3600)
    # Every replica derives the same secret (they share --url-secret).
    assert make_client(webhook_allow=["127.0.0.1/32"]).services.webhooks.secret_for(
        h.services.ledger.authenticate(key).customer_id) == secret
