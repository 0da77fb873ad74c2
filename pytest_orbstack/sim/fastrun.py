"""``orbctl run`` without loading the CLI: the start-up path of the common case.

Every ``orb_vm.run`` on Linux is one orbsim process, so ``orbsim run -m M CMD``
into a running machine imports only ``os``, ``sys``, ``time``, ``select``, ``enter`` and
``relay`` (``python -X importtime`` shows it), reads the registry without its
lock (``state.json`` is replaced atomically, so any read is a consistent
snapshot) and enters the machine with setns (``enter.py``).

Anything else returns None and the full CLI (``cli.py``/``runcmd.py``) runs the
command from the start, with its checks and errors: help, a flag it does not
know, a stopped, starting or unknown machine, OrbStack "stopped", a user
other than root or the machine's default user, faults (``ORBSIM_FAULTS``),
``ORBSIM_VERSION``, ``ORBSIM_MODE=plain``, no root or no setns.  What this path
does is what ``runcmd.cmd_run`` does for a running machine.
"""

from __future__ import annotations

import os
import time

from . import enter, relay
from .jsontext import load_object

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Optional

#: run's flags that take a value, and the option each sets.
RUN_FLAGS = {
    "-m": "machine",
    "--machine": "machine",
    "-u": "user",
    "--user": "user",
    "-w": "workdir",
    "--workdir": "workdir",
}


def home_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    """``$ORBSIM_HOME``, else ``$XDG_DATA_HOME/orbsim``, else ``~/.local/share/orbsim``."""
    env = os.environ if environ is None else environ
    explicit = env.get("ORBSIM_HOME")
    if explicit:
        return explicit
    xdg = env.get("XDG_DATA_HOME")
    base = xdg if xdg else os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "orbsim")


def scan_run(argv: list[str]) -> tuple[dict[str, str], bool, list[str], Optional[tuple[str, str]]]:
    """(options, shell flag, command, trouble) from run's argv, as ``runcmd.parse_run`` reads it.

    ``trouble`` is None, or what stopped the scan: ``("help", word)``, ``("unknown", word)``
    or ``("needs-value", flag)``.
    """
    opts: dict[str, str] = {}
    shell = False
    rest = list(argv)
    while rest and rest[0].startswith("-") and rest[0] != "-":
        word = rest.pop(0)
        name, eq, value = word.partition("=")
        if name in ("-h", "--help"):
            return opts, shell, rest, ("help", word)
        if name in ("-s", "--shell") and not eq:
            shell = True
        elif name in RUN_FLAGS:
            if not eq:
                if not rest:
                    return opts, shell, rest, ("needs-value", name)
                value = rest.pop(0)
            opts[RUN_FLAGS[name]] = value
        else:
            return opts, shell, rest, ("unknown", word)
    return opts, shell, rest, None


def _machine(data: dict[str, Any], ref: Optional[str]) -> Optional[dict[str, Any]]:
    """``state.find`` / ``common.default_machine`` (None where those report an error)."""
    machines = data.get("machines")
    if not isinstance(machines, dict):
        return None
    if ref is None:
        chosen = data.get("default")
        if chosen and chosen in machines:
            return machines[chosen]  # type: ignore[no-any-return]
        recs = sorted(machines.values(), key=lambda r: (r.get("created_at", 0), r["name"]))
        return recs[0] if recs else None
    if ref in machines:
        return machines[ref]  # type: ignore[no-any-return]
    for rec in machines.values():
        if rec.get("name") == ref:
            return rec  # type: ignore[no-any-return]
    return None


def run(argv: list[str]) -> Optional[int]:
    """``orbctl run ARGV`` into a running machine; None: the full CLI must handle it."""
    env = os.environ
    if env.get("ORBSIM_FAULTS", "").strip() or env.get("ORBSIM_VERSION", ""):
        return None
    if env.get("ORBSIM_MODE", "").strip().lower() not in ("", "namespace", "isolated"):
        return None
    if not enter.available():
        return None
    opts, shell, command, trouble = scan_run(argv)
    if trouble is not None:  # the full CLI reports it
        return None
    root = home_dir()
    data = load_object(os.path.join(root, "state.json"))
    if data is None or data.get("vm", "running") != "running":
        return None
    rec = _machine(data, opts.get("machine"))
    if rec is None or rec.get("state") != "running" or not isinstance(rec.get("id"), str):
        return None
    mdir = os.path.join(root, "machines", rec["id"])
    runtime = load_object(os.path.join(mdir, "runtime.json"))
    info = load_object(os.path.join(mdir, "engine.json"))
    if runtime is None or info is None:
        return None
    pid, start = runtime.get("pid"), runtime.get("start")
    if not isinstance(pid, int) or not isinstance(start, int):
        return None
    user = opts.get("user") or rec.get("username")
    if not isinstance(user, str):
        return None
    if user == "root":
        uid, gid, home = 0, 0, "/root"
    elif user == info.get("username") and all(isinstance(info.get(k), int) for k in ("uid", "gid")):
        uid, gid, home = info["uid"], info["gid"], f"/home/{user}"
    else:
        return None  # another user: looked up in the machine's /etc/passwd by the engine
    command, workdir = command_and_workdir(opts, shell, command)
    delay = 0.0
    if not _instant(env):
        from .profile import Profile  # not for the instant profile (start-up time)

        try:
            delay = Profile.from_env().delay("run")
        except ValueError:
            return None
    entry = enter.prepare(pid, start, uid, gid, workdir)
    if entry is None:
        return None
    if delay > 0:
        time.sleep(delay)
    full_env = enter.command_env(user, uid, home, forwarded_env())
    code = relay.interactive(command, full_env, exec_ok=False, entry=entry)
    return 128 - code if code < 0 else code


def _instant(env: Mapping[str, str]) -> bool:
    """The ``instant`` profile with a valid scale: no delay, and no need to load ``profile.py``."""
    if (env.get("ORBSIM_PROFILE", "") or "instant").strip().lower() != "instant":
        return False
    try:
        return float(env.get("ORBSIM_SCALE", "") or "1") >= 0
    except ValueError:
        return False


def forwarded_env() -> dict[str, str]:
    """``runcmd.forwarded_env``: the variables named in ``ORBENV``."""
    names = [n for n in os.environ.get("ORBENV", "").split(":") if n]
    return {n: os.environ[n] for n in names if n in os.environ}


def command_and_workdir(opts: dict[str, str], shell: bool, command: list[str]) -> tuple[list[str], str]:
    """What ``run`` executes (``-s`` joins the words for ``sh -lc``; none: a login shell) and where:
    ``-w``, else orbsim's own current directory (OrbStack: the Mac's), else ``/``."""
    if shell:
        command = ["/bin/sh", "-lc", " ".join(command)]
    elif not command:
        command = ["/bin/sh", "-l"]
    workdir = opts.get("workdir")
    if workdir is None:
        try:
            workdir = os.getcwd()
        except OSError:
            workdir = "/"
    return command, workdir
