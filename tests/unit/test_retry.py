"""retry.py: only transient errors are retried, with growing, jittered, capped waits; the Retrier."""

from __future__ import annotations

import random

import pytest

from pytest_orbstack.errors import (
    ImageNotFoundError,
    OrbctlHungError,
    OrbctlTimeoutError,
    TransientOrbctlError,
    first_line,
)
from pytest_orbstack.events import Silent
from pytest_orbstack.retry import MAX_RETRIES, Retrier, RetryPolicy, call_with_retry


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


# --- Retrier: the one place that decides retries ---------------------------------------------


class Lines(Silent):
    """An :class:`~pytest_orbstack.events.Events` that keeps the progress lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def event(self, line: str, *, verbose: bool = False) -> None:
        self.lines.append(line)


def hang() -> OrbctlTimeoutError:
    return OrbctlTimeoutError(["orbctl", "clone", "a", "b"], 3.0)


def test_retrier_call_retries_with_one_progress_line_each() -> None:
    lines, waits = Lines(), []
    retrier = Retrier(RetryPolicy(retries=3), events=lines, sleep=waits.append)
    func = Flaky(2, transient())
    retrier.call("start of m", func)
    assert func.calls == 3
    assert len(waits) == 2
    assert [line.split(" in ")[0] for line in lines.lines] == ["retrying start of m"] * 2
    assert lines.lines[0].endswith(f"(attempt 2): {first_line(transient())}")
    assert "(attempt 3)" in lines.lines[1]


def test_retrier_call_stops_where_the_limit_says() -> None:
    class Passed:
        def check(self, exc: BaseException) -> None:
            raise RuntimeError(f"deadline passed after: {exc.stderr}")  # type: ignore[attr-defined]

    retrier = Retrier(RetryPolicy(retries=5), sleep=lambda s: pytest.fail("slept"))
    func = Flaky(5, transient())
    with pytest.raises(RuntimeError, match="deadline passed after: setup"):
        retrier.call("clone of a as b", func, stop=Passed())
    assert func.calls == 1


def test_retrier_remembers_a_hang_until_a_call_of_that_kind_succeeds() -> None:
    retrier = Retrier(RetryPolicy(retries=3), sleep=lambda s: None)

    def hung() -> None:
        raise hang()

    with pytest.raises(OrbctlTimeoutError):
        retrier.call("clone of a as b", hung, kind="clone")
    calls: list[str] = []
    with pytest.raises(OrbctlHungError, match="clone"):
        retrier.call("clone of a as c", lambda: calls.append("clone"), kind="clone")
    assert calls == []  # failed at once: no second hang
    retrier.call("create of d", lambda: calls.append("create"), kind="create")  # another kind runs
    retrier.forget_hang("clone")  # e.g. a clone through another path went through
    retrier.call("clone of a as e", lambda: calls.append("clone"), kind="clone")
    assert calls == ["create", "clone"]


def test_retrier_pause_reports_the_failure_waits_and_tells_on_failure() -> None:
    lines, waits, failures = Lines(), [], []
    retrier = Retrier(RetryPolicy(retries=3), events=lines, sleep=waits.append, on_failure=failures.append)
    exc = transient()
    retrier.pause("create of m", 0, exc)
    assert failures == [exc]
    assert len(waits) == 1
    assert 0.125 <= waits[0] <= 0.25
    assert lines.lines == [f"retrying create of m in {waits[0]:.1f}s (attempt 2): {first_line(exc)}"]
