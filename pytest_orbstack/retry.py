"""Bounded retry of transient ``orbctl`` failures.

Only :class:`~pytest_orbstack.errors.TransientOrbctlError` (setup or start
timeouts, download errors, state races) is worth another try: a bad image or a
bad name fails the same way every time, so those errors pass straight through.
Waits grow exponentially with random jitter, so that workers that failed
together do not retry together.  The jitter comes from a private
:class:`random.Random`, seeded from the OS: a plugin that reseeds the global
``random`` module in every worker (pytest-randomly) cannot make workers retry
in lockstep.

:class:`Retrier` is the one place the plugin decides retries: it runs a call
under the policy (:meth:`Retrier.call`), paces a hand-written loop that has
its own idea of what to retry (:meth:`Retrier.pause`), reports each retry as a
progress line, and remembers which kinds of orbctl call hung, so that later
machines fail at once instead of paying the timeout again.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, TypeVar

from pytest_orbstack.errors import (
    OrbctlHungError,
    OrbctlTimeoutError,
    TransientOrbctlError,
    first_line,
)
from pytest_orbstack.events import Events, Silent

__all__ = ["Retrier", "RetryPolicy", "StopAt", "call_with_retry"]

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


class StopAt(Protocol):
    """A limit no retry starts after (a machine's :class:`~pytest_orbstack.deadline.Deadline`)."""

    def check(self, exc: BaseException) -> None:
        """Raise instead of retrying once the limit passed (``exc``: the last failure)."""


class Retrier:
    """Retries orbctl calls under ``policy``, one progress line per retry; remembers hangs.

    ``on_failure`` is told of each failed attempt a hand-written loop pauses
    after (:meth:`pause`), e.g. a breaker that counts machines without an
    address.  Thread-safe: the threads of one process share it.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        events: Optional[Events] = None,
        sleep: Callable[[float], None] = time.sleep,
        on_failure: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self.policy = policy
        self._events: Events = events if events is not None else Silent()
        self._sleep = sleep
        self._on_failure = on_failure
        self._lock = threading.Lock()
        #: kind of orbctl call (``create``, ``clone``) -> the one-line message of its first hang
        self._hung: dict[str, str] = {}

    def _say(self, what: str, retry: int, exc: BaseException, wait: float) -> None:
        self._events.event(
            f"retrying {what} in {wait:.1f}s (attempt {retry + 2}): {first_line(exc)}", verbose=True
        )

    def pause(self, what: str, retry: int, exc: BaseException) -> None:
        """A loop's attempt ``retry`` (0-based) of ``what`` failed with ``exc``: report it, wait."""
        self._on_failure(exc)
        wait = self.policy.delay(retry)
        self._say(what, retry, exc, wait)
        self._sleep(wait)

    def call(
        self,
        what: str,
        func: Callable[[], object],
        *,
        kind: Optional[str] = None,
        stop: Optional[StopAt] = None,
    ) -> None:
        """``func()`` under the policy; each retry is a progress line.

        With ``kind`` (``clone``), a call of that kind that hung earlier fails
        at once, and a hang now is remembered.  With ``stop`` (a machine's
        deadline), no retry starts after it.
        """

        def on_retry(retry: int, exc: BaseException, wait: float) -> None:
            if stop is not None:
                stop.check(exc)
            self._say(what, retry, exc, wait)

        if kind is not None:
            self.check_hung(kind)
        try:
            call_with_retry(func, self.policy, sleep=self._sleep, on_retry=on_retry)
        except OrbctlTimeoutError as exc:
            if kind is not None:
                self.remember_hang(kind, exc)
            raise
        if kind is not None:
            self.forget_hang(kind)

    def check_hung(self, kind: str) -> None:
        """Raise :class:`OrbctlHungError` if an orbctl ``kind`` call hung earlier in this process.

        A hang (killed at its timeout) that no success followed is rarely a
        one-off: repeating it for every later machine would cost the timeout each time.
        """
        with self._lock:
            first = self._hung.get(kind)
        if first is not None:
            raise OrbctlHungError(kind, first)

    def remember_hang(self, kind: str, exc: OrbctlTimeoutError) -> None:
        """Remember that an orbctl ``kind`` call hung (see :meth:`check_hung`)."""
        with self._lock:
            self._hung.setdefault(kind, first_line(exc))

    def forget_hang(self, kind: str) -> None:
        """An orbctl ``kind`` call succeeded: an earlier hang was a one-off."""
        with self._lock:
            self._hung.pop(kind, None)
