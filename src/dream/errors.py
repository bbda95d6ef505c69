"""Errors raised by dream, on both transports and by the server.

    Exception
    ├── DreamError                      root of everything a call can raise about the service
    │   ├── AuthError                   401 / 403: missing, invalid or revoked API key
    │   ├── RateLimitError              429: slow down; ``retry_after`` seconds if the server said
    │   ├── ModelNotFoundError          404: unknown model slug (or any 404)
    │   ├── ValidationError             other 4xx: the request was refused as malformed
    │   │   ├── PayloadTooLargeError    413: request body over the server's size limit
    │   │   └── InputValidationError    bad start_frame / actions, caught before any engine work
    │   │                               (also a ValueError; a ValidationError as in 0.5.0)
    │   ├── InsufficientCreditsError    402: balance below the call's charge (mils attached)
    │   ├── ServerError                 5xx, or transport failure after retries
    │   └── EngineError                 the engine failed while running a rollout
    │       └── WeightsNotFoundError    a spec's weights are not present (says what to fetch)
    └── RuntimeError
        └── ModelNotActiveError         the handle's model is not served here (sdk-surface §20.1:
                                        kept a RuntimeError, not a DreamError, for 0.5.0 parity)

The status table of wire-protocol §4 lives here once: the client reads it status → class
(`error_for_status`) and the server reads it class → status (`status_for_error`).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "AuthError",
    "DreamError",
    "EngineError",
    "InputValidationError",
    "InsufficientCreditsError",
    "ModelNotActiveError",
    "ModelNotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServerError",
    "ValidationError",
    "WeightsNotFoundError",
    "error_for_status",
    "status_for_error",
]


class DreamError(Exception):
    """Base class of every error about a dream call."""

    # HTTP status the server answers with for this class; the instance's `status_code`
    # is what a response actually carried (None for transport failures).
    http_status: int = 500

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        super().__init__(message)

    def __str__(self) -> str:
        # The request id survives a paste into a bug report.
        if self.request_id:
            return f"{self.message} (request id: {self.request_id})"
        return self.message


class AuthError(DreamError):
    """The API key is missing, invalid or revoked (HTTP 401/403)."""

    http_status = 401


class RateLimitError(DreamError):
    """Too many requests or concurrent rollouts for this key (HTTP 429)."""

    http_status = 429

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status_code: int = 429,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id, body=body)
        self.retry_after = retry_after


class ModelNotFoundError(DreamError):
    """Unknown model slug (HTTP 404)."""

    http_status = 404


class ValidationError(DreamError):
    """The server refused the request as malformed (HTTP 4xx other than 401/402/403/404/429)."""

    http_status = 422


class PayloadTooLargeError(ValidationError):
    """The request body is over the server's size limit (HTTP 413)."""

    http_status = 413


class InsufficientCreditsError(DreamError):
    """The balance does not cover the call's charge (HTTP 402). Amounts are in mils ($0.0001)."""

    http_status = 402

    def __init__(
        self,
        message: str,
        *,
        balance_mils: int = 0,
        requested_mils: int = 0,
        balance_cents: int | None = None,
        requested_cents: int | None = None,
        status_code: int = 402,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id, body=body)
        # Legacy cents count only when the mils value is absent (wire-protocol §4).
        if not balance_mils and balance_cents is not None:
            balance_mils = int(balance_cents) * 100
        if not requested_mils and requested_cents is not None:
            requested_mils = int(requested_cents) * 100
        self.balance_mils = int(balance_mils)
        self.requested_mils = int(requested_mils)

    @property
    def balance_cents(self) -> int:
        return round(self.balance_mils / 100)

    @property
    def requested_cents(self) -> int:
        return 0 if self.requested_mils <= 0 else math.ceil(self.requested_mils / 100)

    @property
    def balance_usd(self) -> float:
        return self.balance_mils / 10000

    @property
    def requested_usd(self) -> float:
        return self.requested_mils / 10000


class ServerError(DreamError):
    """The server failed (HTTP 5xx), or the transport failed after every retry (status_code None)."""

    http_status = 500


class EngineError(DreamError):
    """The engine failed while running a rollout."""

    http_status = 500


class WeightsNotFoundError(EngineError):
    """A spec's weights are not present; the message says what to fetch and where to put it."""

    http_status = 503


class InputValidationError(ValidationError, ValueError):
    """A start frame or action sequence is malformed; raised before any engine work.

    A `ValidationError` too, so 0.5.0 code that catches the server's 422 as
    ``except dream.ValidationError`` also catches the same input refused locally.
    """

    http_status = 422


class ModelNotActiveError(RuntimeError):
    """The handle's model is not served by this engine or server (nothing was sent)."""


_STATUS_TO_CLASS: dict[int, type[DreamError]] = {
    401: AuthError,
    403: AuthError,
    402: InsufficientCreditsError,
    404: ModelNotFoundError,
    413: PayloadTooLargeError,
    429: RateLimitError,
}


def error_class_for_status(status: int) -> type[DreamError]:
    """Exception class for a non-2xx HTTP status (wire-protocol §4)."""
    if status in _STATUS_TO_CLASS:
        return _STATUS_TO_CLASS[status]
    if 500 <= status <= 599:
        return ServerError
    return ValidationError


def error_for_status(
    status: int,
    message: str,
    *,
    request_id: str | None = None,
    body: Any = None,
    detail: Any = None,
    retry_after: float | None = None,
) -> DreamError:
    """Build the typed error for an HTTP error response."""
    cls = error_class_for_status(status)
    if cls is RateLimitError:
        return RateLimitError(
            message, retry_after=retry_after, status_code=status, request_id=request_id, body=body
        )
    if cls is InsufficientCreditsError:
        d = detail if isinstance(detail, dict) else {}

        def _int(key: str) -> int | None:
            try:
                return int(d[key]) if d.get(key) is not None else None
            except (TypeError, ValueError):
                return None

        return InsufficientCreditsError(
            message,
            balance_mils=_int("balance_mils") or 0,
            requested_mils=_int("requested_mils") or 0,
            balance_cents=_int("balance_cents"),
            requested_cents=_int("requested_cents"),
            status_code=status,
            request_id=request_id,
            body=body,
        )
    return cls(message, status_code=status, request_id=request_id, body=body)


def status_for_error(exc: DreamError) -> int:
    """HTTP status the server answers with for a DreamError (inverse of error_for_status)."""
    return int(exc.status_code or exc.http_status)
