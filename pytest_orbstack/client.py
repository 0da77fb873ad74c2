"""The one place that runs ``orbctl``: timeouts, logging and error classification.

:meth:`OrbctlClient.execute` is the single subprocess entry point.  Every call
has a finite timeout chosen by operation (:class:`Timeouts`), runs in its own
process group with stdin at ``/dev/null`` (orbctl prompts when stdin is a
terminal), logs ``shlex.join(argv)`` at DEBUG on the ``pytest_orbstack.client``
logger, and on a timeout kills the whole process group and raises
:class:`~pytest_orbstack.errors.OrbctlTimeoutError` with the partial output.
A failed call becomes a typed error through :func:`classify`.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import logging
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, final

from pytest_orbstack import commands
from pytest_orbstack.errors import (
    ImageNotFoundError,
    InvalidMachineNameError,
    InvalidSpecError,
    MachineExistsError,
    MachineNotFoundError,
    OrbctlCommandError,
    OrbctlNotFoundError,
    OrbctlTimeoutError,
    OrbStackNotRunningError,
    TransientOrbctlError,
)
from pytest_orbstack.models import MachineInfo, OrbVersion, parse_machine_info, parse_machine_list

__all__ = ["CommandResult", "OrbctlClient", "Timeouts", "classify", "find_orbctl"]

log = logging.getLogger(__name__)

_FIX: Final = "install OrbStack, or pass --orb-orbctl PATH, set $ORBCTL, or put orbctl on PATH"
#: Seconds to collect the output of a killed process group.
_DRAIN_SECONDS: Final = 5.0
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STATUS_WORDS: Final = ("Running", "Stopped", "Starting")
#: errno values of an exec that failed because the binary is missing or unusable.
_CANNOT_EXEC: Final = frozenset(
    {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ENOEXEC}
)

#: (error class, stderr pattern) checked in order; the first match wins.
_RULES: Final[tuple[tuple[type[OrbctlCommandError], re.Pattern[str]], ...]] = (
    (MachineNotFoundError, re.compile(r"machine not found")),
    (MachineExistsError, re.compile(r"machine already exists")),
    (InvalidMachineNameError, re.compile(r"invalid machine name")),
    (ImageNotFoundError, re.compile(r"image not found|invalid distro: ")),
    (OrbStackNotRunningError, re.compile(r"timed out waiting for VM to start")),
    (
        TransientOrbctlError,
        re.compile(
            r"didn't start in \d+|timed out waiting for services to start|cannot transition from"
            r"|download[^\n]*(status: (5\d\d|429)|timeout|timed out|connection reset|connection refused|EOF)"
        ),
    ),
)


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
                raise OrbctlNotFoundError(f"{source} {value!r} is not an executable file; {_FIX}")
            return found
    found = shutil.which("orbctl", path=env.get("PATH"))
    if found is None:
        raise OrbctlNotFoundError(f"orbctl not found (no --orb-orbctl, no $ORBCTL, not on PATH); {_FIX}")
    return found


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


@final
@dataclass(frozen=True)
class CommandResult:
    """What one orbctl call returned."""

    #: the full argv, binary first
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    #: wall-clock seconds the call took
    duration: float
    #: stdout as printed, before decoding (for callers that need the exact bytes)
    stdout_bytes: bytes = field(default=b"", repr=False)
    #: stderr as printed, before decoding
    stderr_bytes: bytes = field(default=b"", repr=False)


def classify(argv: Sequence[str], returncode: int | None, stdout: str, stderr: str) -> OrbctlCommandError:
    """Map a failed call to its typed error using orbctl's real error texts (the one classifier)."""
    for cls, pattern in _RULES:
        if pattern.search(stderr):
            return cls(argv, returncode, stdout, stderr)
    if list(argv[1:2]) == ["status"]:
        word = stdout.strip()
        if word == "Stopped":
            return OrbStackNotRunningError(argv, returncode, stdout, stderr, message="OrbStack is stopped")
        if word == "Starting":
            return TransientOrbctlError(argv, returncode, stdout, stderr, message="OrbStack is starting")
    return OrbctlCommandError(argv, returncode, stdout, stderr)


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Kill the process group of ``proc`` and collect what it printed."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group may be gone already
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        out, err = proc.communicate(timeout=_DRAIN_SECONDS)
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - a process left the group and holds a pipe
        out, err = exc.stdout or b"", exc.stderr or b""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
    return out or b"", err or b""


class OrbctlClient:
    """Runs orbctl commands built by :mod:`pytest_orbstack.commands` and parses their output."""

    def __init__(self, binary: str, timeouts: Timeouts | None = None) -> None:
        self.binary = binary
        self.timeouts = timeouts if timeouts is not None else Timeouts()
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
    ) -> CommandResult:
        """Run ``orbctl ARGS``; the single subprocess entry point.

        ``env`` adds variables to the environment orbctl inherits.  With
        ``check`` a non-zero exit raises the error :func:`classify` picks.
        """
        __tracebackhide__ = True  # keep env values out of tracebacks (pytest prints frame arguments)
        seconds = _check_timeout(timeout, "timeout")
        argv = [self.binary, *args]
        log.debug("%s", shlex.join(argv))
        full_env = {**os.environ, **env} if env else None
        started = time.monotonic()
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv list from the validated builder, no shell
                argv,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
                start_new_session=True,
            )
        except OSError as exc:
            if exc.errno not in _CANNOT_EXEC:
                raise
            why = exc.strerror or str(exc)
            if exc.errno in (errno.ENOENT, errno.ENOEXEC) and os.path.isfile(self.binary):
                why = "its interpreter (the #! line) is missing or it is not a program for this machine"
            raise OrbctlNotFoundError(f"cannot run orbctl {self.binary!r}: {why}; {_FIX}") from None
        try:
            out, err = proc.communicate(None if input is None else input.encode("utf-8"), timeout=seconds)
        except subprocess.TimeoutExpired:
            out, err = _kill_group(proc)
            log.debug("killed after %gs: %s", seconds, shlex.join(argv))
            raise OrbctlTimeoutError(argv, seconds, _decode(out), _decode(err)) from None
        except BaseException:
            _kill_group(proc)
            raise
        elapsed = time.monotonic() - started
        result = CommandResult(
            tuple(argv), proc.returncode, _decode(out), _decode(err), elapsed, out or b"", err or b""
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

    def is_running(self) -> bool:
        """Whether OrbStack is running (``status`` says ``Running``)."""
        return self.status() == "Running"

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

    def default(self, machine: str | None = None) -> str:
        """Set the default machine, or (no argument) return its name."""
        return self.execute(commands.default(machine), timeout=self.timeouts.query).stdout.strip()

    def config_get(self, key: str) -> str:
        """``orbctl config get KEY``, stripped."""
        return self.execute(commands.config_get(key), timeout=self.timeouts.query).stdout.strip()

    def config_set(self, key: str, value: str) -> None:
        """``orbctl config set KEY VALUE``."""
        self.execute(commands.config_set(key, value), timeout=self.timeouts.query)

    # --- life cycle ------------------------------------------------------------------------------

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

    def clone(self, source: str, new: str) -> None:
        """Clone ``source`` into a new, stopped machine ``new`` (OrbStack 2.0+)."""
        self.execute(commands.clone(source, new, orb_version=self.version()), timeout=self.timeouts.clone)

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
    ) -> CommandResult:
        """Run ``command`` (argv, no shell) in ``machine``.

        ``env`` values reach the command through orbctl's environment, their
        names through ``ORBENV``; values never appear in argv, logs or errors.
        With ``check`` a non-zero exit raises the classified error.
        """
        __tracebackhide__ = True  # keep env values out of tracebacks (pytest prints frame arguments)
        argv = commands.run(machine, command, user=user, workdir=workdir)
        result = self.execute(
            argv,
            timeout=self.timeouts.run if timeout is None else timeout,
            input=input,
            env=_orbenv(env) if env else None,
            check=False,
        )
        if check and result.returncode != 0:
            raise classify(list(result.args), result.returncode, result.stdout, result.stderr)
        return result

    def push(self, machine: str, sources: Sequence[str], dest: str | None = None) -> None:
        """Copy Mac (host) files into the machine (``dest`` defaults to the Linux home)."""
        self.execute(commands.push(machine, sources, dest), timeout=self.timeouts.run)

    def pull(self, machine: str, sources: Sequence[str], dest: str | None = None) -> None:
        """Copy files out of the machine (``dest`` defaults to the current directory)."""
        self.execute(commands.pull(machine, sources, dest), timeout=self.timeouts.run)


def _orbenv(env: Mapping[str, str]) -> dict[str, str]:
    """The variables to add for ``run``: ``env`` plus ``ORBENV`` listing their names."""
    for name, value in env.items():
        if not isinstance(name, str) or _ENV_NAME.fullmatch(name) is None or name == "ORBENV":
            raise InvalidSpecError("env name", name, "[A-Za-z_][A-Za-z0-9_]*, not ORBENV")
        if not isinstance(value, str) or "\0" in value:
            raise InvalidSpecError("env value", f"<value of {name}>", "a string without NUL characters")
    names = [n for n in os.environ.get("ORBENV", "").split(":") if n]
    names += [n for n in env if n not in names]
    return {**env, "ORBENV": ":".join(names)}
