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
:data:`DRAIN_SECONDS` more, then its pipes are closed.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import logging
import math
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from pytest_orbstack.results import RunResult

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

_FIX: Final = "install OrbStack, or pass --orb-orbctl PATH, set $ORBCTL, or put orbctl on PATH"
#: Seconds to collect the output of a killed process group (after its deadline).
DRAIN_SECONDS: Final = 0.25
#: Bytes of stdout and of stderr a call keeps (its last ones) unless told otherwise: 16 MiB.
DEFAULT_OUTPUT_LIMIT: Final = 16 * 1024 * 1024
_CHUNK: Final = 65536
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: ``run(env=...)`` names that would change how orbctl itself behaves (they must pass through
#: orbctl's own environment to reach the machine): refused.  Prefixes end in ``*``.
RESERVED_ENV: Final = (
    "ORB*", "PYTHON*", "LD_*", "DYLD_*", "XDG_*", "GODEBUG", "GOGC", "GOMAXPROCS", "GOMEMLIMIT",
    "GOTRACEBACK", "HOME", "PATH", "TMPDIR", "SHELL", "USER", "LOGNAME", "SSL_CERT_FILE",
    "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy",
    "https_proxy", "no_proxy", "all_proxy",
)  # fmt: skip
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


#: The result of one orbctl call: the same type as a command run in a machine.
CommandResult = RunResult


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


#: stderr of ``orbctl run`` that orbctl itself wrote (not the command): its service's error prefix,
#: or OrbStack that could not be started.
_ORBCTL_SIDE: Final = re.compile(
    r"\A\s*(\[-32\d\d\d\] |(start VM: )?timed out waiting for (VM|services) to start)"
)


def orbctl_failure(stderr: str) -> bool:
    """Whether the stderr of ``orbctl run`` is orbctl's own failure, not the command's."""
    return _ORBCTL_SIDE.search(stderr) is not None


class _Tail:
    """The last ``limit`` bytes written to it, and how many bytes came before them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._chunks: deque[bytes] = deque()
        self._kept = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._chunks.append(chunk)
        self._kept += len(chunk)
        while self._chunks and self._kept - len(self._chunks[0]) >= self.limit:
            self._kept -= len(self._chunks.popleft())

    @property
    def dropped(self) -> int:
        return max(0, self.total - self.limit)

    def data(self) -> bytes:
        """The kept bytes (the last ``limit``)."""
        joined = b"".join(self._chunks)
        return joined[len(joined) - min(len(joined), self.limit) :]

    def text(self) -> str:
        return self.data().decode("utf-8", errors="replace")


def _collect(proc: subprocess.Popen[bytes], data: bytes, deadline: float, out: _Tail, err: _Tail) -> bool:
    """Feed ``data`` to stdin and read stdout / stderr until both end; False at ``deadline``."""
    with selectors.DefaultSelector() as selector:
        for pipe, tail in ((proc.stdout, out), (proc.stderr, err)):
            if pipe is not None:
                selector.register(pipe.fileno(), selectors.EVENT_READ, tail)
        if proc.stdin is not None:
            if data:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE, None)
            else:
                proc.stdin.close()
        view = memoryview(data)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for key, _ in selector.select(remaining):
                if key.data is None:  # stdin
                    try:
                        view = view[os.write(key.fd, view[:_CHUNK]) :]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        view = view[:0]
                    if not view:
                        selector.unregister(key.fd)
                        proc.stdin.close()  # type: ignore[union-attr]
                    continue
                chunk = os.read(key.fd, _CHUNK)
                if chunk:
                    key.data.add(chunk)
                else:
                    selector.unregister(key.fd)
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def _kill_group(proc: subprocess.Popen[bytes], out: _Tail, err: _Tail) -> None:
    """Kill the process group of ``proc``, collect what it printed for a moment, close its pipes."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group may be gone already
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, ValueError):
        _collect(proc, b"", time.monotonic() + DRAIN_SECONDS, out, err)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):  # a process that left the group may hold one
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    if proc.poll() is None:  # not reaped yet: its pid is still its own
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)  # the leader itself, should it have left its group
    proc.wait()


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
        full_env = MaskedEnv({**os.environ, **(env or {})})
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
        del full_env
        out, err = _Tail(limit), _Tail(limit)
        try:
            data = b"" if input is None else input.encode("utf-8")
            finished = _collect(proc, data, started + seconds, out, err)
        except BaseException:
            _kill_group(proc, out, err)
            raise
        if not finished:
            _kill_group(proc, out, err)
            log.debug("killed after %gs: %s", seconds, shlex.join(argv))
            hint = _TIMEOUT_HINTS.get(args[0] if args else "")
            raise OrbctlTimeoutError(argv, seconds, out.text(), err.text(), hint=hint) from None
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        result = RunResult(
            tuple(argv),
            proc.returncode,
            out.text(),
            err.text(),
            time.monotonic() - started,
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
            env=_orbenv(env) if env else None,
            check=False,
            output_limit=output_limit,
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


def _check_limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidSpecError("output_limit", value, "a whole number of bytes >= 1")
    return value


class MaskedEnv(dict):  # type: ignore[type-arg]
    """A dict of environment variables whose repr shows names only (tracebacks print it)."""

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{name!r}: '***'" for name in self) + "}"

    __str__ = __repr__


def _reserved(name: str) -> bool:
    """Environment names are case-sensitive: ``path`` is not ``PATH`` (the proxies are listed in both)."""
    return any(name.startswith(r[:-1]) if r.endswith("*") else name == r for r in RESERVED_ENV)


def check_env(env: Mapping[str, str]) -> None:
    """Refuse ``run(env=...)`` names that are invalid or would change orbctl's own behaviour.

    The variables reach the machine through orbctl's environment (named in
    ``ORBENV``), so ``PATH``, ``HOME``, ``LD_*``, ``ORB*``... would change what
    orbctl itself does: see :data:`RESERVED_ENV`.  Messages never show a value.
    """
    __tracebackhide__ = True
    for name in env:
        if not isinstance(name, str) or _ENV_NAME.fullmatch(name) is None:
            raise InvalidSpecError("env name", name, "expected [A-Za-z_][A-Za-z0-9_]* (value not shown)")
        if _reserved(name):
            raise InvalidSpecError(
                "env name",
                name,
                "it would change orbctl's own behaviour on the host, which passes it on; refused: "
                f"{', '.join(RESERVED_ENV)}; pass it under another name and set it in the command "
                "(env={'MY_HOME': ...} with run('HOME=\"$MY_HOME\" cmd'))",
            )
    bad = next((n for n in env if not isinstance(env[n], str) or "\0" in env[n]), None)
    if bad is not None:
        raise InvalidSpecError("env value", f"<value of {bad}>", "a string without NUL characters")


def _orbenv(env: Mapping[str, str]) -> dict[str, str]:
    """The variables to add for ``run``: ``env`` plus ``ORBENV`` listing their names."""
    __tracebackhide__ = True
    check_env(env)
    names = [n for n in os.environ.get("ORBENV", "").split(":") if n]
    names += [n for n in env if n not in names]
    return MaskedEnv({**env, "ORBENV": ":".join(names)})
