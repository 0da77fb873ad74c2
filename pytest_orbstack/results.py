"""What a command did: :class:`RunResult`, the history entry :class:`CommandRecord`, and the error
raised when a checked command failed (:class:`CommandFailedError`).

Value types at the bottom of the package: the client returns a :class:`RunResult` for each
orbctl call, and :class:`~pytest_orbstack.machine.Machine` one for each command run in a machine.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Optional

from pytest_orbstack.errors import OrbstackError, clip_output

__all__ = ["CommandFailedError", "CommandRecord", "RunResult"]

#: Values shorter than this are not masked in output (``1`` would mask every digit).
MIN_SECRET: Final = 4


@dataclass(frozen=True)
class RunResult:
    """What a command did: one run in a machine, or one orbctl call of the client."""

    #: the command as run in the machine (a string command is ``["sh", "-c", command]``);
    #: for a call of the client, the full orbctl argv, binary first
    args: tuple[str, ...]
    #: its exit code
    returncode: int
    #: its standard output
    stdout: str
    #: its standard error
    stderr: str
    #: seconds it took, including orbctl's own overhead
    duration: float
    #: bytes of stdout dropped before the kept tail (``output_limit``)
    stdout_dropped: int = 0
    #: bytes of stderr dropped before the kept tail
    stderr_dropped: int = 0
    #: stdout as printed, before decoding (for callers that need the exact bytes)
    stdout_bytes: bytes = field(default=b"", repr=False)
    #: stderr as printed, before decoding
    stderr_bytes: bytes = field(default=b"", repr=False)
    #: the machine it ran in ("" for a call of the client)
    machine: str = ""

    @property
    def ok(self) -> bool:
        """True when the command exited with 0."""
        return self.returncode == 0

    @property
    def command(self) -> str:
        """The command, quoted for a shell."""
        return shlex.join(self.args)

    def check_returncode(self) -> RunResult:
        """Raise :class:`CommandFailedError` unless the command exited with 0; return ``self``."""
        if self.returncode != 0:
            raise CommandFailedError(self)
        return self


class CommandFailedError(OrbstackError):
    """A command run with ``check=True`` exited with a non-zero code.

    ``result`` is the :class:`RunResult`; the message shows the machine, the
    command, the exit code and both output streams (never environment values:
    ``secrets``, the ``env`` values of the call, are shown as ``***`` should
    the command have printed them).
    """

    def __init__(self, result: RunResult, hint: str = "", secrets: Sequence[str] = ()) -> None:
        self.result = result
        self.machine = result.machine
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        parts = [
            f"command failed in machine {result.machine!r} with exit code {result.returncode}",
            f"  command: {result.command}",
            f"  exit code: {result.returncode}",
            _stream("stdout", result.stdout, result.stdout_dropped, secrets),
            _stream("stderr", result.stderr, result.stderr_dropped, secrets),
        ]
        if hint:
            parts.append(f"  hint: {hint}")
        super().__init__("\n".join(parts))


def _stream(label: str, text: str, dropped: int, secrets: Sequence[str]) -> str:
    """One output line of a failure message: masked, clipped, saying what was dropped."""
    before = f" ({dropped} earlier bytes dropped, see output_limit)" if dropped else ""
    return f"  {label}{before}: {clip_output(_redact(text, secrets)) or '(empty)'}"


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted((s for s in secrets if len(s) >= MIN_SECRET), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class CommandRecord:
    """One entry of a machine's command history (for failure reports; no environment values)."""

    command: str
    returncode: Optional[int]
    duration: float
    #: why there is no exit code: the error orbctl raised, or what interrupted the command
    note: str = ""
