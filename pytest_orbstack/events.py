"""What the machine lifecycle reports as it goes: progress lines and counters.

The lifecycle modules (provisioner, bases, prefetch, health) report to an
:class:`Events`; the terminal layer implements it (``report.Stats``) and
decides what reaches the user.  :class:`Silent` drops everything.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Events", "Silent"]


class Events(Protocol):
    """Where the lifecycle reports progress lines and counters (thread-safe)."""

    def event(self, line: str, *, verbose: bool = False) -> None:
        """A progress line for the next test report (``verbose``: shown only with ``-v``)."""

    def waiting(self, line: str) -> None:
        """Say now, before a wait that can be long, what is waited for."""

    def record_created(self, create_seconds: float, ready_seconds: float) -> None:
        """A machine was made: seconds until it existed, then until it was ready."""

    def record_deleted(self) -> None:
        """A machine was deleted."""

    def record_kept(self, name: str) -> None:
        """A machine was kept (``--orb-keep``) under ``name``."""

    def record_failed_delete(self, name: str, error: str) -> None:
        """The delete of ``name`` failed with ``error`` (its first line)."""


class Silent:
    """An :class:`Events` that drops everything."""

    def event(self, line: str, *, verbose: bool = False) -> None:
        pass

    def waiting(self, line: str) -> None:
        pass

    def record_created(self, create_seconds: float, ready_seconds: float) -> None:
        pass

    def record_deleted(self) -> None:
        pass

    def record_kept(self, name: str) -> None:
        pass

    def record_failed_delete(self, name: str, error: str) -> None:
        pass
