"""When a failed entry is tried again, and when it goes to the dead-letter stream."""

from __future__ import annotations

import pytest

from app.platform.runtime.retry_policy import NonRetryableError, RetryableError, RetryPolicy


@pytest.mark.parametrize(
    ("attempt", "delay"),
    [(1, 1_000), (2, 2_000), (3, 4_000), (4, 8_000), (5, 16_000), (6, 32_000)],
)
def test_the_default_schedule_doubles_from_one_second(attempt: int, delay: int) -> None:
    assert RetryPolicy().delay_ms(attempt) == delay


@pytest.mark.parametrize("attempt", [7, 8, 20, 100, 500])
def test_the_default_delay_is_capped_at_one_minute(attempt: int) -> None:
    assert RetryPolicy().delay_ms(attempt) == 60_000


def test_the_delay_never_decreases_as_attempts_grow() -> None:
    delays = [RetryPolicy().delay_ms(a) for a in range(1, 50)]

    assert delays == sorted(delays)


def test_a_custom_schedule_follows_base_factor_and_cap() -> None:
    policy = RetryPolicy(base_delay_ms=100, factor=3.0, max_delay_ms=2_000)

    assert [policy.delay_ms(a) for a in range(1, 6)] == [100, 300, 900, 2_000, 2_000]


def test_a_factor_of_one_gives_a_constant_delay() -> None:
    policy = RetryPolicy(base_delay_ms=250, factor=1.0)

    assert {policy.delay_ms(a) for a in range(1, 10)} == {250}


def test_delays_are_whole_milliseconds() -> None:
    policy = RetryPolicy(base_delay_ms=1_000, factor=1.5)

    assert policy.delay_ms(2) == 1_500
    assert policy.delay_ms(3) == 2_250
    assert all(isinstance(policy.delay_ms(a), int) for a in range(1, 10))


@pytest.mark.parametrize("attempt", [1, 2])
def test_a_retryable_failure_is_retried_before_the_third_attempt(attempt: int) -> None:
    assert not RetryPolicy().gives_up_after(attempt, RetryableError("timeout"))


@pytest.mark.parametrize("attempt", [3, 4, 10])
def test_the_default_policy_gives_up_from_the_third_attempt(attempt: int) -> None:
    assert RetryPolicy().gives_up_after(attempt, RetryableError("timeout"))


def test_an_unclassified_error_is_retried_like_a_retryable_one() -> None:
    policy = RetryPolicy()

    assert not policy.gives_up_after(1, RuntimeError("boom"))
    assert policy.gives_up_after(3, RuntimeError("boom"))


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_a_non_retryable_error_gives_up_at_once(attempt: int) -> None:
    assert RetryPolicy().gives_up_after(attempt, NonRetryableError("400 bad request"))


def test_a_subclass_of_non_retryable_error_also_gives_up_at_once() -> None:
    class BadPayload(NonRetryableError):
        pass

    assert RetryPolicy().gives_up_after(1, BadPayload("nope"))


def test_more_attempts_allowed_means_giving_up_later() -> None:
    policy = RetryPolicy(max_attempts=5)

    assert not policy.gives_up_after(4, RetryableError("x"))
    assert policy.gives_up_after(5, RetryableError("x"))


def test_a_single_attempt_policy_never_retries() -> None:
    assert RetryPolicy(max_attempts=1).gives_up_after(1, RetryableError("x"))


def test_a_huge_attempt_number_gets_the_cap_instead_of_overflowing() -> None:
    assert RetryPolicy().delay_ms(5_000) == 60_000
