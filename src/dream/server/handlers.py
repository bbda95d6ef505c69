"""Exception handlers: a `DreamError` becomes its status (the one table in dream.errors,
read class → status) and a ``{"detail": …}`` body; request validation and HTTP errors
keep FastAPI's shape. Every error names its class in ``X-DreamEngine-Error-Code``.

Anything else is not handled here: it reaches the request-context middleware, which
logs the traceback and answers a bare 500 with the request id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dream.errors import DreamError, InsufficientCreditsError, RateLimitError, status_for_error
from dream.server.services.codes import ERROR_CODE_HEADER, error_code

logger = logging.getLogger("dream.server.errors")


def _retry_after(seconds: float) -> str:
    """Seconds only (the 0.5.0 client ignores the HTTP-date form); floats allowed."""
    return f"{seconds:g}"


def dream_error_response(exc: DreamError) -> JSONResponse:
    status = status_for_error(exc)
    detail: Any = exc.message
    headers = {ERROR_CODE_HEADER: error_code(exc)}
    if isinstance(exc, InsufficientCreditsError):
        # wire-protocol §4: the 402 detail must be an object carrying mils.
        detail = {
            "message": exc.message,
            "balance_mils": exc.balance_mils,
            "requested_mils": exc.requested_mils,
            "balance_cents": exc.balance_cents,
            "requested_cents": exc.requested_cents,
        }
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        headers["Retry-After"] = _retry_after(exc.retry_after)
    elif status == 503:
        headers["Retry-After"] = "1"
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status >= 500 and getattr(exc, "log_level", logging.ERROR) >= logging.ERROR:
        logger.error("%s %d: %s", type(exc).__name__, status, exc.message)
    else:
        logger.info("%s %d: %s", type(exc).__name__, status, exc.message)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _dream_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DreamError)
    if isinstance(exc, RateLimitError):  # request rate, concurrency cap, sessions: every 429 counts
        services = getattr(request.app.state, "services", None)
        if services is not None:
            services.metrics.rate_limited.inc()
    return dream_error_response(exc)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    logger.info("request validation failed: %s", exc.errors())
    return JSONResponse(
        {"detail": jsonable_encoder(exc.errors())}, status_code=422, headers={ERROR_CODE_HEADER: "request_validation"}
    )


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    headers[ERROR_CODE_HEADER] = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(DreamError, _dream_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
