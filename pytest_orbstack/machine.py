"""The :class:`Machine` handle that tests receive, and the result of a command run in it."""

from __future__ import annotations

import collections
import shlex
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Optional, Protocol, Union

from pytest_orbstack.errors import OrbstackError, clip_output

if TYPE_CHECKING:
    from os import PathLike

    from pytest_orbstack.models import MachineInfo
    from pytest_orbstack.provisioner import MachineSpec

__all__ = ["CommandFailedError", "CommandRecord", "Machine", "RunResult"]

#: How many recent commands a machine remembers for failure reports.
HISTORY: Final = 20

Command = Union[str, Sequence[str]]


@dataclass(frozen=True)
class RunResult:
    """What a command run in a machine did."""

    #: the command as run in the machine (a string command is ``["sh", "-c", command]``)
    args: tuple[str, ...]
    #: its exit code
    returncode: int
    #: its standard output
    stdout: str
    #: its standard error
    stderr: str
    #: seconds it took, including orbctl's own overhead
    duration: float
    #: the machine it ran in
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
    command, the exit code and both output streams (never environment values).
    """

    def __init__(self, result: RunResult) -> None:
        self.result = result
        self.machine = result.machine
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        parts = [
            f"command failed in machine {result.machine!r} with exit code {result.returncode}",
            f"  command: {result.command}",
            f"  exit code: {result.returncode}",
            f"  stdout: {clip_output(result.stdout) or '(empty)'}",
            f"  stderr: {clip_output(result.stderr) or '(empty)'}",
        ]
        super().__init__("\n".join(parts))


@dataclass(frozen=True)
class CommandRecord:
    """One entry of a machine's command history (for failure reports; no environment values)."""

    command: str
    returncode: Optional[int]
    duration: float
    #: why there is no exit code: the error orbctl raised, or what interrupted the command
    note: str = ""


class _Manager(Protocol):
    """What a machine needs from whoever manages its life (the provisioner)."""

    client: Any
    ready_timeout: float

    def start(self, machine: Machine) -> None: ...

    def restart(self, machine: Machine) -> None: ...

    def delete(self, machine: Machine) -> None: ...

    def clone(self, machine: Machine, name: Optional[str]) -> Machine: ...

    def wait_ready(self, machine: Machine, timeout: float) -> MachineInfo: ...


class Machine:
    """A real OrbStack Linux machine, managed by pytest-orbstack.

    Get one from the ``orb_vm``, ``orb_vm_fresh`` or ``orb_machines`` fixtures;
    the plugin deletes it when its fixture ends.
    """

    def __init__(
        self, manager: _Manager, name: str, spec: MachineSpec, info: Optional[MachineInfo] = None
    ) -> None:
        self._manager = manager
        self._client = manager.client
        self._spec = spec
        self._info = info
        self._history: collections.deque[CommandRecord] = collections.deque(maxlen=HISTORY)
        self._lock = threading.Lock()
        #: the machine name
        self.name: Final = name
        #: True once the machine was deleted (by the test or by the plugin)
        self.deleted = False

    def __repr__(self) -> str:
        return f"<Machine {self.name} {self._spec.image}>"

    # --- identity ----------------------------------------------------------------------------

    @property
    def spec(self) -> MachineSpec:
        """The spec the machine was made from."""
        return self._spec

    def _cached(self) -> MachineInfo:
        return self._info if self._info is not None else self.info()

    @property
    def id(self) -> str:
        """OrbStack's id of the machine (a ULID)."""
        return self._cached().id

    @property
    def image(self) -> str:
        """The image as OrbStack reports it: ``distro:version``, the version a codename (``ubuntu:jammy``)."""
        return self._cached().image

    @property
    def arch(self) -> str:
        """The CPU architecture (``amd64``, ``arm64``...)."""
        return self._cached().arch

    @property
    def user(self) -> Optional[str]:
        """The machine's default user (commands run as this user unless told otherwise)."""
        return self._spec.user or self._cached().default_username

    @property
    def hostname(self) -> str:
        """The DNS name of the machine from the host: ``NAME.orb.local``."""
        return f"{self.name}.orb.local"

    def info(self) -> MachineInfo:
        """Fresh information from ``orbctl info``."""
        info: MachineInfo = self._client.info(self.name)
        self._info = info
        return info

    def _remember(self, info: MachineInfo) -> None:
        self._info = info

    @property
    def state(self) -> str:
        """The current state (``running``, ``stopped``...), asked from orbctl now."""
        return self.info().state

    @property
    def ip4(self) -> Optional[str]:
        """The machine's IPv4 address now (``None`` while it has none, e.g. when stopped)."""
        return self.info().ip4

    @property
    def ip6(self) -> Optional[str]:
        """The machine's IPv6 address now, or ``None``."""
        return self.info().ip6

    # --- commands ------------------------------------------------------------------------------

    @property
    def history(self) -> list[CommandRecord]:
        """The most recent commands run in the machine (oldest first)."""
        with self._lock:
            return list(self._history)

    def _record(self, command: str, returncode: Optional[int], duration: float, note: str = "") -> None:
        with self._lock:
            self._history.append(CommandRecord(command, returncode, duration, note))

    def run(
        self,
        cmd: Command,
        *,
        user: Optional[str] = None,
        workdir: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        input: Optional[str] = None,
        timeout: Optional[float] = None,
        check: bool = True,
    ) -> RunResult:
        """Run a command in the machine and return its :class:`RunResult`.

        A ``str`` runs through ``sh -c`` (shell syntax allowed); a list runs as
        argv, with no shell.  ``env`` values reach the command through the
        environment of orbctl (names listed in ``ORBENV``), never on a command
        line.  With ``check=True`` a non-zero exit raises :class:`CommandFailedError`.
        """
        __tracebackhide__ = True  # keep env values out of tracebacks (pytest prints frame arguments)
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else [str(part) for part in cmd]
        if not argv:
            raise ValueError("run() needs a command")
        shown = shlex.join(argv)
        started = time.monotonic()
        try:
            raw = self._client.run(
                self.name,
                argv,
                user=user,
                workdir=workdir,
                env=dict(env) if env else None,
                input=input,
                timeout=timeout,
                check=False,
            )
        except BaseException as exc:  # also a test timeout or Ctrl-C while it ran: the report shows it
            what = "orbctl failed" if isinstance(exc, Exception) else "interrupted while running"
            self._record(shown, None, time.monotonic() - started, f"{what}: {type(exc).__name__}")
            raise
        result = RunResult(tuple(argv), raw.returncode, raw.stdout, raw.stderr, raw.duration, self.name)
        self._record(shown, result.returncode, result.duration)
        if check:
            result.check_returncode()
        return result

    def push(self, local: Union[str, PathLike[str]], remote: Optional[str] = None) -> None:
        """Copy a local file or directory into the machine (``remote`` defaults to the user's home).

        Relative ``remote`` paths are relative to the default user's home.
        """
        self._client.push(self.name, [str(local)], remote)
        self._record(f"push {local} {remote or '~'}", 0, 0.0)

    def pull(self, remote: str, local: Union[str, PathLike[str]]) -> None:
        """Copy a file or directory from the machine to ``local``.

        Relative ``remote`` paths are relative to the default user's home.
        """
        self._client.pull(self.name, [remote], str(local))
        self._record(f"pull {remote} {local}", 0, 0.0)

    def write_text(self, path: str, text: str, *, user: Optional[str] = None) -> None:
        """Write ``text`` to ``path`` in the machine (created or replaced)."""
        self.run(["sh", "-c", 'cat > "$1"', "sh", path], input=text, user=user)

    def read_text(self, path: str, *, user: Optional[str] = None) -> str:
        """The content of the text file ``path`` in the machine."""
        return self.run(["cat", path], user=user).stdout

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the machine (no-op if running) and wait until it is ready."""
        self._manager.start(self)

    def stop(self, *, force: bool = False) -> None:
        """Stop the machine (``force``: kill at once instead of a graceful shutdown)."""
        self._client.stop(self.name, force=force)

    def restart(self) -> None:
        """Restart the machine and wait until it is ready again."""
        self._manager.restart(self)

    def wait_ready(self, timeout: Optional[float] = None) -> MachineInfo:
        """Wait until the machine runs, has an address and runs commands (``--orb-ready-timeout`` default)."""
        return self._manager.wait_ready(self, self._manager.ready_timeout if timeout is None else timeout)

    def delete(self) -> None:
        """Delete the machine now (the plugin then skips it at teardown).  Idempotent."""
        self._manager.delete(self)

    def clone(self, name: Optional[str] = None) -> Machine:
        """Clone this machine with ``orbctl clone``, start the copy and return it when ready.

        The clone is deleted when this machine's fixture ends.  Leave ``name``
        unset so the clone gets a name with the run's prefix (then a crashed
        run's purge finds it too).
        """
        return self._manager.clone(self, name)
