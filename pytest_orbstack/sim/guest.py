"""What a namespace machine does when it boots, as its init system would: machine-id, sshd, cloud-init.

orbsim machines do not run systemd: their init only reaps orphans.  The few
boot-time jobs tests can observe on OrbStack are done here, right after the
machine's namespaces are up, by commands run in the machine as root:

- **machine-id**: an empty or missing ``/etc/machine-id`` gets a new random id
  (what systemd does on a first boot); a non-empty one is kept, so a clone of
  an unsealed machine shares its source's id, as on OrbStack.
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
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from . import fsutil, runner, ssh
from .fsutil import console

TYPE_CHECKING = False
if TYPE_CHECKING:
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

#: The ``USER@HOSTNAME`` passwd aliases (see the module docstring).  $1 = hostname.
ALIASES_SCRIPT = r"""awk -F: -v h="$1" '
  index($1, "@") { next }
  { print }
  $7 !~ /(nologin|false|sync)$/ {
    line = $1 "@" h; for (i = 2; i <= NF; i++) line = line ":" $i; alias[n++] = line
  }
  END { for (i = 0; i < n; i++) print alias[i] }' /etc/passwd > /etc/passwd.orbsim &&
  cat /etc/passwd.orbsim > /etc/passwd && rm -f /etc/passwd.orbsim
"""

#: machine-id, then the passwd aliases and sshd.  $1 = hostname.
BOOT_SCRIPT = (
    r"""set -u
if [ ! -s /etc/machine-id ]; then
  id=$(tr -d '-' < /proc/sys/kernel/random/uuid)
  printf '%s\n' "$id" > /etc/machine-id
  echo "orbsim: new machine-id $id"
fi
if [ -x /usr/sbin/sshd ] && [ -s /etc/ssh/orbsim_host_ed25519_key ]; then
"""
    + ALIASES_SCRIPT
    + r"""  mkdir -p /run/sshd && chmod 755 /run/sshd
  /usr/sbin/sshd -f /etc/ssh/orbsim_sshd_config -E /var/log/orbsim-sshd.log &&
    echo "orbsim: sshd listening on port 22"
fi
"""
)

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


def seed_nocloud(upper: Path, *, user_data: bytes, instance_id: str, hostname: str) -> None:
    """Write the NoCloud seed (user-data, meta-data) and orbsim's cloud.cfg into a machine's upper layer."""

    meta = f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n"
    fsutil.safe_write(upper, f"{NOCLOUD_SEED}/user-data", user_data, mode=0o600)
    fsutil.safe_write(upper, f"{NOCLOUD_SEED}/meta-data", meta.encode(), mode=0o600)
    fsutil.safe_write(upper, "etc/cloud/cloud.cfg.d/90_orbsim.cfg", CLOUD_CFG.encode())


def seeded(engine: MachineAccess, mdir: Path, pid: int) -> bool:

    return fsutil.safe_read(Path(f"/proc/{pid}/root"), f"{NOCLOUD_SEED}/meta-data") is not None


def on_boot(engine: MachineAccess, mdir: Path, *, hostname: str) -> None:
    """The boot jobs (see the module docstring); cloud-init failures only go to the console log."""

    try:
        keys = ssh.ensure_keys(engine.environ)
    except (OSError, runner.RunError) as exc:  # no sshd then; the machine still boots
        console(mdir, f"orbsim: warning: no ssh keys ({exc}): sshd not started")
        keys = None
    if keys is not None:
        _root_write(engine, mdir, "/etc/ssh/orbsim_host_ed25519_key", keys.host_key.read_bytes(), "600")
        _root_write(engine, mdir, "/etc/ssh/orbsim_authorized_keys", keys.client_pub.read_bytes(), "644")
        _root_write(engine, mdir, "/etc/ssh/orbsim_sshd_config", SSHD_CONFIG.encode(), "644")
    _in_machine(engine, mdir, ["/bin/sh", "-c", BOOT_SCRIPT, "orbsim-boot", hostname], SETUP_TIMEOUT)
    rt = engine.runtime(mdir)
    pid = rt.get("pid") if rt else None
    if isinstance(pid, int) and seeded(engine, mdir, pid):
        started = time.monotonic()
        code = _in_machine(engine, mdir, ["/bin/sh", "-c", CLOUD_INIT_SCRIPT], CLOUD_INIT_TIMEOUT)
        took = time.monotonic() - started
        if keys is not None:  # accounts cloud-init made get their alias too
            _in_machine(
                engine, mdir, ["/bin/sh", "-c", ALIASES_SCRIPT, "orbsim-aliases", hostname], SETUP_TIMEOUT
            )
        if code == 0:
            console(mdir, f"orbsim: cloud-init finished in {took:.0f}s")
        else:
            console(
                mdir,
                f"orbsim: warning: cloud-init failed (exit {code}): "
                "run `cloud-init status --long` in the machine",
            )


def renamed(engine: MachineAccess, mdir: Path, hostname: str) -> None:
    """A running machine got a new name: its ssh aliases follow."""
    _in_machine(engine, mdir, ["/bin/sh", "-c", ALIASES_SCRIPT, "orbsim-aliases", hostname], SETUP_TIMEOUT)


def _root_write(engine: MachineAccess, mdir: Path, path: str, data: bytes, mode: str) -> None:
    script = 'umask 077; cat > "$1.new" && chmod "$2" "$1.new" && mv -f "$1.new" "$1"'
    _in_machine(engine, mdir, ["/bin/sh", "-c", script, "orbsim-write", path, mode], SETUP_TIMEOUT, data)


def _in_machine(
    engine: MachineAccess, mdir: Path, argv: list[str], timeout: float, input: Optional[bytes] = None
) -> int:
    """Run ``argv`` as root in the machine; its output goes to the console log; the exit code."""

    cmd, env = engine.enter_argv(mdir, "root", "/", {}, argv)
    try:
        with open(mdir / "console.log", "ab") as log:
            res = runner.run(cmd, env=env, input=input, stdout=log, check=False, timeout=timeout)
            log.write(res.stderr.encode())
    except runner.RunError as exc:
        console(mdir, f"orbsim: {argv[0]} timed out after {timeout:.0f}s ({exc})")
        return 124
    return res.returncode
