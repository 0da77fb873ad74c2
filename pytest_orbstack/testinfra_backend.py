"""A pytest-testinfra backend for OrbStack machines: ``orb://[USER@]MACHINE``.

This module needs pytest-testinfra (``pip install 'pytest-orbstack[testinfra]'``);
nothing else in the plugin imports it unless testinfra is installed.  Importing
it adds ``orb`` to ``testinfra.backend.BACKENDS`` (testinfra's table of
backends, by dotted path), so ``testinfra.get_host("orb://web")`` and
``pytest --hosts=orb://web`` work.  The pytest plugin imports it at
configure time when testinfra is installed; a script outside pytest imports
it once (``import pytest_orbstack.testinfra_backend``).

Every command runs as ``orbctl run -m MACHINE [-u USER] sh -c COMMAND``
through :class:`~pytest_orbstack.client.OrbctlClient` (stdin at
``/dev/null``, a timeout, argv only): ``COMMAND`` is the string testinfra
built with its own quoting, sudo wrapping included.  testinfra gets the
command's exact exit code and output bytes.  An orbctl-side failure (the
machine does not exist, OrbStack is not running) raises instead of passing
for the command's own exit code 1.
"""

from __future__ import annotations

import math
import shlex
from typing import Any, Callable, Final, Optional, Union

import testinfra.backend
import testinfra.host
from testinfra.backend import base

from pytest_orbstack import commands
from pytest_orbstack.client import OrbctlClient, classify, find_orbctl, orbctl_failure
from pytest_orbstack.errors import InvalidSpecError, MachineNotFoundError, OrbctlCommandError
from pytest_orbstack.orbctl import Orbctl

__all__ = ["BACKEND_PATH", "NAME", "OrbBackend", "OrbHostError", "host_for", "use_client"]

#: The scheme of the backend: ``orb://[USER@]MACHINE``.
NAME: Final = "orb"
#: What ``testinfra.backend.BACKENDS[NAME]`` holds.
BACKEND_PATH: Final = "pytest_orbstack.testinfra_backend.OrbBackend"

#: Hears of each command run: (the command quoted for a shell, its exit code or None, seconds).
Recorder = Callable[[str, Optional[int], float], None]

#: stderr of an orbctl-side failure: errors of OrbStack's machine service carry this prefix.


def _default_client() -> OrbctlClient:
    return OrbctlClient(find_orbctl())


#: the one factory in use (a list so that :func:`use_client` can swap it without ``global``)
_client_factory: list[Callable[[], Orbctl]] = [_default_client]


def use_client(factory: Optional[Callable[[], Orbctl]]) -> Callable[[], Orbctl]:
    """Make ``orb://`` hosts built from a host spec use ``factory()``'s client; return the previous factory.

    ``None`` restores the default: the orbctl of ``$ORBCTL``, else ``orbctl`` on PATH.
    The pytest plugin sets its own client (``--orb-orbctl``) while a run lasts.
    """
    previous = _client_factory[0]
    _client_factory[0] = _default_client if factory is None else factory
    return previous


class OrbHostError(MachineNotFoundError):
    """A testinfra command could not run because its machine does not exist.

    The message starts with testinfra's own text for an unexpected exit code
    and goes on with what orbctl said; ``result`` is testinfra's ``CommandResult``.
    """

    def __init__(self, host_id: str, name: str, result: Any, error: OrbctlCommandError) -> None:
        self.result = result
        self.host_id = host_id
        said = next((line for line in error.stderr.splitlines() if line.strip()), "no message")
        message = (
            f"Unexpected exit code {result.rc} for {result!r}\n"
            f"{host_id}: machine {name!r} does not exist (orbctl: {said}); "
            "check the name with 'orbctl list'"
        )
        super().__init__(error.argv, error.returncode, error.stdout, error.stderr, message=message)


def _timeout(value: Union[str, float, None]) -> Optional[float]:
    """The per-command timeout from ``?timeout=SECONDS`` (a string) or a number; ``None``: the client's."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidSpecError("orb:// timeout", value, "a finite number of seconds > 0")
    return seconds


class OrbBackend(base.BaseBackend):  # type: ignore[misc]
    """testinfra backend ``orb://[USER@]MACHINE``: commands run through ``orbctl run``.

    ``USER`` defaults to the machine's default user.  ``?timeout=SECONDS``
    limits each command (default: the client's ``run`` timeout); ``?sudo=true``
    and ``host.sudo()`` wrap commands in the machine's ``sudo`` as with every
    testinfra backend.  ``client`` is the orbctl client to use (default: see
    :func:`use_client`); ``on_command`` hears of every command (a machine keeps
    them in its history, shown in failure reports).
    """

    NAME = NAME

    def __init__(
        self,
        hostspec: str,
        *args: Any,
        client: Optional[Orbctl] = None,
        timeout: Union[str, float, None] = None,
        on_command: Optional[Recorder] = None,
        workdir: Optional[Callable[[], str]] = None,
        **kwargs: Any,
    ) -> None:
        name, user = self.parse_containerspec(hostspec)
        if not isinstance(name, str) or commands.NAME_PATTERN.fullmatch(name) is None:
            raise InvalidSpecError("orb:// machine", name, "orb://[USER@]MACHINE with a machine name or ID")
        if user is not None and ":" in user:  # never echo what may be a password
            raise InvalidSpecError("orb:// user", "USER:***", "orb://USER@MACHINE: orbctl takes no password")
        self.name: str = name
        self.user: Optional[str] = None if user is None else commands.validate_user(user)
        self.timeout = _timeout(timeout)
        self._client = client
        self._on_command = on_command
        #: where commands run (``Machine.host``: the user's home); ``None``: orbctl's default
        self._workdir = workdir
        super().__init__(name, *args, **kwargs)

    @property
    def client(self) -> Orbctl:
        """The orbctl client commands go through (made on first use)."""
        if self._client is None:
            self._client = _client_factory[0]()
        return self._client

    def get_pytest_id(self) -> str:
        """``orb://[USER@]MACHINE``: the test id testinfra shows."""
        return f"{NAME}://{self.name if self.user is None else f'{self.user}@{self.name}'}"

    def run(self, command: str, *args: str, **kwargs: Any) -> Any:
        """Run ``command % quoted(args)`` with ``sh -c`` in the machine; testinfra's ``CommandResult``."""
        cmd = self.get_command(command, *args)
        try:
            raw = self.client.run(
                self.name,
                ["sh", "-c", cmd],
                user=self.user,
                workdir=None if self._workdir is None else self._workdir(),
                timeout=self.timeout,
                check=False,
            )
        except Exception:
            self._record(cmd, None, 0.0)
            raise
        self._record(cmd, raw.returncode, raw.duration)
        if raw.stdout_dropped or raw.stderr_dropped:  # testinfra would see part of it as all of it
            raise OrbctlCommandError(
                list(raw.args),
                raw.returncode,
                "",
                "",
                message=(
                    f"{self.get_pytest_id()}: the output of {cmd!r} was larger than the client's "
                    f"output limit ({raw.stdout_dropped + raw.stderr_dropped} bytes dropped): "
                    "raise --orb-output-limit"
                ),
            )
        result = self.result(raw.returncode, self.encode(cmd), raw.stdout_bytes, raw.stderr_bytes)
        if raw.returncode == 1:
            self._check_machine(raw, result)
        return result

    def _record(self, cmd: str, returncode: Optional[int], duration: float) -> None:
        if self._on_command is not None:
            self._on_command(shlex.join(["sh", "-c", cmd]), returncode, duration)

    def _check_machine(self, raw: Any, result: Any) -> None:
        """Raise if exit code 1 came from orbctl (machine missing, OrbStack down), not the command.

        orbctl also exits 1 for its own failures, sometimes silently: an orbctl
        error text decides, and a silent exit 1 costs one ``orbctl info``.
        """
        if orbctl_failure(raw.stderr):
            error = classify(list(raw.args), raw.returncode, raw.stdout, raw.stderr)
        elif raw.stderr.strip():
            return
        else:
            try:
                self.client.info(self.name)
            except MachineNotFoundError as exc:
                error = exc
            else:
                return
        if isinstance(error, MachineNotFoundError):
            raise OrbHostError(self.get_pytest_id(), self.name, result, error)
        raise error


def host_for(
    client: Orbctl,
    machine: str,
    user: Optional[str] = None,
    on_command: Optional[Recorder] = None,
    workdir: Optional[Callable[[], str]] = None,
) -> Any:
    """A testinfra ``Host`` for ``machine`` running commands as ``user`` (default user when ``None``).

    ``on_command(command, exit code or None, seconds)`` hears of every command run;
    ``workdir()`` says where commands run (a :class:`~pytest_orbstack.machine.Machine`: the
    user's Linux home, never the host's current directory).
    """
    spec = machine if user is None else f"{user}@{machine}"
    backend = OrbBackend(spec, client=client, on_command=on_command, workdir=workdir)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


testinfra.backend.BACKENDS.setdefault(NAME, BACKEND_PATH)
