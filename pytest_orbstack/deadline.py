"""The overall deadline of one machine (``--orb-machine-timeout``).

A :class:`Deadline` starts when the making of a machine starts (its first
``create`` or ``clone`` attempt).  Every orbctl call made for the machine gets
at most what is left of it, no retry starts after it, and a failure once it
has passed becomes :class:`~pytest_orbstack.errors.MachineDeadlineError`: one
line naming the option to raise.  Time spent in the user's provision hooks on
a base machine is not charged (:meth:`Deadline.excluding`): the hooks' own
commands have their own timeouts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Callable, Final, Optional

from pytest_orbstack.errors import MachineDeadlineError, first_line

__all__ = ["Deadline"]

#: The shortest timeout a call still gets near the deadline, in seconds.
_FLOOR: Final = 1.0


class Deadline:
    """The deadline of the machine ``name``: ``limit`` seconds from now (by ``clock``)."""

    __slots__ = ("_clock", "_start", "limit", "name")

    def __init__(self, name: str, limit: float, clock: Callable[[], float]) -> None:
        self.name = name
        self.limit = limit
        self._clock = clock
        self._start = clock()

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.limit - (self._clock() - self._start)

    def passed(self) -> bool:
        return self.remaining() <= 0

    def check(self, exc: BaseException) -> None:
        """Raise :class:`MachineDeadlineError` (from ``exc``, the last failure) once the deadline passed.

        ``exc`` that is already such an error is left to the caller to re-raise.
        """
        if self.passed() and not isinstance(exc, MachineDeadlineError):
            raise MachineDeadlineError(self.name, self.limit, first_line(exc)) from exc

    def cap(self, timeout: float) -> float:
        """``timeout``, or what is left of the deadline if that is less (at least 1 s)."""
        return min(timeout, max(self.remaining(), _FLOOR))

    def cap_kwargs(self, timeout: Optional[float]) -> dict[str, Any]:
        """``{"timeout": ...}`` for a call whose own ``timeout`` would outlive the deadline, else ``{}``."""
        if timeout is None or self.remaining() >= timeout:
            return {}
        return {"timeout": self.cap(timeout)}

    @contextlib.contextmanager
    def excluding(self) -> Iterator[None]:
        """Time spent inside is not charged to the deadline."""
        begun = self._clock()
        try:
            yield
        finally:
            self._start += self._clock() - begun
