"""Webhook delivery for async rollouts: POST the final envelope, signed, a few tries.

Targets: public addresses only. The host is resolved and *every* address it resolves to
must be a global unicast one, so loopback, private, link-local (cloud metadata at
169.254.169.254 among them), multicast and reserved targets are refused, and so is a
name that does not resolve: at submission (422) and again before each delivery try. An
operator allowlist (hosts or CIDR networks) lifts the check for its entries.

Each try connects to an address that was just checked, never to the name: the URL's host
is replaced by the address, while the ``Host`` header and the TLS server name stay the
name's (so the certificate is verified against the name). A name whose DNS answer
changes between the check and the connection (DNS rebinding) therefore cannot send a
delivery to a private address. Redirects are refused: a 3xx ends the delivery.

Signing follows Standard Webhooks (standardwebhooks.com, v1 symmetric):

* ``webhook-id: msg_<32 hex>``: one per delivery, the same on each of its tries;
* ``webhook-timestamp: <unix seconds>``: when this try was sent;
* ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``.

The key is the customer's own webhook secret (``whsec_<base64 key>``, from
``GET /v1/webhooks/secret``), derived from the server's URL secret and the customer id:
every replica derives the same one, and one customer's secret cannot sign another's
deliveries. A receiver checks the signature, refuses a timestamp more than a few minutes
from its clock and ids it has seen, so a captured delivery cannot be replayed.

Delivery is best effort: three tries with backoff, then logged; the envelope stays
available at ``GET /v1/rollouts/{id}``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from dream.errors import ValidationError
from dream.server.services.db import new_id

logger = logging.getLogger("dream.server.webhooks")

SECRET_PREFIX = "whsec_"
Resolver = Callable[[str, int], list[str]]


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def system_resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver); OSError when it does not."""
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.hostname:
        raise ValidationError(f"webhook_url must be an http(s) URL; got {url!r}", status_code=422)
    return url


class WebhookTargetRefused(ValidationError):
    """A webhook_url whose host does not resolve, or is or resolves to a non-public address (HTTP 422)."""

    http_status = 422
    error_code = "webhook_url_refused"


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a webhook may not be sent to `ip`, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "not global"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of Standard Webhooks for a ``whsec_…`` secret."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


class Webhooks:
    def __init__(
        self,
        secret: bytes,
        *,
        timeout_s: float = 10.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        allow: Sequence[str] = (),
        resolve: Resolver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        # Operator allowlist: host names (exact, case-insensitive) and CIDR networks.
        self._allow_hosts = {a.lower() for a in allow if not _is_network(a)}
        self._allow_nets = [ipaddress.ip_network(a, strict=False) for a in allow if _is_network(a)]
        self._resolve = resolve or system_resolve  # tests pass their own: DNS answers they choose
        self._clock = clock

    def secret_for(self, customer_id: str) -> str:
        """The customer's webhook signing secret, ``whsec_<base64 of 32 bytes>``."""
        key = hmac.new(self._secret, b"dream-engine webhook secret:" + customer_id.encode(), hashlib.sha256).digest()
        return SECRET_PREFIX + base64.b64encode(key).decode("ascii")

    def check_target(self, url: str) -> list[str]:
        """The addresses `url`'s host resolves to, each checked; WebhookTargetRefused (422)
        when the name does not resolve or any address is not public (unless allowlisted).

        An allowlisted host name is resolved but not checked. Blocking (DNS): call it in a thread.
        """
        parts = urlsplit(check_webhook_url(url))
        host = (parts.hostname or "").lower()
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = self._resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
            except (OSError, UnicodeError) as exc:
                raise WebhookTargetRefused(
                    f"webhook_url host {host!r} does not resolve ({exc}); webhooks go to public addresses only",
                    status_code=422,
                ) from None
            if not addresses:
                raise WebhookTargetRefused(f"webhook_url host {host!r} resolves to no address", status_code=422)
        if host in self._allow_hosts:
            return addresses
        for addr in addresses:
            ip = ipaddress.ip_address(addr.split("%", 1)[0])
            if any(ip in net for net in self._allow_nets):
                continue
            why = _refused(ip)
            if why is not None:
                raise WebhookTargetRefused(
                    f"webhook_url host {host!r} resolves to {ip}, a {why} address; webhooks go to public addresses "
                    "only (an operator can allow a host with --webhook-allow)",
                    status_code=422,
                )
        return addresses

    def headers(self, customer_id: str, msg_id: str, body: bytes) -> dict[str, str]:
        """The signed headers of one try (Standard Webhooks)."""
        ts = int(self._clock())
        return {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(self.secret_for(customer_id), msg_id, ts, body),
        }

    async def deliver(self, url: str, envelope: dict[str, Any], *, customer_id: str) -> bool:
        """POST `envelope` to `url`, signed with `customer_id`'s secret; True once a try got a 2xx."""
        import httpx

        body = json.dumps(envelope).encode()
        msg_id = new_id("msg")
        parts = urlsplit(url)
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False, trust_env=False) as http:
            for attempt in range(1, self.attempts + 1):
                try:
                    addresses = await asyncio.to_thread(self.check_target, url)
                except ValidationError as exc:
                    logger.error("webhook %s refused: %s", url, exc.message)
                    return False
                try:
                    resp = await self._post_pinned(http, url, parts.hostname or "", addresses, body,
                                                   self.headers(customer_id, msg_id, body))
                    if resp.status_code < 300:
                        return True
                    if resp.status_code < 400:
                        logger.error("webhook %s answered %d (to %s): redirects are not followed; not delivered",
                                     url, resp.status_code, resp.headers.get("location", "?"))
                        return False
                    logger.warning("webhook %s answered %d (try %d)", url, resp.status_code, attempt)
                except httpx.HTTPError as exc:
                    logger.warning("webhook %s failed: %s (try %d)", url, exc, attempt)
                if attempt < self.attempts:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        logger.error("webhook %s not delivered after %d tries", url, self.attempts)
        return False

    @staticmethod
    async def _post_pinned(
        http: Any, url: str, host: str, addresses: list[str], body: bytes, headers: dict[str, str]
    ) -> Any:
        """POST to the first of the checked `addresses` that accepts a connection, the URL's
        host name kept in the Host header and as the TLS server name."""
        import httpx

        target = httpx.URL(url)
        host_header = target.netloc.decode("ascii")
        last: Exception | None = None
        for addr in addresses:
            pinned = target.copy_with(host=addr.split("%", 1)[0])
            try:
                return await http.post(pinned, content=body, headers={**headers, "Host": host_header},
                                       extensions={"sni_hostname": host})
            except httpx.ConnectError as exc:  # this address is down: the next one
                last = exc
        assert last is not None
        raise last
