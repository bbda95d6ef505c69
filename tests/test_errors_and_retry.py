"""The wire §4 status table (both directions) and the retry policy of wire §5."""

from __future__ import annotations

import random

import pytest

from dream._retry import RetryPolicy, call_with_retry, is_retryable
from dream.errors import (
    AuthError,
    DreamError,
    EngineError,
    InputValidationError,
    InsufficientCreditsError,
    ModelNotActiveError,
    ModelNotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    ValidationError,
    WeightsNotFoundError,
    error_for_status,
    status_for_error,
)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, ValidationError, False),
        (401, AuthError, False),
        (402, InsufficientCreditsError, False),
        (403, AuthError, False),
        (404, ModelNotFoundError, False),
        (405, ValidationError, False),
        (409, ValidationError, False),
        (413, PayloadTooLargeError, False),
        (415, ValidationError, False),
        (422, ValidationError, False),
        (429, RateLimitError, True),
        (500, ServerError, False),
        (501, ServerError, False),
        (502, ServerError, True),
        (503, ServerError, True),
        (504, ServerError, True),
        (505, ServerError, False),
        (599, ServerError, False),
        (302, ValidationError, False),
    ],
)
def test_status_table(status: int, cls: type[DreamError], retryable: bool) -> None:
    err = error_for_status(status, f"HTTP {status}: x", request_id="req_1")
    assert type(err) is cls
    assert err.status_code == status and err.request_id == "req_1"
    assert is_retryable(err) is retryable
    assert status_for_error(err) == status
    assert "req_1" in str(err)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InputValidationError("bad"), 422),
        (AuthError("no key"), 401),
        (RateLimitError("slow"), 429),
        (ModelNotFoundError("x"), 404),
        (InsufficientCreditsError("poor"), 402),
        (EngineError("boom"), 500),
        (WeightsNotFoundError("fetch"), 503),
        (ServerError("down"), 500),
    ],
)
def test_server_side_status_of_each_class(exc: DreamError, status: int) -> None:
    assert status_for_error(exc) == status


def test_input_validation_error_is_also_a_value_error() -> None:
    assert issubclass(InputValidationError, ValueError) and issubclass(InputValidationError, DreamError)
    assert issubclass(ModelNotActiveError, RuntimeError) and not issubclass(ModelNotActiveError, DreamError)


def test_input_validation_error_is_caught_as_the_0_5_0_validation_error() -> None:
    # 0.5.0 code catches a refused input as `except dream.ValidationError` (the server's 422).
    from dream.errors import ValidationError

    with pytest.raises(ValidationError):
        raise InputValidationError("actions must be 2-D")
    assert issubclass(InputValidationError, ValueError)
    assert InputValidationError.http_status == 422


def test_insufficient_credits_amounts() -> None:
    err = error_for_status(402, "HTTP 402", detail={"balance_mils": 1234, "requested_mils": 245})
    assert isinstance(err, InsufficientCreditsError)
    assert (err.balance_mils, err.requested_mils) == (1234, 245)
    assert err.balance_cents == 12 and err.requested_cents == 3
    assert err.balance_usd == pytest.approx(0.1234) and err.requested_usd == pytest.approx(0.0245)
    legacy = error_for_status(402, "HTTP 402", detail={"balance_cents": 5, "requested_cents": 3})
    assert (legacy.balance_mils, legacy.requested_mils) == (500, 300)
    assert error_for_status(402, "x", detail="not an object").balance_mils == 0


def test_rate_limit_carries_retry_after() -> None:
    err = error_for_status(429, "slow down", retry_after=0.5)
    assert isinstance(err, RateLimitError) and err.retry_after == 0.5


def test_transport_error_has_no_status_and_is_retryable() -> None:
    err = ServerError("transport error: refused", status_code=None)
    assert err.status_code is None and is_retryable(err)


# ------------------------------------------------------------------ retry policy


def test_delay_schedule_without_jitter() -> None:
    p = RetryPolicy(jitter=False)
    assert [p.delay_for(n) for n in (1, 2, 3, 4, 5, 6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert p.delay_for(10_000) == 4.0


def test_retry_after_wins_and_is_capped() -> None:
    p = RetryPolicy()
    assert p.delay_for(1, 0.5) == 0.5
    assert p.delay_for(1, 60.0) == 4.0


def test_jitter_stays_within_half_to_one_and_a_half() -> None:
    p = RetryPolicy()
    rng = random.Random(0)
    delays = [p.delay_for(2, rng=rng) for _ in range(200)]
    assert min(delays) >= 0.25 and max(delays) <= 0.75


def test_call_with_retry_retries_transient_then_succeeds() -> None:
    slept: list[float] = []
    calls = iter([ServerError("busy", status_code=503), RateLimitError("slow", retry_after=0.1), "ok"])

    def fn() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert call_with_retry(fn, RetryPolicy(jitter=False), sleep=slept.append) == "ok"
    assert slept == [0.25, 0.1]


def test_call_with_retry_gives_up_and_reports_attempts() -> None:
    slept: list[float] = []

    def fn() -> None:
        raise ServerError("busy", status_code=502)

    with pytest.raises(ServerError) as info:
        call_with_retry(fn, RetryPolicy(max_attempts=3, jitter=False), sleep=slept.append)
    assert info.value.attempts_made == 3 and len(slept) == 2


def test_non_retryable_errors_surface_at_once() -> None:
    calls = []

    def fn() -> None:
        calls.append(1)
        raise ValidationError("bad", status_code=422)

    with pytest.raises(ValidationError) as info:
        call_with_retry(fn, RetryPolicy(), sleep=lambda s: None)
    assert len(calls) == 1 and info.value.attempts_made == 1


def test_the_default_policy_rides_out_a_restart_of_a_few_seconds() -> None:
    # The server is away for ~3.5 s: connection refused, then 503 while it loads, then up.
    clock = [0.0]
    outage = [ServerError("transport error: refused", status_code=None)] * 4 + [ServerError("loading", status_code=503)]

    def fn() -> str:
        if clock[0] < 3.5:
            raise outage[min(int(clock[0]), len(outage) - 1)]
        return "ok"

    def sleep(s: float) -> None:
        clock[0] += s

    assert call_with_retry(fn, RetryPolicy(jitter=False), sleep=sleep) == "ok"
    assert 3.5 <= clock[0] <= 10.0


def test_outage_retries_stop_at_the_time_budget_and_other_errors_at_max_attempts() -> None:
    slept: list[float] = []

    def down() -> None:
        raise ServerError("loading", status_code=503)

    with pytest.raises(ServerError) as info:
        call_with_retry(down, RetryPolicy(jitter=False, budget_s=3.0), sleep=slept.append)
    assert slept == [0.25, 0.5, 1.0, 1.25] and info.value.attempts_made == 5

    slept.clear()

    def gateway() -> None:
        raise ServerError("bad gateway", status_code=502)

    with pytest.raises(ServerError) as info:
        call_with_retry(gateway, RetryPolicy(jitter=False), sleep=slept.append)
    assert info.value.attempts_made == 3 and slept == [0.25, 0.5]
    with pytest.raises(ServerError) as info:
        call_with_retry(down, RetryPolicy(max_attempts=1), sleep=slept.append)
    assert info.value.attempts_made == 1  # 1 still turns every retry off
