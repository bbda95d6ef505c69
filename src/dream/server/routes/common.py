"""What several routers share: documented error responses and the legacy result headers."""

from __future__ import annotations

from typing import Any

from dream.server.schemas import ErrorBody

_ERR = {"model": ErrorBody}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses (all share the ``{"detail": …}`` body)."""
    descriptions = {
        400: "malformed request (e.g. unparsable multipart)",
        401: "missing or invalid API key",
        402: "insufficient credits; detail has balance_mils and requested_mils",
        403: "revoked API key, or a bad/expired video signature",
        404: "not found",
        409: "a request with this Idempotency-Key is still running elsewhere",
        413: "request body over the size limit",
        422: "invalid input (X-DreamEngine-Error-Code says which kind)",
        429: "rate limited; Retry-After says when to retry (seconds)",
        500: "internal error (request id in the detail and in X-DreamEngine-Request-Id)",
        502: "upstream provider error",
        503: "not ready (model loading) or feature not configured",
    }
    return {s: {**_ERR, "description": descriptions.get(s, "error")} for s in statuses}


AUTHED = (401, 403, 413, 422, 429, 500)
ROLLOUT_ERRORS = errors(400, 402, 409, 503, *AUTHED)


def legacy_headers(*, wall_ms: float, cost_usd: float, customer_id: str, **extra: Any) -> dict[str, str]:
    """The X-DreamEngine-* headers of wire-protocol §3 (plus ours, ignored by other clients)."""
    h = {
        "X-DreamEngine-Engine-Wall-Ms": f"{wall_ms:.3f}",
        "X-DreamEngine-Estimated-Charge-USD": repr(float(cost_usd)),
        "X-DreamEngine-Customer-Id": customer_id,
    }
    for k, v in extra.items():
        if v is not None:
            h["X-DreamEngine-" + "-".join(p.capitalize() for p in k.split("_"))] = str(v)
    return h
