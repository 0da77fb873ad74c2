"""What a failure report shows of a machine beyond its ``info``: the last lines of its console log.

One ``orbctl logs NAME`` call (the client's query timeout), only when
something failed.  ``orbctl logs`` reports its own errors on stdout with
exit 0 (``docs/orbctl.md``), so whatever it printed is shown as it is: the
reader sees the error text where the log would be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pytest_orbstack.errors import OrbstackError, first_line

if TYPE_CHECKING:
    from pytest_orbstack.orbctl import Orbctl

__all__ = ["LOG_LINES", "logs_tail", "with_logs"]

#: How many lines of ``orbctl logs`` a failure report shows.
LOG_LINES: Final = 20
#: Longest log line shown (a console line can be a screenful of escape codes).
_LINE_CHARS: Final = 300


def logs_tail(client: Orbctl, name: str, lines: int = LOG_LINES) -> str:
    """The last ``lines`` lines of ``orbctl logs name``, indented; never raises an orbctl error."""
    try:
        text = str(client.logs(name))
    except OrbstackError as exc:
        return f"  (orbctl logs failed: {first_line(exc)})"
    except AttributeError:  # a client from pytest_orbstack_make_client without logs()
        return "  (the orbctl client has no logs())"
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    if not kept:
        return "  (empty)"
    return "\n".join(f"  {line[:_LINE_CHARS]}" for line in kept)


def with_logs(message: str, client: Orbctl, name: str) -> str:
    """``message`` followed by the last lines of the machine's console log."""
    return f"{message}\nlast lines of orbctl logs {name}:\n{logs_tail(client, name)}"
