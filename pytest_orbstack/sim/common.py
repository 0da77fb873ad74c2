"""What every orbctl command shares: its context, the service's errors, lookups and the fault gates.

The commands (``basic.py``, ``lifecycle.py``, ``create.py``, ``runcmd.py``,
``simcmds.py``) import this module; ``table.py`` puts them in the command tree
and ``cli.py`` dispatches to them.  Nothing here imports a command module.
"""

from __future__ import annotations

import os
import sys
import time

from . import version as versions
from .cobra import Command
from .engine import get_engine
from .faults import Fault, active, take
from .jsontext import dumps
from .profile import Profile
from .state import TRANSITIONAL, Store, find, owner_alive, settle

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Optional

    from .engineapi import Engine
    from .state import Data, Record

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


class Ctx:
    """What a command needs: the command itself, the registry, the emulated version, and lazily
    the engine, profile and faults (each read from the environment on first use)."""

    def __init__(self, prog: str, version: versions.Version, command: Command) -> None:
        self.prog = prog
        #: the command being run (its usage goes with a usage error)
        self.command = command
        self.store = Store.from_env()
        self.version = version
        self._engine: Optional[Engine] = None
        self._profile: Optional[Profile] = None
        self._faults: Optional[list[Fault]] = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = get_engine()
        return self._engine

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            self._profile = Profile.from_env()
        return self._profile

    @property
    def faults(self) -> list[Fault]:
        if self._faults is None:
            self._faults = active() if os.environ.get("ORBSIM_FAULTS", "").strip() else []
        return self._faults

    def mdir(self, rec: Record) -> str:
        return self.store.mdir(rec["id"])

    def not_found(self, ref: str) -> ServiceError:
        if versions.not_found_has_name(self.version):
            return ServiceError(f"machine not found: '{ref}'")
        return ServiceError("machine not found")


def out(text: str) -> None:
    sys.stdout.write(text)


def dump_json(value: Any) -> str:
    return dumps(value, indent=2) + "\n"


# --------------------------------------------------------------------------- the registry against reality


def reconcile(ctx: Ctx, data: Data) -> None:
    """Make the registry match reality (call with the lock held).

    A ``running`` machine whose init died outside orbsim is ``stopped``; a machine
    left in a transitional state by a dead orbsim process is settled: a create that
    died is deleted (as a failed create is), others end ``running`` or ``stopped``.
    """
    machines = data["machines"]
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


def default_machine(ctx: Ctx, data: Data) -> Record:
    """The default machine: the one set with ``default``, else the oldest machine."""
    chosen = data.get("default")
    if chosen and chosen in data["machines"]:
        return data["machines"][chosen]
    recs = sorted(data["machines"].values(), key=lambda r: (r.get("created_at", 0), r["name"]))
    if not recs:
        raise ServiceError("no machines: create one with `orbctl create DISTRO`")
    return recs[0]


# --------------------------------------------------------------------------- faults

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
NO_VM_START = frozenset({"status", "version", "stop", "restart"})


def gate_faults(ctx: Ctx, op: str, names: Sequence[str] = ()) -> None:
    """The faults every op shares (OrbStack stopped, service timeouts, stalls), before any work.

    Runs before the command takes the lock for its own work, so a stall blocks nobody else.
    """
    if not ctx.faults or op in ("status", "version"):
        return
    with ctx.store.locked() as data:
        vm = (
            None
            if op in NO_VM_START
            else take(data["faults"], ctx.faults, "vm", names, frozenset({"stopped"}))
        )
        fault = take(data["faults"], ctx.faults, op, names, GENERIC_KINDS) if vm is None else None
    if vm is not None:
        ctx.profile.sleep("vm_start")
        raise Failure("start VM: timed out waiting for VM to start")
    if fault is not None:
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
    return take(data["faults"], ctx.faults, op, names, OWN_KINDS)


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
