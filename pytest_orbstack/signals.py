"""SIGTERM tears a run down like Ctrl-C does.

pytest turns SIGINT into ``KeyboardInterrupt``: the test stops, fixtures are
torn down (machines deleted), the summary is printed, exit code 2.  SIGTERM
(sent by CI runners, IDEs, ``timeout``, ``kill``) would end the process at
once and leave that work to the watchdog.  :func:`install_sigterm_handler`
makes SIGTERM raise :class:`Terminated`, a ``KeyboardInterrupt``, so both
signals take the same path.  A second signal during teardown interrupts it;
the watchdog then deletes what is left.

The handler is installed only if SIGTERM still has the default action and
only from the main thread: a handler set by the user or another plugin is
never replaced.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Final, Optional

__all__ = ["Terminated", "install_sigterm_handler", "restore_sigterm_handler"]


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


_MESSAGE: Final = "received SIGTERM: tearing down as for Ctrl-C"
#: How many configs installed the handler (pytester runs pytest inside pytest): restored at 0.
_depth = 0


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    raise Terminated(_MESSAGE)


def install_sigterm_handler() -> bool:
    """Make SIGTERM raise :class:`Terminated`; True if our handler is in place.

    Calls nest (a pytest run inside a pytest run, as pytester does): each
    successful call must be paired with :func:`restore_sigterm_handler`.
    """
    global _depth  # noqa: PLW0603 (one process-wide signal disposition)
    if _depth:
        _depth += 1
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    _depth = 1
    return True


def restore_sigterm_handler() -> None:
    """Undo one :func:`install_sigterm_handler`; the last one puts the default action back.

    The default is put back only if our handler is still the one installed.
    """
    global _depth  # noqa: PLW0603
    if not _depth:
        return
    _depth -= 1
    if _depth:
        return
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is _on_sigterm
    ):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
