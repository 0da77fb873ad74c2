"""The one place that runs ``orbctl``: timeouts, logging and error classification.

:meth:`OrbctlClient.execute` is the single subprocess entry point.  Every call
has a finite timeout chosen by operation (:class:`Timeouts`), runs in its own
process group with stdin at ``/dev/null`` (orbctl prompts when stdin is a
terminal), logs ``shlex.join(argv)`` at DEBUG on the ``pytest_orbstack.client``
logger, and on a timeout kills the whole process group and raises
:class:`~pytest_orbstack.errors.OrbctlTimeoutError` with the partial output.
A failed call becomes a typed error through :func:`classify`.

Output is bounded: only the last ``output_limit`` bytes of stdout and of
stderr are kept in memory (:attr:`RunResult.stdout_dropped` says how many
bytes were dropped before them), and ``timeout`` is a deadline for the whole
call: the output of a killed process group is collected for at most
:data:`~pytest_orbstack.runner.DRAIN_SECONDS` more, then its pipes are closed.  The
process machinery (process group, deadline, bounded output) is ``runner.py``;
this module builds the call, logs it and turns its failures into typed errors.
"""

from __future__ import annotations

import builtins
import errno
import logging
import math
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, final

from pytest_orbstack import commands, orbenv, runner
from pytest_orbstack.backend import INSTALL_HINT, find_orbctl
from pytest_orbstack.classifier import classify, orbctl_failure
from pytest_orbstack.errors import InvalidSpecError, OrbctlNotFoundError, OrbctlTimeoutError
from pytest_orbstack.models import MachineInfo, OrbVersion, parse_machine_info, parse_machine_list
from pytest_orbstack.orbenv import RESERVED_ENV, MaskedEnv, check_env
from pytest_orbstack.results import RunResult

# find_orbctl, classify, orbctl_failure and the environment rules live in backend.py, classifier.py
# and orbenv.py; they stay importable from here, where callers have always found them.
__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "RESERVED_ENV",
    "CommandResult",
    "MaskedEnv",
    "OrbctlClient",
    "Timeouts",
    "check_env",
    "classify",
    "find_orbctl",
    "orbctl_failure",
]

log = logging.getLogger(__name__)

#: Bytes of stdout and of stderr a call keeps (its last ones) unless told otherwise: 16 MiB.
DEFAULT_OUTPUT_LIMIT: Final = 16 * 1024 * 1024
#: The option that raises the timeout of each kind of call, for timeout messages.
_TIMEOUT_HINTS: Final = {
    "create": "--orb-create-timeout",
    "clone": "--orb-clone-timeout",
    "run": "the timeout= argument",
    "push": "the timeout= argument",
    "pull": "the timeout= argument",
}
_STATUS_WORDS: Final = ("Running", "Stopped", "Starting")
#: errno values of an exec that failed because the binary is missing or unusable.
_CANNOT_EXEC: Final = frozenset(
    {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ENOEXEC}
)


@final
@dataclass(frozen=True)
class Timeouts:
    """Seconds each kind of orbctl call may take before it is killed (all finite)."""

    #: status, version, list, info, logs, config
    query: float = 30.0
    #: start, stop, restart, delete, rename
    lifecycle: float = 120.0
    #: create (a first download of an image can take minutes)
    create: float = 600.0
    #: clone
    clone: float = 300.0
    #: run, push, pull when the caller gives no timeout
    run: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("query", "lifecycle", "create", "clone", "run"):
            _check_timeout(getattr(self, name), f"timeouts.{name}")


def _check_timeout(value: object, field: str) -> float:
    ok = (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )
    if not ok:
        raise InvalidSpecError(field, value, "a finite number of seconds > 0")
    return float(value)  # type: ignore[arg-type]


#: The result of one orbctl call: the same type as a command run in a machine.
CommandResult = RunResult


class OrbctlClient:
    """Runs orbctl commands built by :mod:`pytest_orbstack.commands` and parses their output."""

    def __init__(
        self, binary: str, timeouts: Timeouts | None = None, *, output_limit: int = DEFAULT_OUTPUT_LIMIT
    ) -> None:
        self.binary = binary
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        #: bytes of stdout and of stderr a call keeps (its last ones; ``--orb-output-limit``)
        self.output_limit = _check_limit(output_limit)
        self._version: OrbVersion | None = None

    def __repr__(self) -> str:
        return f"OrbctlClient({self.binary!r})"

    def execute(
        self,
        args: Sequence[str],
        *,
        timeout: float,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        output_limit: int | None = None,
    ) -> RunResult:
        """Run ``orbctl ARGS``; the single subprocess entry point.

        ``env`` adds variables to the environment orbctl inherits.  With
        ``check`` a non-zero exit raises the error :func:`classify` picks.
        ``timeout`` bounds the whole call; ``output_limit`` (default: the
        client's) bounds what is kept of each output stream.
        """
        __tracebackhide__ = True  # keep env values out of tracebacks (pytest prints frame arguments)
        seconds = _check_timeout(timeout, "timeout")
        limit = self.output_limit if output_limit is None else _check_limit(output_limit)
        argv = [self.binary, *args]
        log.debug("%s", shlex.join(argv))
        # Always an explicit environment: with none, the child's exec reads the C ``environ``,
        # which another thread (pytest sets PYTEST_CURRENT_TEST at every test phase) may be
        # reallocating at that moment; the exec then fails with EFAULT ("Bad address").
        full_env = MaskedEnv({**_environ(), **(env or {})})
        data = None if input is None else input.encode("utf-8")
        try:
            outcome = runner.run(argv, env=full_env, input=data, seconds=seconds, limit=limit)
        except OSError as exc:
            if exc.errno not in _CANNOT_EXEC:
                raise
            why = exc.strerror or str(exc)
            if exc.errno in (errno.ENOENT, errno.ENOEXEC) and os.path.isfile(self.binary):
                why = "its interpreter (the #! line) is missing or it is not a program for this machine"
            raise OrbctlNotFoundError(f"cannot run orbctl {self.binary!r}: {why}; {INSTALL_HINT}") from None
        del full_env
        out, err = outcome.stdout, outcome.stderr
        if outcome.returncode is None:
            log.debug("killed after %gs: %s", seconds, shlex.join(argv))
            hint = _TIMEOUT_HINTS.get(args[0] if args else "")
            raise OrbctlTimeoutError(argv, seconds, out.text(), err.text(), hint=hint) from None
        result = RunResult(
            tuple(argv),
            outcome.returncode,
            out.text(),
            err.text(),
            outcome.duration,
            out.dropped,
            err.dropped,
            out.data(),
            err.data(),
        )
        log.debug("exit %d after %.3fs: %s", result.returncode, result.duration, args[0] if args else "")
        if check and result.returncode != 0:
            raise classify(argv, result.returncode, result.stdout, result.stderr)
        return result

    # --- queries ---------------------------------------------------------------------------------

    def status(self) -> str:
        """``Running``, ``Stopped`` or ``Starting`` (never raises for Stopped / Starting)."""
        result = self.execute(commands.status(), timeout=self.timeouts.query, check=False)
        word = result.stdout.strip()
        if result.returncode == 0 or (result.returncode in (1, 2) and word in _STATUS_WORDS):
            return word
        raise classify(list(result.args), result.returncode, result.stdout, result.stderr)

    def version(self) -> OrbVersion:
        """The OrbStack version (asked once per client, then cached)."""
        if self._version is None:
            result = self.execute(commands.version(), timeout=self.timeouts.query)
            self._version = OrbVersion.parse(result.stdout)
        return self._version

    def list(self) -> builtins.list[MachineInfo]:
        """Every machine (built-in ones excluded), sorted by name."""
        result = self.execute(commands.list_machines(), timeout=self.timeouts.query)
        return parse_machine_list(result.stdout)

    def info(self, name: str) -> MachineInfo:
        """One machine, with its addresses when it has them."""
        return parse_machine_info(self.execute(commands.info(name), timeout=self.timeouts.query).stdout)

    def logs(self, machine: str, all_logs: bool = False) -> str:
        """The machine's console log."""
        return self.execute(commands.logs(machine, all_logs), timeout=self.timeouts.query).stdout

    def create(
        self,
        image: str,
        name: str | None = None,
        *,
        arch: str | None = None,
        user: str | None = None,
        user_data: str | os.PathLike[str] | None = None,
        cpus: int | None = None,
        memory: str | None = None,
        disk: str | None = None,
        isolated: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Create a machine; returns once it runs and its first-boot setup is done.

        The OrbStack version is asked only when a version-gated flag is used.
        A ``user_data`` file must exist and be readable.
        """
        gated = isolated or cpus is not None or memory is not None or disk is not None
        argv = commands.create(
            image, name, arch=arch, user=user, user_data=user_data, cpus=cpus, memory=memory,
            disk=disk, isolated=isolated, orb_version=self.version() if gated else None,
        )  # fmt: skip
        if user_data is not None and not (os.path.isfile(user_data) and os.access(user_data, os.R_OK)):
            raise InvalidSpecError("user_data", os.fspath(user_data), "a readable cloud-init user-data file")
        self.execute(argv, timeout=self.timeouts.create if timeout is None else timeout)

    def start(self, *names: str) -> None:
        """Start machines (no-op for running ones); returns before they have an address."""
        self.execute(commands.start(*names), timeout=self.timeouts.lifecycle)

    def stop(self, *names: str, force: bool = False) -> None:
        """Stop machines (``force``: kill at once)."""
        self.execute(commands.stop(*names, force=force), timeout=self.timeouts.lifecycle)

    def restart(self, *names: str) -> None:
        """Restart machines."""
        self.execute(commands.restart(*names), timeout=self.timeouts.lifecycle)

    def delete(self, *names: str, force: bool = True) -> None:
        """Delete machines in one call (one missing name deletes nothing); no names: no-op."""
        if names:
            self.execute(commands.delete(*names, force=force), timeout=self.timeouts.lifecycle)

    def clone(self, source: str, new: str, *, timeout: float | None = None) -> None:
        """Clone ``source`` into a new, stopped machine ``new`` (OrbStack 2.0+)."""
        argv = commands.clone(source, new, orb_version=self.version())
        self.execute(argv, timeout=self.timeouts.clone if timeout is None else timeout)

    def rename(self, old: str, new: str) -> None:
        """Rename a machine."""
        self.execute(commands.rename(old, new), timeout=self.timeouts.lifecycle)

    # --- inside a machine ------------------------------------------------------------------------

    def run(
        self,
        machine: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        output_limit: int | None = None,
    ) -> RunResult:
        """Run ``command`` (argv, no shell) in ``machine``.

        ``env`` values reach the command through orbctl's environment, their
        names through ``ORBENV``; values never appear in argv, logs or errors
        (see :func:`check_env` for the names refused).  With ``check`` a
        non-zero exit raises the classified error.
        """
        __tracebackhide__ = True  # keep env values out of tracebacks (pytest prints frame arguments)
        env = MaskedEnv(env) if env else None  # the frames of a traceback show it masked
        argv = commands.run(machine, command, user=user, workdir=workdir)
        result = self.execute(
            argv,
            timeout=self.timeouts.run if timeout is None else timeout,
            input=input,
            env=orbenv.for_run(env) if env else None,
            check=False,
            output_limit=output_limit,
        )
        if check and result.returncode != 0:
            raise classify(list(result.args), result.returncode, result.stdout, result.stderr)
        return result

    def push(
        self, machine: str, sources: Sequence[str], dest: str | None = None, *, timeout: float | None = None
    ) -> None:
        """Copy Mac (host) files into the machine (``dest`` defaults to the Linux home).

        ``timeout`` (default :attr:`Timeouts.run`) bounds the copy; output is bounded as every call's.
        """
        self.execute(
            commands.push(machine, sources, dest), timeout=self.timeouts.run if timeout is None else timeout
        )

    def pull(
        self, machine: str, sources: Sequence[str], dest: str | None = None, *, timeout: float | None = None
    ) -> None:
        """Copy files out of the machine (``dest`` defaults to the current directory), within ``timeout``."""
        self.execute(
            commands.pull(machine, sources, dest), timeout=self.timeouts.run if timeout is None else timeout
        )


def _environ() -> dict[str, str]:
    """A copy of this process's environment while other threads may change it.

    pytest sets and removes ``PYTEST_CURRENT_TEST`` at every test phase while
    machines are made or deleted on other threads: ``{**os.environ}`` would
    raise :class:`KeyError` for a variable removed between listing the names
    and reading the values.  The names are listed at once; a variable gone by
    the time its value is read is left out.
    """
    names = list(os.environ)
    return {name: value for name in names if (value := os.environ.get(name)) is not None}


def _check_limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidSpecError("output_limit", value, "a whole number of bytes >= 1")
    return value
