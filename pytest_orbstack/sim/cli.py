"""orbsim's ``orbctl``: dispatch, errors, output and the helpers every command shares.

The command table is ``table.py``; the simple commands are ``basic.py``; the
life cycle (create, start, stop, delete, clone) is ``lifecycle.py``; ``run``,
``push`` and ``pull`` are ``runcmd.py``; orbsim's own commands ``simcmds.py``.
The machine registry is ``state.py``, the machines themselves the engine's
(``engine.py``).  Import cost matters (``orbsim run`` must stay fast): heavy
modules are imported inside the commands that need them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from . import version as versions
from .cobra import Command, HelpRequested, UsageError, check_nargs, parse_flags
from .state import Data, Record, Store, find

if TYPE_CHECKING:
    from .engine import Engine
    from .faults import Fault
    from .profile import Profile

ROOT = "orbctl"
SERVICE_PREFIX = "[-32098] "


class ServiceError(Exception):
    """An error of OrbStack's machine service: ``[-32098] <msg>`` on stderr, exit 1."""

    keeps_state = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Failure(Exception):
    """Any other failure: the message as is on stderr (or stdout), exit ``code``."""

    keeps_state = True

    def __init__(self, message: str, code: int = 1, *, stdout: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.stdout = stdout


class UnknownCommand(UsageError):
    """``unknown command "X" for "orbctl ..."``, as cobra's Find reports it."""

    def __init__(self, word: str, where: Command) -> None:
        super().__init__(f'unknown command "{word}" for "{where.path}"', None)
        self.where = where


class Ctx:
    """What a command needs: the registry, the emulated version, and lazily the engine and profile."""

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.store = Store.from_env()
        self.version = versions.current()
        self._engine: Optional[Engine] = None
        self._profile: Optional[Profile] = None
        self._faults: Optional[list[Fault]] = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from .engine import get_engine

            self._engine = get_engine()
        return self._engine

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            from .profile import Profile

            self._profile = Profile.from_env()
        return self._profile

    @property
    def faults(self) -> list[Fault]:
        if self._faults is None:
            if os.environ.get("ORBSIM_FAULTS", "").strip():
                from .faults import active

                self._faults = active()
            else:
                self._faults = []
        return self._faults

    def mdir(self, rec: Record) -> Path:
        return self.store.mdir(rec["id"])

    def not_found(self, ref: str) -> ServiceError:
        if versions.not_found_has_name(self.version):
            return ServiceError(f"machine not found: '{ref}'")
        return ServiceError("machine not found")


def out(text: str) -> None:
    sys.stdout.write(text)


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- records as orbctl shows them


def public_record(ctx: Ctx, rec: Record) -> dict[str, Any]:
    v = ctx.version
    config: dict[str, Any] = {"isolated": bool(rec.get("isolated", False))}
    if versions.config_has_username(v):
        config["default_username"] = rec["username"]
    if versions.has_isolated_flag(v):
        config["isolate_network"] = bool(rec.get("isolated", False))
        config["forward_ssh_agent"] = False
    if versions.has_limits(v):
        config["cpu_limit"] = rec.get("cpu_limit", 0)
        config["memory_limit_mib"] = rec.get("memory_limit_mib", 0)
        config["disk_limit_bytes"] = rec.get("disk_limit_bytes", 0)
    return {
        "id": rec["id"],
        "name": rec["name"],
        "image": {
            "distro": rec["distro"],
            "version": rec["version"],
            "arch": rec["arch"],
            "variant": rec["variant"],
        },
        "config": config,
        "builtin": False,
        "state": rec["state"],
    }


def info_object(ctx: Ctx, rec: Record) -> dict[str, Any]:
    import time

    record = public_record(ctx, rec)
    if not versions.info_wrapped(ctx.version):
        return record
    obj: dict[str, Any] = {"record": record, "disk_size": None}
    ip = rec.get("ip4")
    if rec["state"] == "running" and ip and not rec.get("no_ip") and time.time() >= rec.get("ip_at", 0):
        obj["ip4"] = ip
    return obj


# --------------------------------------------------------------------------- shared helpers


def reconcile(ctx: Ctx, data: Data) -> None:
    """Make the registry match reality (call with the lock held).

    A ``running`` machine whose init died outside orbsim is ``stopped``; a machine
    left in a transitional state by a dead orbsim process is settled: a create that
    died is deleted (as a failed create is), others end ``running`` or ``stopped``.
    """
    from .state import TRANSITIONAL, owner_alive, settle

    machines: dict[str, Record] = data["machines"]
    for mid, rec in list(machines.items()):
        state = rec["state"]
        if state in TRANSITIONAL:
            if owner_alive(rec):
                continue
            if state in ("creating", "provisioning", "deleting"):
                ctx.engine.destroy(ctx.mdir(rec))
                del machines[mid]
                if data.get("default") == mid:
                    data["default"] = None
                continue
            alive = ctx.engine.running(ctx.mdir(rec))
            if not alive:
                ctx.engine.halt(ctx.mdir(rec))
            settle(rec, "running" if alive else "stopped")
        elif state == "running" and not ctx.engine.running(ctx.mdir(rec)):
            ctx.engine.halt(ctx.mdir(rec))
            settle(rec, "stopped")
            rec.pop("ip4", None)


def lookup(ctx: Ctx, data: Data, ref: str) -> Record:
    rec = find(data, ref)
    if rec is None:
        raise ctx.not_found(ref)
    return rec


GENERIC_KINDS = frozenset({"stall", "service-timeout", "vm-timeout"})
OWN_KINDS = frozenset(
    {
        "setup-timeout",
        "setup-timeout-keep",
        "download-502",
        "hang",
        "conflict",
        "error",
        "no-ip",
        "download-stall",
        "undeletable",
    }
)
ORBSIM_ONLY = frozenset({"shims", "reset", "image", "timeline", "ssh-config", "ssh-proxy"})
NO_VM_START = frozenset({"status", "version", "stop", "restart"})


def gate_faults(ctx: Ctx, op: str, names: Sequence[str] = ()) -> None:
    """The faults every op shares (OrbStack stopped, service timeouts, stalls), before any work.

    Runs before the command takes the lock for its own work, so a stall blocks nobody else.
    """
    if not ctx.faults or op in ("status", "version"):
        return
    from .faults import take

    with ctx.store.locked() as data:
        vm = None if op in NO_VM_START else take(data, ctx.faults, "vm", names, frozenset({"stopped"}))
        fault = take(data, ctx.faults, op, names, GENERIC_KINDS) if vm is None else None
    if vm is not None:
        ctx.profile.sleep("vm_start")
        raise Failure("start VM: timed out waiting for VM to start")
    if fault is not None:
        import time

        if fault.kind == "stall":
            time.sleep(fault.seconds())
        elif fault.kind == "service-timeout":
            raise Failure("timed out waiting for services to start")
        else:
            raise Failure("start VM: timed out waiting for VM to start")


def vm_gate(ctx: Ctx, data: Data, op: str, names: Sequence[str] = ()) -> Optional[Fault]:
    """OrbStack is started on demand; returns the op's own fault (create's, a conflict), if any.

    Call with the lock held.
    """
    if data.get("vm") == "stopped":
        data["vm"] = "running"
    return own_fault(ctx, data, op, names)


def own_fault(ctx: Ctx, data: Data, op: str, names: Sequence[str] = ()) -> Optional[Fault]:
    if not ctx.faults or not op:
        return None
    from .faults import take

    return take(data, ctx.faults, op, names, OWN_KINDS)


def fault_error(fault: Optional[Fault], rec: Optional[Record], target: str) -> None:
    """Raise the error of a ``conflict``/``error`` fault, if that is what ``fault`` is."""
    if fault is None:
        return
    name = rec["name"] if rec else ""
    if fault.kind == "conflict":
        source = fault.arg or (rec["state"] if rec else "creating")
        raise ServiceError(f"cannot transition from {source} to {target}")
    if fault.kind == "error":
        raise ServiceError((fault.arg or "injected failure").replace("{name}", name))


def default_username() -> str:
    """``$ORBSIM_USER``, else ``$SUDO_USER``, else the invoking user's login name."""
    for key in ("ORBSIM_USER", "SUDO_USER"):
        value = os.environ.get(key, "").strip()
        if value:
            return value
    import getpass

    return getpass.getuser()


#: The commands of this invocation by name, filled by ``table.build_root``.
COMMANDS: dict[str, Command] = {}


# --------------------------------------------------------------------------- entry


def resolve(root: Command, prog: str, argv: list[str]) -> tuple[Command, list[str]]:
    """The command to run and its arguments (``orb WORD`` falls back to ``run``)."""
    if prog == "orb" and (not argv or root.find(argv[0]) is None) and argv[:1] not in (["-h"], ["--help"]):
        return COMMANDS["run"], argv
    cmd = root
    rest = list(argv)
    while cmd.subcommands and rest and not rest[0].startswith("-"):
        sub = cmd.find(rest[0])
        if sub is None:
            raise UnknownCommand(rest[0], cmd)
        cmd = sub
        rest.pop(0)
    return cmd, rest


def main(argv: list[str], prog: str = "orbsim") -> int:
    try:
        from .table import build_root

        ctx = Ctx(prog)
        root = build_root(prog, ctx.version)
        cmd, rest = resolve(root, prog, argv)
        if cmd is COMMANDS["run"]:
            from .runcmd import cmd_run

            return cmd_run(ctx, rest)
        opts, args = parse_flags(cmd, rest)
        if cmd.run is None:
            if args:
                raise UnknownCommand(args[0], cmd)
            raise HelpRequested(cmd)
        check_nargs(cmd, args)
        if cmd.parent is COMMANDS.get("config"):
            gate_faults(ctx, "config", args)
        elif cmd.name not in ORBSIM_ONLY and COMMANDS.get(cmd.name) is cmd:
            gate_faults(ctx, cmd.name, args)
        return cmd.run(ctx, opts, args)
    except HelpRequested as exc:
        out(exc.command.short + "\n\n" + exc.command.usage())
        return 0
    except UnknownCommand as exc:
        # cobra's Find error: no usage block, a pointer to the help instead
        sys.stderr.write(f"Error: {exc.message}\nRun '{exc.where.path} --help' for usage.\n")
        return 1
    except UsageError as exc:
        if exc.command is None:
            sys.stderr.write(f"Error: {exc.message}\n")
        else:
            sys.stderr.write(f"Error: {exc.message}\n{exc.command.usage()}\n")
        return 1
    except ServiceError as exc:
        sys.stderr.write(SERVICE_PREFIX + exc.message + "\n")
        return 1
    except Failure as exc:
        (sys.stdout if exc.stdout else sys.stderr).write(exc.message + "\n")
        return exc.code
    except ValueError as exc:
        if type(exc).__name__ not in ("VersionError", "ProfileError", "FaultSyntaxError"):
            raise
        sys.stderr.write(f"orbsim: {exc}\n")  # a bad ORBSIM_* setting
        return 1
    except Exception as exc:
        from .engine import EngineError

        if isinstance(exc, EngineError):
            sys.stderr.write(f"orbsim: {exc}\n")
            return 1
        raise
