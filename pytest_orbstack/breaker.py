"""The run-wide breaker for machines that never get an IP address.

After heavy machine churn, OrbStack can reach a state in which every new
machine fails with ``setup: machine didn't start in 30s (missing IP address)``
(OrbStack issue #2688); a started or cloned machine then runs without an
address until readiness gives up.  Each such machine costs 30 s or the ready
timeout, times the retries, for every test.

:class:`AddressBreaker` counts the machine attempts of one process that fail
that way, in a row (a machine that becomes ready resets the count; other
failures neither count nor reset).  At :data:`THRESHOLD` it trips: the
process makes no more machines, and every later machine request fails at
once with one message naming the problem and the fix.  A tripped breaker
leaves a file in the run's lock directory, so the other xdist workers of the
run stop too (one ``stat`` per machine request).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Final, Optional

from pytest_orbstack.errors import OrbstackError
from pytest_orbstack.readiness import lacks_address

__all__ = ["THRESHOLD", "AddressBreaker", "NoAddressError"]

#: Machine attempts in a row without an address that trip the breaker.  One or two happen
#: with a slow first boot or an image that does not boot on this OrbStack version; three
#: in a row, with no machine ready in between, is the persistent state of OrbStack #2688.
THRESHOLD: Final = 3


class NoAddressError(OrbstackError):
    """OrbStack gives new machines no IP address: no more machines are made in this run.

    ``failures`` is how many attempts in a row failed that way (``None`` when
    another process of the run tripped the breaker), ``images`` the images tried.
    """

    def __init__(self, failures: Optional[int], images: tuple[str, ...] = ()) -> None:
        self.failures = failures
        self.images = images
        seen = f"{failures} machines in a row" if failures else "machines in this run"
        tried = f" ({', '.join(images)})" if images else ""
        super().__init__(
            f"OrbStack gives new machines no IP address: {seen}{tried} never got one "
            "('missing IP address'); no more machines are made in this run. Restart OrbStack "
            "(orbctl stop && orbctl start, or quit and reopen the app) and run the tests again; "
            "if it persists (OrbStack issue #2688), restart the Mac. If only one image fails "
            "this way, that image does not boot on this OrbStack version: update OrbStack or "
            "use another image."
        )


class AddressBreaker:
    """Counts machine attempts without an address; trips at ``threshold`` in a row."""

    def __init__(self, threshold: int = THRESHOLD, flag: Optional[Path] = None) -> None:
        self.threshold = threshold
        #: the file that tells the run's other processes the breaker tripped (``None``: this process only)
        self.flag = flag
        self._lock = threading.Lock()
        self._count = 0
        self._images: list[str] = []
        #: (failures, images) when the breaker tripped in this process
        self._tripped: Optional[tuple[int, tuple[str, ...]]] = None

    @property
    def tripped(self) -> bool:
        return self._tripped is not None or (self.flag is not None and self.flag.exists())

    def check(self) -> None:
        """Raise :class:`NoAddressError` if the breaker tripped here or in another process of the run."""
        with self._lock:
            tripped = self._tripped
        if tripped is not None:
            raise NoAddressError(*tripped)
        if self.flag is not None and self.flag.exists():
            raise NoAddressError(None)

    def failed(self, exc: BaseException, image: str = "") -> None:
        """A machine attempt (of ``image``, if known) failed with ``exc``.

        Trips, raising :class:`NoAddressError`, at the threshold.
        """
        if isinstance(exc, NoAddressError) or not _lacks_address(exc):
            return
        with self._lock:
            self._count += 1
            if image and image not in self._images:
                self._images.append(image)
            if self._tripped is None and self._count >= self.threshold:
                self._tripped = (self._count, tuple(self._images))
                self._write_flag()
            tripped = self._tripped
        if tripped is not None:
            raise NoAddressError(*tripped) from exc

    def succeeded(self) -> None:
        """A machine became ready: the count starts again."""
        with self._lock:
            self._count = 0
            self._images.clear()

    def _write_flag(self) -> None:
        if self.flag is None:
            return
        try:
            self.flag.parent.mkdir(parents=True, exist_ok=True)
            self.flag.write_text("OrbStack gives new machines no IP address\n", encoding="utf-8")
        except OSError:
            pass  # the other processes find out for themselves


def _lacks_address(exc: BaseException) -> bool:
    """``lacks_address`` of ``exc`` or of what caused it (a base build wraps the create's error)."""
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        if lacks_address(current):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False
