"""Where orbctl is, the client that runs it, and whether OrbStack can be used: one place per process.

- :func:`find_orbctl`: the orbctl a user named (``--orb-orbctl``, ``$ORBCTL``) or
  ``orbctl`` on PATH; :func:`locate`: that, or on Linux without any, ``orbsim``,
  and what kind it is.
- :class:`Backend`: what one pytest process knows of its OrbStack.  The client
  is made once, by the factory it is handed (the pytest layer hands it the
  ``pytest_orbstack_make_client`` hook); OrbStack's status is checked once, the
  first time a machine is needed (an OrbStack that says ``Starting`` is waited
  for up to :data:`STARTING_WAIT`), and turned into one line naming the fix;
  OrbStack's version is asked until it answers once.

Nothing here asks orbctl anything until a caller needs it: a run without
machine tests calls no orbctl.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Final, NamedTuple, Optional

from pytest_orbstack.errors import OrbctlCommandError, OrbctlNotFoundError, OrbstackError, first_line
from pytest_orbstack.models import OrbVersion
from pytest_orbstack.orbctl import Orbctl

__all__ = ["INSTALL_HINT", "STARTING_WAIT", "Backend", "Located", "find_orbctl", "locate"]

#: What a message about a missing orbctl says to do.
INSTALL_HINT: Final = "install OrbStack, or pass --orb-orbctl PATH, set $ORBCTL, or put orbctl on PATH"
#: How long machine fixtures wait for an OrbStack that ``orbctl status`` says is ``Starting``
#: (orbctl's own limit for starting OrbStack is 15 s).
STARTING_WAIT: Final = 15.0


def find_orbctl(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The orbctl to run: ``explicit`` (``--orb-orbctl``), else ``$ORBCTL``, else ``orbctl`` on PATH."""
    env = os.environ if environ is None else environ
    for source, value in (("--orb-orbctl", explicit), ("$ORBCTL", env.get("ORBCTL"))):
        if value:
            found = shutil.which(value, path=env.get("PATH"))
            if found is None and os.path.isfile(value):
                raise OrbctlNotFoundError(
                    f"orbctl {value!r} is not executable (no x permission): run `chmod +x {value}`, "
                    "or use another orbctl (--orb-orbctl PATH or $ORBCTL)"
                )
            if found is None:
                raise OrbctlNotFoundError(f"{source} {value!r} is not an executable file; {INSTALL_HINT}")
            return found
    found = shutil.which("orbctl", path=env.get("PATH"))
    if found is None:
        raise OrbctlNotFoundError(
            f"orbctl not found (no --orb-orbctl, no $ORBCTL, not on PATH); {INSTALL_HINT}"
        )
    return found


class Located(NamedTuple):
    """The orbctl in use: its path, and its kind (``orbctl``, ``orbsim`` or ``orbsim-fallback``)."""

    path: str
    kind: str


def locate(
    explicit: Optional[str], environ: Optional[Mapping[str, str]] = None, system: Optional[str] = None
) -> Located:
    """The orbctl to use (``explicit``: ``--orb-orbctl``); raises :class:`OrbctlNotFoundError`.

    On Linux (``system``, default: this machine's) without any orbctl and
    none given, ``orbsim`` (on PATH, or next to the Python interpreter)
    stands in: kind ``orbsim-fallback``.
    """
    try:
        path = find_orbctl(explicit, environ)
    except OrbctlNotFoundError:
        if (system or platform.system()) != "Linux" or explicit is not None:
            raise  # an orbctl that was asked for and cannot be used is never replaced
        beside = Path(sys.executable).with_name("orbsim")
        path_var = (os.environ if environ is None else environ).get("PATH")
        found = shutil.which("orbsim", path=path_var) or (str(beside) if os.access(beside, os.X_OK) else None)
        if found is None:
            raise
        return Located(found, "orbsim-fallback")
    return Located(path, "orbsim" if Path(path).name.startswith("orbsim") else "orbctl")


class Backend:
    """The orbctl of one process, its client, OrbStack's state and version."""

    def __init__(
        self,
        orbctl: Optional[str],
        make_client: Callable[[], Orbctl],
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: ``--orb-orbctl``, or ``None`` to look for one
        self.explicit = orbctl
        #: put before a problem of OrbStack: ``on host NAME: `` in an xdist worker on another host
        self.where = ""
        self._make_client = make_client
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._client: Optional[Orbctl] = None
        self._checked = False
        self._problem: Optional[str] = None
        self._version: Optional[OrbVersion] = None

    def locate(self) -> Located:
        """The orbctl in use (see :func:`locate`); raises :class:`OrbctlNotFoundError`."""
        return locate(self.explicit)

    def found(self) -> Optional[Located]:
        """The orbctl in use, or ``None`` when there is none."""
        try:
            return self.locate()
        except OrbstackError:
            return None

    def client(self) -> Orbctl:
        """The client, made once (the factory may raise :class:`OrbctlNotFoundError`)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def status(self) -> str:
        """``orbctl status`` in one word (``Running``, ``Stopped``, ``Starting``...), or what it said."""
        try:
            return str(self.client().status()).strip() or "no answer"
        except OrbctlCommandError as exc:
            return (exc.stdout.strip() or first_line(exc)) or "no answer"

    def problem(self) -> Optional[str]:
        """Why OrbStack cannot be used (one line naming the fix), or ``None``.  Checked once."""
        if self._checked:
            return self._problem
        problem: Optional[str] = None
        try:
            status = self.status()
        except OrbctlNotFoundError as exc:  # missing, or it cannot be executed
            problem = first_line(exc)  # names what was looked for and how to fix it
        else:
            deadline = self._clock() + STARTING_WAIT
            while status == "Starting" and self._clock() < deadline:  # it was just opened
                self._sleep(0.25)
                status = self.status()
            if status == "Starting":
                problem = (
                    f"OrbStack is still starting after {STARTING_WAIT:g}s (orbctl status: Starting): "
                    "wait until the OrbStack app says it is running, then run the tests again"
                )
            elif status != "Running":
                problem = (
                    f"OrbStack is not running (orbctl status: {status}): open the OrbStack app "
                    "or run 'orbctl list' (which starts it), then run the tests again"
                )
        self._problem = None if problem is None else self.where + problem
        self._checked = True
        return self._problem

    def version(self) -> Optional[OrbVersion]:
        """OrbStack's version, or ``None`` when it cannot be told now (asked again next time)."""
        if self._version is None:
            try:
                self._version = self.client().version()
            except (OrbstackError, AttributeError):  # a client of the hook may have no version()
                return None
        return self._version
