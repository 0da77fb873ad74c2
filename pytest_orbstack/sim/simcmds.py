"""orbsim's own commands (only when invoked as ``orbsim``): shims, reset, image, timeline, ssh.

Start-up time: every orbctl command loads this module (``table.py``); the image,
ssh and network modules it uses (``hashlib``, ``tempfile``, ``socket``,
``subprocess``) are imported by the commands that need them.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

from .common import Ctx, ServiceError, dump_json, lookup, out, reconcile
from .state import by_name, empty

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .cobra import Opts

# ``python -I -S``: no site (an editable install's import hook alone costs more than
# orbsim's own start-up), no PYTHON* variables, no user site; the directory that
# holds this pytest_orbstack is the one sys.path entry added.  orbsim uses only
# the standard library.
SHIM = """{shebang}
# Written by `orbsim shims`: runs orbsim as {name}.
import sys

sys.path.insert(0, {root!r})
from pytest_orbstack.sim.__main__ import main

sys.exit(main(prog={name!r}))
"""

#: Linux reads at most this many bytes of a ``#!`` line (longer ones go through /bin/sh).
SHEBANG_MAX = 255

# A file both /bin/sh and Python read: sh execs Python on it, Python sees a string.
TRAMPOLINE = "#!/bin/sh\n'''exec' {python} -I -S \"$0\" \"$@\"\n' '''"


def shebang(python: str) -> str:
    """``#!PYTHON -IS``; a /bin/sh trampoline when PYTHON is too long or has spaces for a ``#!`` line."""
    line = f"#!{python} -IS"
    if len(line.encode()) <= SHEBANG_MAX and not any(c.isspace() for c in python):
        return line
    return TRAMPOLINE.format(python=shlex.quote(python))


def write_launcher(path: Path, name: str) -> None:
    """Write ``path``: an executable that is this orbsim invoked as ``name`` (orbctl, orb, orbsim)."""
    root = str(Path(__file__).resolve().parents[2])
    text = SHIM.format(shebang=shebang(sys.executable), root=root, name=name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, path)


def cmd_shims(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    """Write ``DIR/orbctl`` and ``DIR/orb``, executables that are orbsim answering as orbctl."""
    target = Path(args[0])
    target.mkdir(parents=True, exist_ok=True)
    for name in ("orbctl", "orb"):
        write_launcher(target / name, name)
    return 0


def cmd_reset(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    """Delete every machine of this ``$ORBSIM_HOME`` and forget its state (fault counters too)."""
    with ctx.store.locked() as data:
        for rec in list(data["machines"].values()):
            ctx.engine.destroy(ctx.mdir(rec))
        data.clear()  # type: ignore[attr-defined]  # old keys of other versions go too
        data.update(empty())
    machines = ctx.store.machines_dir
    if os.path.isdir(machines):
        for leftover in sorted(os.listdir(machines)):
            ctx.engine.destroy(os.path.join(machines, leftover))
    from . import network  # start-up time: see the module docstring

    network.cleanup_if_unused()
    return 0


def cmd_image_build(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    from . import rootfs  # start-up time: see the module docstring

    rootfs.build(force=bool(opts.get("force")), progress=rootfs.to_stderr)
    return 0


def cmd_image_key(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    from . import rootfs  # start-up time: see the module docstring

    out(rootfs.key() + "\n")
    return 0


def cmd_image_status(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    from . import rootfs  # start-up time: see the module docstring

    status = rootfs.status()
    out(dump_json(status))
    return 0 if status.get("ready") else 1


TIMES = ("created_at", "started_at", "ready_at", "ip_at", "stopped_at")


def cmd_timeline(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    """Per machine: id, name, state and the UNIX times it was created, started, ready, got its IP."""
    with ctx.store.locked() as data:
        reconcile(ctx, data)
        recs = [lookup(ctx, data, ref) for ref in args] if args else by_name(data)
    now = time.time()
    rows = []
    for rec in recs:
        row: dict[str, object] = {"id": rec["id"], "name": rec["name"], "state": rec["state"]}
        row.update({key: rec.get(key) for key in TIMES})
        ip_at = rec.get("ip_at")
        row["ip_visible"] = (
            bool(rec.get("ip4")) and rec["state"] == "running" and ip_at is not None and now >= ip_at
        )
        rows.append(row)
    out(json.dumps(rows, indent=2) + "\n")
    return 0


def cmd_ssh_config(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    """Print the path of this home's ssh config (``Host orb``), making keys and config on first use."""
    from . import ssh  # start-up time: see the module docstring

    keys = ssh.ensure_keys()
    if keys is None:
        sys.stderr.write("orbsim: ssh-keygen is not installed: install openssh-client\n")
        return 1
    out(f"{keys.config}\n")
    return 0


def cmd_ssh_proxy(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    """``ProxyCommand`` of the ssh config: hand ssh a socket connected to the machine's sshd."""
    from . import ssh  # start-up time: see the module docstring

    name = ssh.machine_of(args[0])
    with ctx.store.locked() as data:
        reconcile(ctx, data)
        if name is None:
            default = data.get("default")
            rec = data["machines"].get(default) if default else None
            if rec is None:
                raise ServiceError("no default machine: use ssh USER@MACHINE@orb")
        else:
            rec = lookup(ctx, data, name)
        ip = rec.get("ip4") if rec["state"] == "running" else None
    if not ip:
        raise ServiceError(f"machine {rec['name']!r} is not running: start it first")
    try:
        ssh.proxy(str(ip))
    except OSError as exc:
        raise ServiceError(f"cannot reach sshd of machine {rec['name']!r} at {ip}:22: {exc}") from None
    return 0
