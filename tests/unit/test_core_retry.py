"""The one retry helper: bounded attempts, full-jitter capped exponential delays, a retryable predicate."""

from __future__ import annotations

import pytest

from functions.core.retry import Backoff


def _backoff(attempts: int, sleeps: list[float]) -> Backoff:
    # The jitter pinned to its upper bound, so the delays are the caps themselves.
    return Backoff(attempts, base_s=0.05, cap_s=0.3, sleep=sleeps.append, uniform=lambda _lo, hi: hi)


def test_call_retries_until_success_with_growing_capped_delays() -> None:
    # GIVEN an operation failing four times WHEN called with six attempts THEN the fifth succeeds
    sleeps: list[float] = []
    calls = iter([OSError(), OSError(), OSError(), OSError(), "ok"])

    def op() -> str:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert _backoff(6, sleeps).call(op, retryable=lambda e: isinstance(e, OSError)) == "ok"
    # AND no sleep before the first attempt, then base * 2**(n-1), capped
    assert sleeps == [0.05, 0.1, 0.2, 0.3]


def test_call_gives_up_after_the_last_attempt_and_on_non_retryable() -> None:
    sleeps: list[float] = []

    def op() -> None:
        raise OSError("down")

    with pytest.raises(OSError, match="down"):
        _backoff(3, sleeps).call(op, retryable=lambda e: True)
    assert len(sleeps) == 2  # no sleep after the last attempt

    sleeps.clear()
    with pytest.raises(OSError, match="down"):
        _backoff(3, sleeps).call(op, retryable=lambda e: False)
    assert sleeps == []


def test_attempts_iterates_bounded_and_validates() -> None:
    sleeps: list[float] = []
    assert list(_backoff(3, sleeps).attempts()) == [0, 1, 2]
    assert len(sleeps) == 2
    with pytest.raises(ValueError, match="max_attempts"):
        Backoff(0)
