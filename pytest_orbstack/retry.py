"""Bounded retry of transient ``orbctl`` failures.

Only :class:`~pytest_orbstack.errors.TransientOrbctlError` (setup or start
timeouts, download errors, state races) is worth another try: a bad image or a
bad name fails the same way every time, so those errors pass straight through.
Waits grow exponentially with random jitter, so that workers that failed
together do not retry together.  The jitter comes from a private
:class:`random.Random`, seeded from the OS: a plugin that reseeds the global
``random`` module in every worker (pytest-randomly) cannot make workers retry
in lockstep.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

from pytest_orbstack.errors import TransientOrbctlError

__all__ = ["RetryPolicy", "call_with_retry"]

T = TypeVar("T")

#: The most retries ``--orb-retries`` allows: more only multiplies the wait for a failure that stays.
MAX_RETRIES = 10
_JITTER = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry."""

    #: retries after the first attempt (``--orb-retries``); 0 means try once
    retries: int = 3
    #: the wait before the first retry, in seconds (before jitter)
    base_delay: float = 0.25
    #: the longest wait between two attempts, in seconds
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if not 0 <= self.retries <= MAX_RETRIES:
            raise ValueError(f"retries must be from 0 to {MAX_RETRIES}, got {self.retries}")

    @property
    def attempts(self) -> int:
        """How many attempts in all."""
        return self.retries + 1

    def delay(self, retry: int, rng: Callable[[], float] = _JITTER.random) -> float:
        """The wait before retry number ``retry`` (0-based): exponential, capped, with jitter.

        The jitter keeps between half and all of the exponential wait.
        """
        ceiling = min(self.max_delay, self.base_delay * (2.0**retry))
        return ceiling * (0.5 + 0.5 * rng())


def call_with_retry(
    func: Callable[[], T],
    policy: RetryPolicy,
    *,
    retry_on: tuple[type[BaseException], ...] = (TransientOrbctlError,),
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = _JITTER.random,
    on_retry: Optional[Callable[[int, BaseException, float], None]] = None,
) -> T:
    """Call ``func`` until it succeeds, retrying only errors in ``retry_on``.

    After ``policy.attempts`` failures the last error is raised.  ``on_retry``
    is told (retry number, error, wait) before each wait.
    """
    for retry in range(policy.attempts):
        try:
            return func()
        except retry_on as exc:
            if retry + 1 >= policy.attempts:
                raise
            wait = policy.delay(retry, rng)
            if on_retry is not None:
                on_retry(retry, exc, wait)
            sleep(wait)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
