"""call_with_retries: the first attempt runs before tenacity, and retrying after it is unchanged."""

from __future__ import annotations

import logging

import pytest

from integration_pipelines.lib.http import ClientError, RequestCounter, RetryPolicy, call_with_retries

POLICY = RetryPolicy(max_attempts=3, initial_wait=1.0, max_wait=10.0, jitter=0.0)


def _failing(times: int, *, retryable: bool = True):
    calls = []

    def fn() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= times:
            raise ClientError(f"failure {len(calls)}", retryable=retryable)
        return "answer"

    return fn, calls


def test_a_first_success_is_one_call_without_waiting() -> None:
    fn, calls = _failing(0)
    waits: list[float] = []
    assert call_with_retries(fn, policy=POLICY, sleep=waits.append) == "answer"
    assert calls == [1] and waits == []


def test_failures_are_retried_with_the_backoff_and_logged_from_the_first_attempt(caplog) -> None:
    fn, calls = _failing(2)
    waits: list[float] = []
    counter = RequestCounter()
    with caplog.at_level(logging.WARNING):
        result = call_with_retries(
            fn, policy=POLICY, sleep=waits.append, counter=counter, logger=logging.getLogger("t"), what="GET x"
        )
    assert result == "answer"
    assert calls == [1, 2, 3]
    assert waits == [1.0, 2.0]  # the first failure waits initial_wait, as when tenacity ran it
    assert counter.retries == 2
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "GET x failed (attempt 1/3)",
        "GET x failed (attempt 2/3)",
    ]


def test_attempts_run_out_with_the_last_error() -> None:
    fn, calls = _failing(5)
    with pytest.raises(ClientError, match="failure 3"):
        call_with_retries(fn, policy=POLICY, sleep=lambda _: None)
    assert calls == [1, 2, 3]


def test_an_error_that_is_not_retryable_is_raised_at_once() -> None:
    fn, calls = _failing(1, retryable=False)
    with pytest.raises(ClientError, match="failure 1"):
        call_with_retries(fn, policy=POLICY, sleep=lambda _: pytest.fail("must not wait"))
    assert calls == [1]
