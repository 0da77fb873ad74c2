"""Machine life cycle: start, stop, restart, delete, clone (create is ``create.py``).

Each operation has the same shape: under the state lock, look every machine
up, check the transition and put the machine in a transitional state owned by
this process; then do the slow work (the engine, the profile's delays) without
the lock; then settle the final state under the lock again.  A process that
dies in between leaves a transitional state with a dead owner, which the next
orbsim call settles (``common.reconcile``).
"""

from __future__ import annotations

import os
import time

from . import version as versions
from .cobra import UsageError
from .common import Ctx, ServiceError, fault_error, lookup, own_fault, reconcile, vm_gate
from .faults import matches
from .fsutil import console
from .images import valid_name
from .state import claim, find, new_ulid, settle

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    from .cobra import Opts
    from .faults import Fault
    from .state import Data, Record

#: OrbStack issue #896's text for a machine whose rootfs cannot be removed (ID: the machine's id)
UNDELETABLE = (
    "delete rootfs: remove all x2: unlinkat /data/scon/containers/ID/rootfs/swapfile: operation not permitted"
)


class Cancelled(Exception):
    """The machine being created was deleted meanwhile."""


def update(ctx: Ctx, mid: str, state: Optional[str] = None, **fields: Any) -> Record:
    """Under the lock: change the fields of machine ``mid`` (``Record`` keys), settle ``state``; a copy.

    Raises :class:`Cancelled` when the machine is gone or a delete cancelled its create.
    """
    with ctx.store.locked() as data:
        rec = data["machines"].get(mid)
        if rec is None or rec.get("cancel"):
            raise Cancelled(mid)
        rec.update(fields)  # type: ignore[typeddict-item]
        if state is not None:
            if state in ("running", "stopped"):
                settle(rec, state)
            else:
                rec["state"] = state
        return rec.copy()


def forget(ctx: Ctx, mid: str) -> None:
    with ctx.store.locked() as data:
        data["machines"].pop(mid, None)
        if data.get("default") == mid:
            data["default"] = None


# --------------------------------------------------------------------------- start / stop / restart


def _targets(ctx: Ctx, data: Data, opts: Opts, args: list[str]) -> list[Record]:
    if opts.get("all"):
        return sorted(data["machines"].values(), key=lambda r: r["name"])
    return [lookup(ctx, data, ref) for ref in args]  # every name first: one missing fails all


def boot(ctx: Ctx, rec: Record) -> None:
    mdir = ctx.mdir(rec)
    try:
        ctx.profile.sleep("start")
        ip = ctx.engine.boot(mdir, hostname=rec["name"])
    except BaseException:
        ctx.engine.halt(mdir)
        update(ctx, rec["id"], state="stopped")
        raise
    now = time.time()
    console(mdir, f"orbsim: {rec['name']} started, ip4 {ip}")
    update(
        ctx,
        rec["id"],
        state="running",
        ip4=ip,
        started_at=now,
        ready_at=now,
        ip_at=now + ctx.profile.delay("ip"),
    )


def start_machines(ctx: Ctx, data: Data, recs: list[Record], fault: Optional[Fault]) -> list[Record]:
    """Under the lock: claim the stopped ones among ``recs`` (running ones are a no-op)."""
    todo = []
    for rec in recs:
        fault_error(fault, rec, "starting")
        if rec["state"] == "running":
            continue
        if rec["state"] != "stopped":
            raise ServiceError(f"cannot transition from {rec['state']} to starting")
    no_ip = fault is not None and fault.kind == "no-ip"
    for rec in recs:
        if rec["state"] == "stopped":
            claim(rec, "starting")
            rec["no_ip"] = no_ip
            todo.append(rec.copy())
    return todo


def cmd_start(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    with ctx.store.locked() as data:
        fault = vm_gate(ctx, data, "start", args)
        if not args and not opts.get("all"):
            return 0  # `orbctl start` alone starts OrbStack itself
        reconcile(ctx, data)
        todo = start_machines(ctx, data, _targets(ctx, data, opts, args), fault)
    for rec in todo:
        boot(ctx, rec)
    return 0


def _op_fault(ctx: Ctx, data: Data, op: str, names: list[str]) -> Optional[Fault]:
    """The own faults of ops that never start OrbStack (stop, restart)."""
    return own_fault(ctx, data, op, names)


def _halt(ctx: Ctx, rec: Record) -> None:
    ctx.profile.sleep("stop")
    ctx.engine.halt(ctx.mdir(rec))
    console(ctx.mdir(rec), f"orbsim: {rec['name']} stopped")
    try:
        update(ctx, rec["id"], state="stopped", ip4=None, stopped_at=time.time())
    except Cancelled:
        pass


def stop_machines(
    ctx: Ctx, recs: list[Record], fault: Optional[Fault], target: str = "stopping"
) -> list[Record]:
    todo = []
    for rec in recs:
        fault_error(fault, rec, target)
        if rec["state"] not in ("running", "stopped"):
            raise ServiceError(f"cannot transition from {rec['state']} to {target}")
    for rec in recs:
        if rec["state"] == "running":
            claim(rec, "stopping")
            todo.append(rec.copy())
    return todo


def cmd_stop(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    with ctx.store.locked() as data:
        fault = _op_fault(ctx, data, "stop", args)
        reconcile(ctx, data)
        if not args and not opts.get("all"):
            data["vm"] = "stopped"  # `orbctl stop` alone stops OrbStack: every machine stops
            todo = stop_machines(ctx, [r for r in data["machines"].values() if r["state"] == "running"], None)
        else:
            todo = stop_machines(ctx, _targets(ctx, data, opts, args), fault)
    for rec in todo:
        _halt(ctx, rec)
    return 0


def cmd_restart(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    with ctx.store.locked() as data:
        fault = _op_fault(ctx, data, "restart", args)
        if not args and not opts.get("all"):
            data["vm"] = "running"  # `orbctl restart` alone restarts OrbStack
            return 0
        reconcile(ctx, data)
        recs = _targets(ctx, data, opts, args)
        todo = stop_machines(ctx, recs, fault, "restarting")
        ids = [r["id"] for r in recs]
    for rec in todo:
        _halt(ctx, rec)
    with ctx.store.locked() as data:
        recs = [data["machines"][i] for i in ids if i in data["machines"]]
        no_ip = fault if fault is not None and fault.kind == "no-ip" else None
        starting = start_machines(ctx, data, recs, no_ip)
    for rec in starting:
        boot(ctx, rec)
    return 0


# --------------------------------------------------------------------------- delete


def cmd_delete(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    if not args and not opts.get("all"):
        raise UsageError("no machines specified", ctx.command)
    with ctx.store.locked() as data:
        fault = vm_gate(ctx, data, "delete", args)
        reconcile(ctx, data)
        recs = _targets(ctx, data, opts, args)
        if recs:
            fault_error(fault, recs[0], "deleting")
        stuck = _undeletable(fault, recs)
        if stuck:
            for rec in stuck:
                if rec["state"] == "running":
                    ctx.engine.halt(ctx.mdir(rec))
                    settle(rec, "stopped")
                    rec.pop("ip4", None)
            text = (fault.arg if fault is not None else None) or UNDELETABLE.replace("ID", stuck[0]["id"])
            raise ServiceError(text.replace("{name}", stuck[0]["name"]))
        waiting = []
        for rec in recs:
            state = rec["state"]
            creating = state in ("creating", "provisioning")
            if creating and versions.delete_cancels_create(ctx.version):
                waiting.append(rec["id"])
            elif state not in ("running", "stopped"):
                raise ServiceError(f"cannot transition from {state} to deleting")
        todo: list[Record] = []
        for rec in recs:
            if rec["id"] in waiting:
                rec["cancel"] = True
            elif rec["id"] not in {t["id"] for t in todo}:
                claim(rec, "deleting")
                todo.append(rec.copy())
    for rec in todo:
        ctx.engine.destroy(ctx.mdir(rec))
        forget(ctx, rec["id"])
    if todo:
        ctx.profile.sleep("delete")
    _wait_gone(ctx, waiting)
    return 0


def _undeletable(fault: Optional[Fault], recs: list[Record]) -> list[Record]:
    """The machines an ``undeletable`` fault keeps (those its glob matches, else all)."""
    if fault is None or fault.kind != "undeletable":
        return []
    return [r for r in recs if fault.glob is None or matches(r["name"], fault.glob)]


def _wait_gone(ctx: Ctx, ids: list[str], timeout: float = 600.0) -> None:
    """Wait until the cancelled creates ``ids`` have removed their machines."""
    deadline = time.monotonic() + timeout
    while ids:
        with ctx.store.locked() as data:
            reconcile(ctx, data)
            ids = [i for i in ids if i in data["machines"]]
        if not ids:
            return
        if time.monotonic() > deadline:
            raise ServiceError("timed out waiting for the machine being created to be deleted")
        time.sleep(0.05)


# --------------------------------------------------------------------------- clone


def cmd_clone(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    old, new = args
    with ctx.store.locked() as data:
        fault = vm_gate(ctx, data, "clone", args)
        reconcile(ctx, data)
        src = lookup(ctx, data, old)
        fault_error(fault, src, "cloning")
        if not valid_name(new):
            raise ServiceError(f"clone '{new}': invalid machine name '{new}'")
        if find(data, new) is not None:
            raise ServiceError(f"clone '{new}': machine already exists: '{new}'")
        if src["state"] not in ("running", "stopped"):
            raise ServiceError(f"cannot transition from {src['state']} to cloning")
        now = time.time()
        rec = src.copy()
        rec["id"], rec["name"], rec["created_at"] = new_ulid(now), new, now
        # not the source's owner, cancellation, address or times
        for key in ("op_pid", "op_token", "cancel", "ip4", "ip_at", "started_at", "ready_at", "stopped_at"):
            rec.pop(key, None)  # type: ignore[misc]
        rec.pop("no_ip", None)
        claim(rec, "creating")
        data["machines"][rec["id"]] = rec
        src_dir = ctx.mdir(src)
    dst = ctx.mdir(rec)
    try:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        ctx.engine.clone(src_dir, dst, hostname=new)
        console(dst, f"orbsim: cloned from {src['name']}")
        ctx.profile.sleep("clone")
        update(ctx, rec["id"], state="stopped", ready_at=None)
    except BaseException as exc:
        ctx.engine.destroy(dst)
        forget(ctx, rec["id"])
        if isinstance(exc, Cancelled):
            raise ServiceError(f"clone '{new}': context canceled") from None
        raise
    return 0
