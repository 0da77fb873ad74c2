"""Deletes of machines a test is done with, off the test's time.

A test's teardown runs its hooks and the keep policy on its own thread, then
hands the machine to :class:`BackgroundDeleter`, which deletes it on one of a
few threads while the next test already runs.  The session's end waits for
every delete (:meth:`BackgroundDeleter.close`), after Ctrl-C too, as a
teardown would have; a second Ctrl-C stops that wait, and the run's final
purge (and, if pytest dies, the watchdog) deletes what is left, as it deletes
any machine of the run that is left.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Final

if TYPE_CHECKING:
    from pytest_orbstack.machine import Machine

__all__ = ["BackgroundDeleter", "InlineDeleter"]

#: Deletes under way at once: enough to keep up with tests, few enough not to crowd OrbStack.
DELETE_THREADS: Final = 4


class InlineDeleter:
    """Deletes on the caller's thread: what a new :class:`~pytest_orbstack.provisioner.Provisioner` uses."""

    def __init__(self, delete: Callable[[Machine], None]) -> None:
        self._delete = delete

    def submit(self, machine: Machine) -> None:
        self._delete(machine)

    def close(self, *, wait: bool = True) -> None:
        """Nothing under way."""


class BackgroundDeleter:
    """Deletes on :data:`DELETE_THREADS` threads; :meth:`close` waits for them.

    ``delete`` must not raise for a machine it could not delete (the
    provisioner's ``delete_quietly`` records that for the summary).
    """

    def __init__(self, delete: Callable[[Machine], None], *, threads: int = DELETE_THREADS) -> None:
        self._delete = delete
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="orb-delete")
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()

    def submit(self, machine: Machine) -> None:
        future = self._pool.submit(self._delete, machine)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    @property
    def pending(self) -> int:
        """Deletes queued or under way."""
        with self._lock:
            return len(self._pending)

    def close(self, *, wait: bool = True) -> None:
        """The session ends: wait for every delete (``wait=False``: drop those not started)."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
