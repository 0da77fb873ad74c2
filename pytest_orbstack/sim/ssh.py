"""SSH to orbsim machines: the keys and the ssh config of one ``$ORBSIM_HOME``, and the proxy.

OrbStack runs one SSH server for every machine (``localhost:32222``), logs in
with ``~/.orbstack/ssh/id_ed25519`` and writes ``Host orb`` into
``~/.orbstack/ssh/config`` with a ``ProxyCommand`` through its helper
(``ssh-proxy-fdpass``, ``ProxyUseFdpass yes``).  orbsim writes the same kind of
file, ``$ORBSIM_HOME/ssh/config``:

- ``IdentityFile $ORBSIM_HOME/ssh/id_ed25519``: the client key, made once per
  home, authorized in every machine of that home;
- ``ProxyCommand ... orbsim ssh-proxy %r`` with ``ProxyUseFdpass yes``: the
  proxy reads the machine name out of ``USER@MACHINE``, connects to port 22
  of that machine's address and hands the connected socket to ``ssh``, then
  exits (no relay process stays behind);
- ``HostKeyAlias orb`` and ``UserKnownHostsFile $ORBSIM_HOME/ssh/known_hosts``
  holding the home's host key (every machine of the home serves it, as
  OrbStack's one server does): host keys are checked for real.

``HostName 127.0.0.1`` and ``Port 32222`` are OrbStack's values; the proxy
makes them unused.  Only the ``USER@MACHINE@orb`` form works on orbsim
(``MACHINE@orb`` and ``orb`` alone, which OrbStack maps to the default
user and machine, reach no account).
"""

from __future__ import annotations

import os
import sys

from . import fsutil, runner
from .state import home

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

PORT = 22
CONNECT_TIMEOUT = 10.0


class Keys:
    """The files of one home's ``ssh/`` directory (plain strings: every boot reads them, and
    ``pathlib`` costs start-up time)."""

    __slots__ = ("client_key", "client_pub", "config", "dir", "host_key")

    def __init__(self, d: str) -> None:
        #: the directory
        self.dir = d
        #: host private key installed in every machine
        self.host_key = os.path.join(d, "host_ed25519_key")
        #: client private key (``IdentityFile``)
        self.client_key = os.path.join(d, "id_ed25519")
        #: its public half, authorized in every machine
        self.client_pub = os.path.join(d, "id_ed25519.pub")
        #: the ssh config with ``Host orb``
        self.config = os.path.join(d, "config")

    def ready(self) -> bool:
        return all(os.path.isfile(p) for p in (self.config, self.client_pub, self.host_key))


def ssh_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    return os.path.join(home(environ), "ssh")


def config_text(d: str, python: str) -> str:
    import shlex  # start-up time: only the first boot of a home writes the config

    parent = os.path.dirname(d)
    proxy = shlex.join(["env", f"ORBSIM_HOME={parent}", python, "-m", "pytest_orbstack.sim", "ssh-proxy"])
    return (
        "# Written by orbsim: the equivalent of OrbStack's ~/.orbstack/ssh/config for the machines\n"
        f"# of ORBSIM_HOME={parent}.  Use: ssh -F {os.path.join(d, 'config')} USER@MACHINE@orb\n"
        "Host orb\n"
        "  HostName 127.0.0.1\n"
        "  Port 32222\n"
        "  User default\n"
        f'  IdentityFile "{os.path.join(d, "id_ed25519")}"\n'
        "  IdentitiesOnly yes\n"
        f"  ProxyCommand {proxy} %r\n"
        "  ProxyUseFdpass yes\n"
        "  HostKeyAlias orb\n"
        f'  UserKnownHostsFile "{os.path.join(d, "known_hosts")}"\n'
        "  StrictHostKeyChecking yes\n"
    )


def ensure_keys(environ: Optional[Mapping[str, str]] = None) -> Optional[Keys]:
    """Make this home's keys, known_hosts and config once; None when the host has no ``ssh-keygen``."""

    d = ssh_dir(environ)
    keys = Keys(d)
    if keys.ready():
        return keys
    import shutil  # start-up time: only the first boot of a home makes the keys

    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        return None
    os.makedirs(d, mode=0o700, exist_ok=True)
    with fsutil.flocked(os.path.join(d, ".lock")):
        if os.path.isfile(keys.config):
            return keys
        for key, comment in ((keys.host_key, "orbsim-host"), (keys.client_key, "orbsim")):
            if not os.path.isfile(key):
                argv = [keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", key]
                runner.run(argv, timeout=60)
        with open(f"{keys.host_key}.pub", encoding="utf-8") as fh:
            host_pub = fh.read().split()
        with open(os.path.join(d, "known_hosts"), "w", encoding="utf-8") as fh:
            fh.write(f"orb {host_pub[0]} {host_pub[1]}\n")
        tmp = os.path.join(d, f".config.{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(config_text(d, sys.executable))
        os.replace(tmp, keys.config)
    return keys


def proxy(machine_ip: str, out_fd: int = 1) -> None:
    """Connect to the machine's sshd and pass the socket to ``ssh`` over ``out_fd`` (ProxyUseFdpass)."""
    import socket  # start-up time: only ``orbsim ssh-proxy`` connects

    conn = socket.create_connection((machine_ip, PORT), timeout=CONNECT_TIMEOUT)
    try:
        channel = socket.socket(fileno=os.dup(out_fd))
        try:
            socket.send_fds(channel, [b"\0"], [conn.fileno()])
        finally:
            channel.close()
    finally:
        conn.close()


def machine_of(remote_user: str) -> Optional[str]:
    """``alice@m1`` -> ``m1``; a bare name (``m1`` or a user) -> None (OrbStack's default machine)."""
    if "@" not in remote_user:
        return None
    return remote_user.rsplit("@", 1)[1] or None
