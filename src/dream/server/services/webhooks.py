"""Webhook delivery for async rollouts: POST the final envelope, signed, a few tries.

Only public addresses are called: the host is resolved and every address it resolves to
must be a global unicast one, so loopback, private, link-local (cloud metadata at
169.254.169.254 among them), multicast and reserved targets are refused, both when the
rollout is submitted (422) and again right before each delivery (a name may change
what it resolves to). An operator allowlist (hosts or CIDR networks) lifts the check
for its entries; redirects are never followed.

Body: the rollout envelope (JSON). Header ``X-DreamEngine-Signature: sha256=<hex>`` is
HMAC-SHA256 of the body with the server's URL secret, so a receiver that knows the
secret can check the sender. Delivery is best effort: three tries with backoff, then
logged; the envelope stays available at ``GET /v1/rollouts/{id}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from dream.errors import ValidationError

logger = logging.getLogger("dream.server.webhooks")


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.hostname:
        raise ValidationError(f"webhook_url must be an http(s) URL; got {url!r}", status_code=422)
    return url


class WebhookTargetRefused(ValidationError):
    """A webhook_url whose host is, or resolves to, a non-public address (HTTP 422)."""

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


class Webhooks:
    def __init__(
        self,
        secret: bytes,
        *,
        timeout_s: float = 10.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        allow: Sequence[str] = (),
        resolve: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        self._secret = secret
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        # Operator allowlist: host names (exact, case-insensitive) and CIDR networks.
        self._allow_hosts = {a.lower() for a in allow if not _is_network(a)}
        self._allow_nets = [ipaddress.ip_network(a, strict=False) for a in allow if _is_network(a)]
        self._resolve = resolve or _resolve

    def check_target(self, url: str) -> None:
        """Refuse (422) a URL whose host is or resolves to a non-public address, unless allowlisted.

        Blocking (DNS): call it in a thread. A name that does not resolve is let through
        here (delivery resolves it again and gives up if it still fails).
        """
        parts = urlsplit(check_webhook_url(url))
        host = (parts.hostname or "").lower()
        if host in self._allow_hosts:
            return
        try:
            addresses = self._resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        except OSError:
            return
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

    def signature(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    async def deliver(self, url: str, envelope: dict[str, Any]) -> bool:
        import httpx

        body = json.dumps(envelope).encode()
        headers = {"Content-Type": "application/json", "X-DreamEngine-Signature": self.signature(body)}
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as http:
            for attempt in range(1, self.attempts + 1):
                try:
                    await asyncio.to_thread(self.check_target, url)
                except ValidationError as exc:
                    logger.error("webhook %s refused: %s", url, exc.message)
                    return False
                try:
                    resp = await http.post(url, content=body, headers=headers)
                    if resp.status_code < 300:
                        return True
                    logger.warning("webhook %s answered %d (try %d)", url, resp.status_code, attempt)
                except httpx.HTTPError as exc:
                    logger.warning("webhook %s failed: %s (try %d)", url, exc, attempt)
                if attempt < self.attempts:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        logger.error("webhook %s not delivered after %d tries", url, self.attempts)
        return False
