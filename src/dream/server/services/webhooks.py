"""Webhook delivery for async rollouts: POST the final envelope, signed, a few tries.

Body: the rollout envelope (JSON). Header ``X-DreamEngine-Signature: sha256=<hex>`` is
HMAC-SHA256 of the body with the server's URL secret, so a receiver that knows the
secret can check the sender. Delivery is best effort: three tries with backoff, then
logged; the envelope stays available at ``GET /v1/rollouts/{id}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from dream.errors import ValidationError

logger = logging.getLogger("dream.server.webhooks")


def check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(f"webhook_url must be an http(s) URL; got {url!r}", status_code=422)
    return url


class Webhooks:
    def __init__(self, secret: bytes, *, timeout_s: float = 10.0, attempts: int = 3, backoff_s: float = 1.0) -> None:
        self._secret = secret
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s

    def signature(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    async def deliver(self, url: str, envelope: dict[str, Any]) -> bool:
        import httpx

        body = json.dumps(envelope).encode()
        headers = {"Content-Type": "application/json", "X-DreamEngine-Signature": self.signature(body)}
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            for attempt in range(1, self.attempts + 1):
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
