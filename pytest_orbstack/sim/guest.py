"""What a namespace machine does when it boots, as its init system would: machine-id, sshd, cloud-init.

orbsim machines do not run systemd: their init only reaps orphans.  The few
boot-time jobs tests can observe on OrbStack are done here, right after the
machine's namespaces are up.  File work is done from the host through the
init's root (``/proc/PID/root``), with :mod:`fsutil`'s symlink-proof writes;
only programs run in the machine as root (sshd, cloud-init):

- **machine-id**: an empty or missing ``/etc/machine-id`` gets a new random id,
  mode 0444 (what systemd does on a first boot); a non-empty one is kept, so a
  clone of an unsealed machine shares its source's id, as on OrbStack.
- **sshd**: the image's OpenSSH server, on port 22 of the machine's address,
  with the host key and authorized key of this ``$ORBSIM_HOME``
  (``ssh.py``).  OrbStack multiplexes ``USER@MACHINE@orb`` on one server; here
  the ssh config orbsim writes sends every connection to the named machine's
  sshd, so the login name that reaches it is ``USER@MACHINE``.  Each boot
  therefore adds, for every account with a login shell (root, the default
  user, users made by cloud-init), a passwd alias ``USER@HOSTNAME`` with the
  account's UID, GID, home and shell (and drops aliases of an older
  hostname): the session runs as that account.
- **cloud-init** (machines created with ``-c``, i.e. seeded by
  :func:`seed_nocloud`): its four stages, in the order systemd would run them
  (``init --local``, ``init``, ``modules --mode=config``, ``modules
  --mode=final``).  ``cloud-init status --wait --long`` in the machine then
  reports the real result.  Machines have no internet: ``packages:`` fails.

Output of these jobs goes to the machine's console log (``orbctl logs``).
Start-up time: a boot used to run ~25 short programs in the machine for this
file work (sh, cat, chmod, mv, awk, ...); from the host it costs none.
"""

from __future__ import annotations

import os
import stat
import time

from . import fsutil, runner, ssh
from .fsutil import console

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    from .engineapi import MachineAccess

#: Seed directory of cloud-init's NoCloud datasource.
NOCLOUD_SEED = "var/lib/cloud/seed/nocloud"
#: cloud-init settings of every seeded machine: only NoCloud, no network
#: configuration (orbsim configures the machine's address itself), and a
#: locale the image has (cloud-init's default, en_US.UTF-8, is not generated).
CLOUD_CFG = """# Written by orbsim: the NoCloud seed only; orbsim sets up the network.
datasource_list: [NoCloud, None]
network: {config: disabled}
# The image generates no locale: C.UTF-8 is built in (user-data may set another one).
locale: C.UTF-8
"""
CLOUD_INIT_TIMEOUT = 900.0
SETUP_TIMEOUT = 60.0

#: Login shells that make no account reachable by ssh (their accounts get no alias).
NO_LOGIN = (b"nologin", b"false", b"sync")
#: sshd's files in the machine: (path, mode).
SSHD_FILES = {
    "host_key": ("etc/ssh/orbsim_host_ed25519_key", 0o600),
    "authorized": ("etc/ssh/orbsim_authorized_keys", 0o644),
    "config": ("etc/ssh/orbsim_sshd_config", 0o644),
}
SSHD = ["/usr/sbin/sshd", "-f", "/etc/ssh/orbsim_sshd_config", "-E", "/var/log/orbsim-sshd.log"]

SSHD_CONFIG = """# Written by orbsim: the server `ssh -F $ORBSIM_HOME/ssh/config USER@MACHINE@orb` reaches.
Port 22
HostKey /etc/ssh/orbsim_host_ed25519_key
AuthorizedKeysFile /etc/ssh/orbsim_authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
PidFile /run/orbsim-sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
AcceptEnv LANG LC_*
"""

CLOUD_INIT_SCRIPT = r"""cloud-init init --local && cloud-init init && cloud-init modules --mode=config &&
cloud-init modules --mode=final
"""


def seed_nocloud(upper: str, *, user_data: bytes, instance_id: str, hostname: str) -> None:
    """Write the NoCloud seed (user-data, meta-data) and orbsim's cloud.cfg into a machine's upper layer."""

    meta = f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n"
    fsutil.safe_write(upper, f"{NOCLOUD_SEED}/user-data", user_data, mode=0o600)
    fsutil.safe_write(upper, f"{NOCLOUD_SEED}/meta-data", meta.encode(), mode=0o600)
    fsutil.safe_write(upper, "etc/cloud/cloud.cfg.d/90_orbsim.cfg", CLOUD_CFG.encode())


def on_boot(engine: MachineAccess, mdir: str, *, hostname: str) -> None:
    """The boot jobs (see the module docstring); cloud-init failures only go to the console log."""

    try:
        keys = ssh.ensure_keys(engine.environ)
    except (OSError, runner.RunError) as exc:  # no sshd then; the machine still boots
        console(mdir, f"orbsim: warning: no ssh keys ({exc}): sshd not started")
        keys = None
    sshd = seed = False
    try:
        with _MachineRoot(engine, mdir) as root:
            if root is None:
                return  # stopped meanwhile: nothing to set up
            seed = fsutil.safe_read(root, f"{NOCLOUD_SEED}/meta-data") is not None
            _machine_id(root, mdir)
            if keys is not None and _is_executable(root, SSHD[0]):
                files = {"host_key": _read(keys.host_key), "authorized": _read(keys.client_pub)}
                for key, data in {**files, "config": SSHD_CONFIG.encode()}.items():
                    path, mode = SSHD_FILES[key]
                    fsutil.safe_write(root, path, data, mode=mode)
                write_aliases(root, hostname)
                fsutil.safe_mkdir(root, "run/sshd", 0o755)
                sshd = True
    except (OSError, ValueError) as exc:  # a symlink where a system file should be: boot without it
        console(mdir, f"orbsim: warning: boot setup failed ({exc}): sshd not started")
        sshd = False
    if sshd and _in_machine(engine, mdir, SSHD, SETUP_TIMEOUT) == 0:
        console(mdir, "orbsim: sshd listening on port 22")
    if seed:
        started = time.monotonic()
        code = _in_machine(engine, mdir, ["/bin/sh", "-c", CLOUD_INIT_SCRIPT], CLOUD_INIT_TIMEOUT)
        took = time.monotonic() - started
        if sshd:  # accounts cloud-init made get their alias too
            renamed(engine, mdir, hostname)
        if code == 0:
            console(mdir, f"orbsim: cloud-init finished in {took:.0f}s")
        else:
            console(
                mdir,
                f"orbsim: warning: cloud-init failed (exit {code}): "
                "run `cloud-init status --long` in the machine",
            )


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def renamed(engine: MachineAccess, mdir: str, hostname: str) -> None:
    """A running machine got a new name (or new accounts): its ssh aliases follow."""
    try:
        with _MachineRoot(engine, mdir) as root:
            if root is not None:
                write_aliases(root, hostname)
    except (OSError, ValueError) as exc:
        console(mdir, f"orbsim: warning: ssh aliases not written ({exc})")


class _MachineRoot:
    """The running machine's root as a path that stays bound to its init (``/proc/self/fd/N``), or None.

    The init's root is opened once and the init checked again afterwards, so a pid reused by a
    host process after the machine stopped can never turn the writes towards the host's root.
    """

    def __init__(self, engine: MachineAccess, mdir: str) -> None:
        self._engine, self._mdir = engine, mdir
        self._fd: Optional[int] = None

    def __enter__(self) -> Optional[str]:
        rt = self._engine.runtime(self._mdir)
        pid = rt.get("pid") if rt else None
        if not isinstance(pid, int):
            return None
        self._fd = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
        again = self._engine.runtime(self._mdir)
        if again is None or again.get("pid") != pid:  # exited (or replaced) before the open
            return None
        return f"/proc/self/fd/{self._fd}"

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)


def _machine_id(root: str, mdir: str) -> None:
    """A new random ``/etc/machine-id`` when it is missing or empty (systemd's first boot).

    A symlink there is left alone (systemd would follow it; orbsim writes through none)."""
    found = fsutil.safe_stat(root, "etc/machine-id")
    if found is not None and (stat.S_ISLNK(found.st_mode) or found.st_size > 0):
        return
    with open("/proc/sys/kernel/random/uuid", encoding="ascii") as fh:  # a version 4 UUID, as before
        new = fh.read().strip().replace("-", "")
    fsutil.safe_write(root, "etc/machine-id", f"{new}\n".encode(), mode=0o444)
    console(mdir, f"orbsim: new machine-id {new}")


def _is_executable(root: str, path: str) -> bool:
    found = fsutil.safe_stat(root, path)
    return found is not None and stat.S_ISREG(found.st_mode) and bool(found.st_mode & 0o111)


def aliases(passwd: bytes, hostname: str) -> bytes:
    """``passwd`` without its ``USER@HOST`` lines, then a ``USER@HOSTNAME`` alias of every login account.

    Bytes, split on newlines only: a GECOS field may hold any other byte, kept as it is."""
    kept: list[bytes] = []
    added: list[bytes] = []
    for line in passwd.split(b"\n"):
        if not line:
            continue
        fields = line.split(b":")
        if b"@" in fields[0]:
            continue
        kept.append(line)
        shell = fields[6] if len(fields) > 6 else b""
        if not shell.endswith(NO_LOGIN):
            added.append(b":".join([fields[0] + b"@" + hostname.encode(), *fields[1:]]))
    return b"".join(line + b"\n" for line in kept + added)


def write_aliases(root: str, hostname: str) -> None:
    """Rewrite the machine's ``/etc/passwd`` with the aliases of ``hostname`` (see :func:`aliases`);
    the file keeps its mode and owner."""
    found = fsutil.safe_stat(root, "etc/passwd")
    passwd = fsutil.safe_read(root, "etc/passwd")
    if found is None or passwd is None:
        return
    fsutil.safe_write(
        root,
        "etc/passwd",
        aliases(passwd, hostname),
        mode=stat.S_IMODE(found.st_mode),
        uid=found.st_uid,
        gid=found.st_gid,
    )


def _in_machine(engine: MachineAccess, mdir: str, argv: list[str], timeout: float) -> int:
    """Run ``argv`` as root in the machine; its output goes to the console log; the exit code."""

    cmd, env = engine.enter_argv(mdir, "root", "/", {}, argv)
    try:
        with open(os.path.join(mdir, "console.log"), "ab") as log:
            res = runner.run(cmd, env=env, stdout=log, check=False, timeout=timeout)
            log.write(res.stderr.encode())
    except runner.RunError as exc:
        console(mdir, f"orbsim: {argv[0]} timed out after {timeout:.0f}s ({exc})")
        return 124
    return res.returncode
