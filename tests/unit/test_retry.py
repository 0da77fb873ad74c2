"""retry.py: only transient errors are retried, with growing, jittered, capped waits."""

from __future__ import annotations

import random

import pytest

from pytest_orbstack.errors import ImageNotFoundError, TransientOrbctlError
from pytest_orbstack.retry import MAX_RETRIES, RetryPolicy, call_with_retry


def transient() -> TransientOrbctlError:
    return TransientOrbctlError(["orbctl", "create", "ubuntu", "x"], 1, "", "setup: machine didn't start")


class Flaky:
    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_transient_failures_are_retried_until_success() -> None:
    waits: list[float] = []
    func = Flaky(2, transient())
    assert call_with_retry(func, RetryPolicy(retries=3), sleep=waits.append, rng=lambda: 1.0) == "ok"
    assert func.calls == 3
    assert waits == [0.25, 0.5]


def test_gives_up_after_retries_and_raises_the_last_error() -> None:
    waits: list[float] = []
    func = Flaky(10, transient())
    with pytest.raises(TransientOrbctlError):
        call_with_retry(func, RetryPolicy(retries=2), sleep=waits.append, rng=lambda: 0.0)
    assert func.calls == 3
    assert waits == [0.125, 0.25]


def test_zero_retries_tries_once() -> None:
    func = Flaky(1, transient())
    with pytest.raises(TransientOrbctlError):
        call_with_retry(func, RetryPolicy(retries=0), sleep=lambda s: None)
    assert func.calls == 1


def test_permanent_errors_are_not_retried() -> None:
    error = ImageNotFoundError(["orbctl", "create", "ubuntu:99.04"], 1, "", "image not found")
    func = Flaky(1, error)
    with pytest.raises(ImageNotFoundError):
        call_with_retry(func, RetryPolicy(retries=5), sleep=lambda s: pytest.fail("slept"))
    assert func.calls == 1


def test_delay_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(retries=10, base_delay=1.0, max_delay=5.0)
    assert [policy.delay(n, lambda: 1.0) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    # jitter keeps between half and all of the wait
    assert policy.delay(1, lambda: 0.0) == 1.0
    assert 1.0 <= policy.delay(1) <= 2.0


def test_on_retry_is_told_each_retry() -> None:
    seen: list[tuple[int, str]] = []
    func = Flaky(2, transient())
    call_with_retry(
        func,
        RetryPolicy(retries=3),
        sleep=lambda s: None,
        on_retry=lambda n, exc, wait: seen.append((n, type(exc).__name__)),
    )
    assert seen == [(0, "TransientOrbctlError"), (1, "TransientOrbctlError")]


def test_jitter_does_not_follow_the_global_random_seed() -> None:
    """pytest-randomly reseeds ``random`` identically in every worker: the jitter must not follow."""
    policy = RetryPolicy(base_delay=1.0, max_delay=1.0)
    random.seed(1234)
    first = [policy.delay(0) for _ in range(5)]
    random.seed(1234)
    second = [policy.delay(0) for _ in range(5)]
    assert first != second
    assert all(0.5 <= wait <= 1.0 for wait in first + second)


@pytest.mark.parametrize("retries", [-1, MAX_RETRIES + 1])
def test_retries_are_capped(retries: int) -> None:
    with pytest.raises(ValueError, match=f"from 0 to {MAX_RETRIES}"):
        RetryPolicy(retries=retries)
    assert RetryPolicy(retries=MAX_RETRIES).attempts == MAX_RETRIES + 1
