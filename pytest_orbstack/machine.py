"""The :class:`Machine` handle that tests receive, and the result of a command run in it.

Longer than most modules on purpose: :class:`Machine` is the public handle, one
class whose methods are what a test author calls (run, files, life cycle); its
life cycle calls go to a :class:`MachineManager` and only the command running
and its history live here.
"""

from __future__ import annotations

import collections
import re
import shlex
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Optional, Protocol, Union

from pytest_orbstack.client import MaskedEnv, classify, orbctl_failure
from pytest_orbstack.errors import (
    MachineNotFoundError,
    OrbstackError,
    OrbStackNotRunningError,
    first_line,
)
from pytest_orbstack.readiness import PROBE
from pytest_orbstack.results import CommandFailedError, CommandRecord, RunResult
from pytest_orbstack.ssh import SshConfig, ssh_config

if TYPE_CHECKING:
    from os import PathLike

    from pytest_orbstack.models import MachineInfo, MachineSpec
    from pytest_orbstack.orbctl import Orbctl

__all__ = ["Machine", "MachineManager"]

#: How many recent commands a machine remembers for failure reports.
HISTORY: Final = 20
#: root's home on every distro OrbStack offers (no look-up needed).
ROOT_HOME: Final = "/root"
#: A path under ``/tmp`` or ``/run`` in a command (not ``/var/tmp``, ``~/tmp``, ``/runner``).
_VOLATILE: Final = re.compile(r"(?<![\w.~/-])/(?:tmp|run)(?![\w.-])")
#: What orbctl (not the command) prints when it fails: the machine service's errors, OrbStack down.
_ORBCTL_SAID: Final = ("[-32098]", "machine not found", "timed out waiting for", "start VM:")

Command = Union[str, Sequence[str]]


def _masked(env: Optional[Mapping[str, str]]) -> Optional[Mapping[str, str]]:
    """``env`` as a mapping whose repr shows names only (``None`` for no variables)."""
    return MaskedEnv(env) if env else None


def _check_access(result: RunResult, method: str, path: str, user: Optional[str]) -> RunResult:
    """``result`` if it succeeded; else :class:`CommandFailedError`, with a hint when root was needed."""
    if result.ok:
        return result
    hint = ""
    if user != "root" and "Permission denied" in result.stderr:
        text = ", ..." if method == "write_text" else ""
        who = user or "the default user"
        hint = f'{path} is not accessible to {who}: use {method}({path!r}{text}, user="root")'
    raise CommandFailedError(result, hint)


class MachineManager(Protocol):
    """Whoever manages a machine's life (the provisioner): every life cycle call of a :class:`Machine`.

    The calls that change what the machine is return its fresh info, which the machine keeps.
    """

    @property
    def client(self) -> Orbctl: ...

    @property
    def ready_timeout(self) -> float: ...

    def new_name(self) -> str:
        """A name for a new machine (a clone that was given none)."""
        ...

    def start(self, machine: Machine) -> MachineInfo: ...

    def restart(self, machine: Machine) -> MachineInfo: ...

    def stop(self, machine: Machine, *, force: bool) -> None: ...

    def delete(self, machine: Machine) -> None: ...

    def clone(self, machine: Machine, copy: Machine) -> MachineInfo:
        """Make ``copy`` a ready clone of ``machine``; deleted with ``machine`` when its fixture ends."""
        ...

    def wait_ready(self, machine: Machine, timeout: float) -> MachineInfo: ...


class Machine:
    """A real OrbStack Linux machine, managed by pytest-orbstack.

    Get one from the ``orb_vm``, ``orb_vm_fresh`` or ``orb_machines`` fixtures;
    the plugin deletes it when its fixture ends.
    """

    def __init__(
        self, manager: MachineManager, name: str, spec: MachineSpec, info: Optional[MachineInfo] = None
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
        self._hosts: dict[Optional[str], Any] = {}
        #: Linux homes by user name ("" = the default user): where commands run by default
        self._homes: dict[str, str] = {}
        #: commands that named /tmp or /run while provision hooks ran (``None``: not watching)
        self._volatile: Optional[list[str]] = None
        if info is not None:
            self._remember(info)
        #: why the machine may have died or restarted since the plugin last looked (``None``: no sign)
        self.suspect: Optional[str] = None

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
    def ssh_destination(self) -> str:
        """``USER@MACHINE@orb``: what ``ssh`` (with OrbStack's ssh config) is given to reach this machine."""
        return f"{self._ssh_user()}@{self.name}@orb"

    def ssh_config(self, path: Optional[Union[str, PathLike[str]]] = None) -> SshConfig:
        """How to reach this machine over SSH, from OrbStack's ``Host orb`` entry (see ``docs/usage.md``).

        ``path`` is the ssh config to read; by default ``$PYTEST_ORBSTACK_SSH_CONFIG``,
        else ``~/.orbstack/ssh/config``.  Raises :class:`~pytest_orbstack.ssh.SshConfigError`
        when that file is missing or has no ``Host orb`` entry.
        """
        return ssh_config(self._ssh_user(), self.name, Path(path) if path is not None else None)

    def _ssh_user(self) -> str:
        user = self.user
        if not user:
            raise OrbstackError(
                f"machine {self.name!r}: OrbStack reports no default user to log in as over SSH"
            )
        return user

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
        home = getattr(info, "home", None)  # printed by the readiness probe
        if home:
            with self._lock:
                self._homes[""] = home

    @property
    def home(self) -> str:
        """The default user's Linux home: where commands run unless ``workdir=`` says otherwise."""
        return self._home_of(None)

    def _home_of(self, user: Optional[str]) -> str:
        """The home of ``user`` (``None``: the default user), learnt once per machine and user.

        The default user's home comes with readiness (its probe prints it);
        root's is ``/root``; another user's is asked once it exists (``$HOME``
        as that user).  ``/`` when it cannot be told: never the host's current
        directory, which is where ``orbctl run`` without ``-w`` would run.
        """
        if user == "root":
            return ROOT_HOME
        default = self._spec.user or getattr(self._info, "default_username", None)
        key = "" if user is None or user == default else user
        with self._lock:
            known = self._homes.get(key)
        if known is not None:
            return known
        try:
            raw = self._client.run(
                self.name, list(PROBE), user=key or None, workdir="/", timeout=30.0, check=False
            )
        except OrbstackError:
            return "/"  # not remembered: the machine may come back; the command reports its own error
        if raw.returncode != 0:
            return "/"  # not remembered: e.g. a user the test has not added yet
        printed = str(getattr(raw, "stdout", "") or "").strip()
        home = printed if printed.startswith("/") and "\n" not in printed else "/"
        with self._lock:
            self._homes.setdefault(key, home)
        return home

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
        output_limit: Optional[int] = None,
    ) -> RunResult:
        """Run a command in the machine and return its :class:`RunResult`.

        A ``str`` runs through ``sh -c`` (shell syntax allowed); a list runs as
        argv, with no shell.  ``env`` values reach the command through the
        environment of orbctl (names listed in ``ORBENV``), never on a command
        line; names that would change orbctl itself (``PATH``, ``HOME``,
        ``LD_*``, ``ORB*``...) are refused.  ``timeout`` is a deadline for the
        whole call; only the last ``output_limit`` bytes of each output stream
        are kept (default ``--orb-output-limit``).  With ``check=True`` a
        non-zero exit raises :class:`CommandFailedError`; orbctl's own failures
        (machine gone, OrbStack stopped) raise their typed error whatever ``check``.

        Commands run in ``workdir``, by default the user's Linux home (``/root``
        for root), never in the directory pytest runs in.
        """
        __tracebackhide__ = True  # keep env values out of tracebacks (pytest prints frame arguments)
        env = _masked(env)  # frames of a traceback (--full-trace) show the names only
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else [str(part) for part in cmd]
        if not argv:
            raise ValueError("run() needs a command")
        shown = shlex.join(argv)
        self._watch(shown, argv)
        if workdir is None:
            workdir = self._home_of(user)
        started = time.monotonic()
        try:
            raw = self._client.run(
                self.name,
                argv,
                user=user,
                workdir=workdir,
                env=env,
                input=input,
                timeout=timeout,
                check=False,
                output_limit=output_limit,
            )
        except BaseException as exc:  # also a test timeout or Ctrl-C while it ran: the report shows it
            what = "orbctl failed" if isinstance(exc, Exception) else "interrupted while running"
            self._record(shown, None, time.monotonic() - started, f"{what}: {type(exc).__name__}")
            if isinstance(exc, Exception):
                self.suspect = f"orbctl failed running {shown!r}"
            raise
        result = RunResult(
            tuple(argv), raw.returncode, raw.stdout, raw.stderr, raw.duration,
            raw.stdout_dropped, raw.stderr_dropped, machine=self.name,
        )  # fmt: skip
        self._record(shown, result.returncode, result.duration)
        if _machine_trouble(result):
            self.suspect = f"{shown!r} exited with {result.returncode}"
        if result.returncode != 0:
            self._raise_orbctl_failure(raw)
        if check and result.returncode != 0:
            raise CommandFailedError(result, secrets=list(env.values()) if env else ())
        return result

    def _raise_orbctl_failure(self, raw: Any) -> None:
        """Raise the typed error when orbctl itself failed, not the command (see docs/orbctl.md).

        orbctl's own failures say ``[-32098] ...`` on stderr; a failure without
        any message exits 1 like a command would, so then ``info`` is asked once.
        """
        __tracebackhide__ = True
        if orbctl_failure(raw.stderr):
            raise classify(list(raw.args), raw.returncode, raw.stdout, raw.stderr)
        if raw.returncode == 1 and not raw.stderr.strip():
            try:
                self._client.info(self.name)
            except (MachineNotFoundError, OrbStackNotRunningError) as exc:
                raise type(exc)(
                    list(raw.args), raw.returncode, raw.stdout, raw.stderr,
                    message=f"orbctl run failed in {self.name!r}, not the command: {first_line(exc)}",
                ) from None  # fmt: skip
            except OrbstackError:
                pass  # info cannot tell either: the command's exit code stands

    def push(
        self,
        local: Union[str, PathLike[str]],
        remote: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
    ) -> None:
        """Copy a local file or directory into the machine (``remote`` defaults to the user's home).

        Relative ``remote`` paths are relative to the default user's home.  ``timeout``: the most
        seconds the copy may take (default: that of :meth:`run`, an hour).
        """
        self._watch(f"push {local} {remote or '~'}", [remote or ""])
        try:
            self._client.push(self.name, [str(local)], remote, timeout=timeout)
        except Exception:
            self.suspect = "a push failed"
            raise
        self._record(f"push {local} {remote or '~'}", 0, 0.0)

    def pull(self, remote: str, local: Union[str, PathLike[str]], *, timeout: Optional[float] = None) -> None:
        """Copy a file or directory from the machine to ``local``.

        Relative ``remote`` paths are relative to the default user's home.  ``timeout`` as :meth:`push`'s.
        """
        try:
            self._client.pull(self.name, [remote], str(local), timeout=timeout)
        except Exception:
            self.suspect = "a pull failed"
            raise
        self._record(f"pull {remote} {local}", 0, 0.0)

    def write_text(self, path: str, text: str, *, user: Optional[str] = None) -> None:
        """Write ``text`` to ``path`` in the machine (created or replaced), as ``user``.

        A relative ``path`` is relative to the user's home.  Root-owned paths
        (``/etc/...``) need ``user="root"``: the default user is not root on a Mac.
        """
        result = self.run(["sh", "-c", 'cat > "$1"', "sh", path], input=text, user=user, check=False)
        _check_access(result, "write_text", path, user)

    def read_text(self, path: str, *, user: Optional[str] = None) -> str:
        """The content of the text file ``path`` in the machine, read as ``user``."""
        return _check_access(self.run(["cat", path], user=user, check=False), "read_text", path, user).stdout

    # --- provision hooks -----------------------------------------------------------------------

    def watch_volatile(self) -> None:
        """Start noting commands that name a path under ``/tmp`` or ``/run`` (while provision hooks run)."""
        with self._lock:
            self._volatile = []

    def volatile_commands(self) -> list[str]:
        """Stop noting (see :meth:`watch_volatile`); the commands noted."""
        with self._lock:
            noted, self._volatile = self._volatile or [], None
        return noted

    def _watch(self, shown: str, words: Sequence[str]) -> None:
        if self._volatile is not None and any(_VOLATILE.search(word) for word in words):
            with self._lock:
                if self._volatile is not None:
                    self._volatile.append(shown)

    # --- testinfra -----------------------------------------------------------------------------

    @property
    def host(self) -> Any:
        """The pytest-testinfra ``Host`` of this machine, running commands as its default user.

        ``machine.host.package("curl").is_installed``, ``with machine.host.sudo(): ...``.
        Needs ``pip install 'pytest-orbstack[testinfra]'``.
        """
        return self.testinfra_host()

    def testinfra_host(self, user: Optional[str] = None) -> Any:
        """The pytest-testinfra ``Host`` of this machine, running commands as ``user`` (default: its own)."""
        with self._lock:
            if user not in self._hosts:
                try:  # late import: pytest-testinfra is an optional extra
                    from pytest_orbstack.testinfra_backend import host_for  # noqa: PLC0415
                except ModuleNotFoundError as exc:
                    if not (exc.name or "").startswith("testinfra"):
                        raise
                    raise ModuleNotFoundError(
                        "Machine.host needs pytest-testinfra: pip install 'pytest-orbstack[testinfra]'",
                        name=exc.name,
                    ) from exc
                self._hosts[user] = host_for(
                    self._client, self.name, user, self._record, lambda: self._home_of(user)
                )
            return self._hosts[user]

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the machine (no-op if running) and wait until it is ready."""
        self.suspect = "the test started it"
        self._remember(self._manager.start(self))

    def stop(self, *, force: bool = False) -> None:
        """Stop the machine (``force``: kill at once instead of a graceful shutdown)."""
        self.suspect = "the test stopped it"
        self._manager.stop(self, force=force)

    def restart(self) -> None:
        """Restart the machine and wait until it is ready again."""
        self.suspect = "the test restarted it"
        self._remember(self._manager.restart(self))

    def wait_ready(self, timeout: Optional[float] = None) -> MachineInfo:
        """Wait until the machine runs, has an address and runs commands (``--orb-ready-timeout`` default)."""
        info = self._manager.wait_ready(self, self._manager.ready_timeout if timeout is None else timeout)
        self._remember(info)
        return info

    def delete(self) -> None:
        """Delete the machine now (the plugin then skips it at teardown).  Idempotent."""
        self.suspect = "the test deleted it"
        self._manager.delete(self)

    def clone(self, name: Optional[str] = None) -> Machine:
        """Clone this machine with ``orbctl clone``, start the copy and return it when ready.

        The clone is deleted when this machine's fixture ends.  Leave ``name``
        unset so the clone gets a name with the run's prefix (then a crashed
        run's purge finds it too).
        """
        copy = Machine(self._manager, name or self._manager.new_name(), self._spec)
        copy._remember(self._manager.clone(self, copy))
        return copy


def _machine_trouble(result: RunResult) -> bool:
    """True when a failed command looks like the machine's trouble, not the command's own.

    orbctl's own error texts on stderr, or an exit by a signal (the machine's
    init killed, ``kill -TERM 1``, ends every command in it with 128 + signal).
    """
    if result.returncode == 0:
        return False
    return result.returncode < 0 or result.returncode > 128 or any(t in result.stderr for t in _ORBCTL_SAID)
