"""SSH access to machines as OrbStack sets it up, for tools that speak SSH (Ansible, pyinfra, testinfra).

OrbStack runs one SSH server for all machines and writes a ``Host orb`` entry
into ``~/.orbstack/ssh/config`` (``HostName 127.0.0.1``, ``Port 32222``,
``IdentityFile ~/.orbstack/ssh/id_ed25519``, a ``ProxyCommand`` through its
helper with ``ProxyUseFdpass yes``).  A machine is reached as
``USER@MACHINE@orb``: always give both, since ``ssh typo@orb`` logs in to the
default machine as user ``typo``.

:func:`ssh_config` reads that ``Host orb`` entry once per call and returns an
:class:`SshConfig` for one machine.  The file is looked for at
``$PYTEST_ORBSTACK_SSH_CONFIG`` when set (a CI that runs an orbctl double
points it at the double's file), else at ``~/.orbstack/ssh/config``.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Optional, Union

from pytest_orbstack.errors import OrbstackError

__all__ = ["ENV_VAR", "HOST_ALIAS", "SshConfig", "SshConfigError", "default_config_path", "ssh_config"]

#: Environment variable naming the ssh config to read instead of OrbStack's.
ENV_VAR: Final = "PYTEST_ORBSTACK_SSH_CONFIG"
#: The ``Host`` entry OrbStack writes.
HOST_ALIAS: Final = "orb"
#: Largest config file read (OrbStack's is a few hundred bytes).
_MAX_BYTES: Final = 1 << 20


class SshConfigError(OrbstackError):
    """OrbStack's ssh config is missing or has no usable ``Host orb`` entry."""

    def __init__(self, message: str, path: Path) -> None:
        self.path = path
        super().__init__(message)


@dataclass(frozen=True)
class SshConfig:
    """How to reach one machine over SSH, with the values of OrbStack's ``Host orb`` entry.

    The simplest use is the config file itself: ``ssh -F CONFIG_FILE DESTINATION``
    (:meth:`ssh_args`); the single values serve tools that take them one by one.
    """

    #: ``USER@MACHINE@orb``, what ``ssh`` is given
    destination: str
    #: the ``Host`` alias of the entry (``orb``)
    host: str
    #: the login name, ``USER@MACHINE``
    user: str
    #: ``HostName`` of the entry (OrbStack: ``127.0.0.1``)
    hostname: str
    #: ``Port`` of the entry (OrbStack: ``32222``)
    port: int
    #: the private key (``IdentityFile``), ``~`` expanded; None if the entry has none
    identity_file: Optional[Path]
    #: the ``ProxyCommand`` (``%`` tokens left for ssh to expand), or None
    proxy_command: Optional[str]
    #: ``ProxyUseFdpass``: the proxy hands ssh a connected socket
    proxy_use_fdpass: bool
    #: the ssh config file holding the entry
    config_file: Path
    #: every option of the entry, names lower-cased, in file order
    options: tuple[tuple[str, str], ...] = field(default=())

    def ssh_args(self, *command: str) -> list[str]:
        """``["ssh", "-F", CONFIG_FILE, DESTINATION, *command]``: an argv for ``subprocess``."""
        return ["ssh", "-F", str(self.config_file), self.destination, *command]

    def ansible_vars(self) -> dict[str, str]:
        """Inventory variables that make Ansible's ssh connection use this entry."""
        return {
            "ansible_host": self.host,
            "ansible_user": self.user,
            "ansible_ssh_common_args": f"-F {shlex.quote(str(self.config_file))}",
        }

    def host_block(self, alias: Optional[str] = None) -> str:
        """A standalone ``Host`` block for this machine (``alias`` defaults to ``USER@MACHINE`` with ``-``).

        Every option of OrbStack's entry, with ``User`` set to ``USER@MACHINE``;
        write it into a file for tools that want a host name of their own
        (``ssh -F FILE ALIAS``).
        """
        name = alias or self.user.replace("@", "-")
        lines = [f"Host {name}", f"  User {self.user}"]
        for key, value in self.options:
            if key != "user":
                lines.append(f"  {_CANONICAL.get(key, key)} {value}")
        if not any(key == "hostkeyalias" for key, _ in self.options):
            lines.append(f"  HostKeyAlias {self.host}")  # known_hosts keeps OrbStack's name
        return "\n".join(lines) + "\n"


#: ``Key value`` or ``Key=value`` (ssh_config(5)).
_OPTION: Final = re.compile(r"([A-Za-z]+)\s*(?:=\s*|\s+)(.*)")

_CANONICAL: Final = {
    "hostname": "HostName",
    "port": "Port",
    "identityfile": "IdentityFile",
    "identitiesonly": "IdentitiesOnly",
    "proxycommand": "ProxyCommand",
    "proxyusefdpass": "ProxyUseFdpass",
    "hostkeyalias": "HostKeyAlias",
    "userknownhostsfile": "UserKnownHostsFile",
    "stricthostkeychecking": "StrictHostKeyChecking",
}


def default_config_path(environ: Optional[dict[str, str]] = None) -> Path:
    """``$PYTEST_ORBSTACK_SSH_CONFIG`` if set, else ``~/.orbstack/ssh/config``."""
    env = os.environ if environ is None else environ
    override = env.get(ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    return Path("~/.orbstack/ssh/config").expanduser()


def ssh_config(user: str, machine: str, path: Optional[Union[str, Path]] = None) -> SshConfig:
    """The :class:`SshConfig` of ``user`` on ``machine`` from the ``Host orb`` entry of ``path``.

    Raises :class:`SshConfigError` (one line: which file, what to do) when the
    file is missing or has no ``Host orb`` entry.
    """
    config_file = Path(path).expanduser() if path is not None else default_config_path()
    try:
        with open(config_file, encoding="utf-8", errors="replace") as fh:
            text = fh.read(_MAX_BYTES)
    except OSError as exc:
        raise SshConfigError(
            f"cannot read OrbStack's ssh config {config_file} ({exc.strerror}): start OrbStack once "
            f"(it writes the file), or set {ENV_VAR} to the file to use",
            config_file,
        ) from None
    options = _host_entry(text, HOST_ALIAS)
    if options is None:
        raise SshConfigError(
            f"{config_file} has no 'Host {HOST_ALIAS}' entry: restart OrbStack to rewrite it, "
            f"or set {ENV_VAR} to the file to use",
            config_file,
        )
    first: dict[str, str] = {}
    for key, value in options:
        first.setdefault(key, value)  # ssh keeps the first value of an option
    identity = first.get("identityfile")
    try:
        port = int(first.get("port", "22"))
    except ValueError:
        raise SshConfigError(
            f"{config_file}: 'Host {HOST_ALIAS}' has a Port that is not a number", config_file
        ) from None
    login = f"{user}@{machine}"
    return SshConfig(
        destination=f"{login}@{HOST_ALIAS}",
        host=HOST_ALIAS,
        user=login,
        hostname=first.get("hostname", HOST_ALIAS),
        port=port,
        identity_file=Path(_unquote(identity)).expanduser() if identity else None,
        proxy_command=first.get("proxycommand"),
        proxy_use_fdpass=first.get("proxyusefdpass", "no").lower() == "yes",
        config_file=config_file,
        options=tuple(options),
    )


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _host_entry(text: str, alias: str) -> Optional[list[tuple[str, str]]]:
    """The options of the first ``Host`` block whose patterns name ``alias`` exactly; None if none."""
    found: Optional[list[tuple[str, str]]] = None
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _OPTION.match(line)
        if match is None:
            continue
        key, value = match.group(1).lower(), match.group(2).strip()
        if key in ("host", "match"):
            if found is not None:
                return found
            inside = key == "host" and alias in value.split()
            if inside:
                found = []
            continue
        if inside and found is not None:
            found.append((key, value))
    return found
