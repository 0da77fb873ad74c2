"""The exception hierarchy of pytest-orbstack.

Every error the plugin raises derives from :class:`OrbstackError`.  Errors
that come from running ``orbctl`` derive from :class:`OrbctlCommandError` and
carry the argv, exit code, stdout and stderr of the failed call, so that one
failure line tells the user what was run and what came back.

The client maps a failed call to one of these classes in exactly one place
(``pytest_orbstack.client.classify``), using the real error texts of
``orbctl``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

__all__ = [
    "ImageNotFoundError",
    "InvalidMachineNameError",
    "InvalidSpecError",
    "MachineDeadlineError",
    "MachineExistsError",
    "MachineNotFoundError",
    "MachineNotReadyError",
    "MarkerError",
    "OrbStackNotRunningError",
    "OrbctlCommandError",
    "OrbctlHungError",
    "OrbctlNotFoundError",
    "OrbctlParseError",
    "OrbctlTimeoutError",
    "OrbstackError",
    "TransientOrbctlError",
    "UnsupportedFeatureError",
]

#: How much of stdout / stderr an error message shows (the attributes keep all).
_SHOWN_OUTPUT_CHARS = 2000


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its class name when the message is empty)."""
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def clip_output(text: str) -> str:
    """``text`` without trailing newlines, cut to what an error message shows."""
    text = text.rstrip("\n")
    if len(text) <= _SHOWN_OUTPUT_CHARS:
        return text
    return text[:_SHOWN_OUTPUT_CHARS] + f"... [{len(text) - _SHOWN_OUTPUT_CHARS} more chars]"


class OrbstackError(Exception):
    """Base class of every error raised by pytest-orbstack."""


class MarkerError(OrbstackError):
    """An ``@pytest.mark.orb`` marker is wrong; the message names the test and the argument."""


class InvalidSpecError(OrbstackError, ValueError):
    """A machine name, image, architecture or option value is not allowed.

    Raised before anything reaches ``orbctl``; the message says what is
    allowed.  ``field`` names what was wrong and ``value`` keeps the bad value.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {field} {value!r}: {allowed}")


class UnsupportedFeatureError(OrbstackError):
    """A flag or command needs a newer OrbStack than the one installed."""

    def __init__(self, feature: str, needed: str, found: str) -> None:
        self.feature = feature
        self.needed = needed
        self.found = found
        super().__init__(
            f"{feature} needs OrbStack >= {needed}, but orbctl reports {found}; "
            "update OrbStack or do not use it"
        )


class OrbctlNotFoundError(OrbstackError):
    """No ``orbctl`` executable could be found or run."""


class OrbctlParseError(OrbstackError):
    """``orbctl`` printed something that is not the JSON we expect."""

    def __init__(self, message: str, text: str) -> None:
        self.text = text
        super().__init__(f"{message}; orbctl printed: {clip_output(text)!r}")


class OrbctlCommandError(OrbstackError):
    """An ``orbctl`` call failed.

    Attributes keep the whole context: ``argv`` (the full command line),
    ``returncode`` (``None`` when the call did not finish), ``stdout`` and
    ``stderr``.
    """

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        stdout: str,
        stderr: str,
        message: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        first_line = message or self._summary()
        super().__init__(first_line + self._details())

    def _summary(self) -> str:
        said = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        reason = f": {said[0]}" if said else ""
        return f"{shlex.join(self.argv[:3])} failed with exit code {self.returncode}{reason}"

    def _details(self) -> str:
        parts = [f"\n  command: {shlex.join(self.argv)}", f"\n  exit code: {self.returncode}"]
        if self.stdout.strip():
            parts.append(f"\n  stdout: {clip_output(self.stdout)}")
        if self.stderr.strip():
            parts.append(f"\n  stderr: {clip_output(self.stderr)}")
        return "".join(parts)

    @property
    def command(self) -> str:
        """The failed command line, quoted for a shell."""
        return shlex.join(self.argv)


class OrbStackNotRunningError(OrbctlCommandError):
    """OrbStack is stopped or did not start in time."""


class MachineNotFoundError(OrbctlCommandError):
    """The named machine does not exist."""


class MachineExistsError(OrbctlCommandError):
    """A machine of that name exists already."""


class InvalidMachineNameError(OrbctlCommandError):
    """orbctl rejected the machine name."""


class ImageNotFoundError(OrbctlCommandError):
    """The distro or version is not available."""


class TransientOrbctlError(OrbctlCommandError):
    """A failure that a retry may cure: setup or start timeouts, downloads, state races."""


class OrbctlTimeoutError(OrbctlCommandError, TimeoutError):
    """An ``orbctl`` call did not finish within its timeout and was killed.

    Also a :class:`TimeoutError`.  ``timeout`` is the limit in seconds;
    ``stdout`` / ``stderr`` hold what the call printed before it was killed;
    ``hint`` names the option that raises the limit (``--orb-create-timeout``).
    """

    def __init__(
        self,
        argv: Sequence[str],
        timeout: float,
        stdout: str = "",
        stderr: str = "",
        *,
        hint: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.hint = hint
        what = f"orbctl {argv[1]}" if len(argv) > 1 else "orbctl"
        raise_it = f"; raise {hint} if it needs longer" if hint else ""
        super().__init__(
            argv,
            None,
            stdout,
            stderr,
            message=f"{what} did not finish within {timeout:g}s and was killed{raise_it}",
        )


class OrbctlHungError(OrbstackError):
    """An ``orbctl`` call of this kind hung earlier in this process: not tried again.

    ``kind`` is the command (``create``, ``clone``) and ``first`` the one-line
    message of the first hang.
    """

    def __init__(self, kind: str, first: str) -> None:
        self.kind = kind
        self.first = first
        super().__init__(f"not trying orbctl {kind} again in this run: an earlier one hung ({first})")


class MachineDeadlineError(OrbstackError):
    """A machine was not made before its overall deadline (``--orb-machine-timeout``)."""

    def __init__(self, machine: str, deadline: float, last: str) -> None:
        self.machine = machine
        self.deadline = deadline
        self.last = last
        super().__init__(
            f"machine {machine!r} not made within its overall deadline of {deadline:g}s "
            f"(raise --orb-machine-timeout if it needs longer); last error: {last}"
        )


class MachineNotReadyError(OrbstackError):
    """A machine did not become ready before its deadline, or died while we waited.

    ``machine`` is its name, ``waited`` the seconds spent, ``last_state`` the
    last state seen (``None`` if it was never seen) and ``reason`` what went wrong.
    """

    def __init__(
        self, machine: str, waited: float, last_state: str | None, reason: str, logs: str = ""
    ) -> None:
        self.machine = machine
        self.waited = waited
        self.last_state = last_state
        self.reason = reason
        #: the last lines of ``orbctl logs`` of the machine (empty when not gathered)
        self.logs = logs
        shown = f"\nlast lines of orbctl logs {machine}:\n{logs}" if logs else ""
        super().__init__(
            f"machine {machine!r} not ready after {waited:.1f}s: {reason} "
            f"(last state: {last_state or 'never seen'}){shown}"
        )
