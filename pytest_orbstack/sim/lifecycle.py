"""Machine life cycle: create, start, stop, restart, delete, clone.

Each operation has the same shape: under the state lock, look every machine
up, check the transition and put the machine in a transitional state owned by
this process; then do the slow work (the engine, the profile's delays) without
the lock; then settle the final state under the lock again.  A process that
dies in between leaves a transitional state with a dead owner, which the next
orbsim call settles (``cli.reconcile``).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Optional

from . import version as versions
from .cli import (
    COMMANDS,
    Ctx,
    ServiceError,
    default_username,
    fault_error,
    lookup,
    reconcile,
    vm_gate,
)
from .cobra import Opts, UsageError
from .fsutil import console
from .profile import DOWNLOAD_SHARE
from .state import Data, Record, claim, find, new_ulid, settle

DOWNLOAD_502 = "make rootfs: download metadata: GET download status: 502 Bad Gateway"
SETUP_TIMEOUT = "setup: machine didn't start in 30s (missing IP address)"
#: OrbStack issue #896's text for a machine whose rootfs cannot be removed (ID: the machine's id)
UNDELETABLE = (
    "delete rootfs: remove all x2: unlinkat /data/scon/containers/ID/rootfs/swapfile: operation not permitted"
)


class Cancelled(Exception):
    """The machine being created was deleted meanwhile."""


def _update(ctx: Ctx, mid: str, **fields: Any) -> Record:
    with ctx.store.locked() as data:
        rec: Optional[Record] = data["machines"].get(mid)
        if rec is None or rec.get("cancel"):
            raise Cancelled(mid)
        state = fields.pop("state", None)
        rec.update(fields)
        if state is not None:
            if state in ("running", "stopped"):
                settle(rec, state)
            else:
                rec["state"] = state
        return dict(rec)


def _forget(ctx: Ctx, mid: str) -> None:
    with ctx.store.locked() as data:
        data["machines"].pop(mid, None)
        if data.get("default") == mid:
            data["default"] = None


# --------------------------------------------------------------------------- create


def _size_mib(text: str, flag: str) -> int:
    units = {"": 1 / (1 << 20), "B": 1 / (1 << 20), "K": 1 / 1024, "M": 1, "G": 1024, "T": 1 << 20}
    raw = text.strip().upper().removesuffix("IB").removesuffix("B") if text.strip().upper() != "B" else "B"
    number, unit = raw.rstrip("KMGT"), raw[len(raw.rstrip("KMGT")) :]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise UsageError(
            f'invalid argument "{text}" for "--{flag}" flag: invalid size', COMMANDS["create"]
        ) from None
    return int(value)


def _read_user_data(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(1 << 20)  # cloud-init user-data is small; OrbStack passes the file as is
    except OSError as exc:
        raise UsageError(f"open {path}: {(exc.strerror or 'error').lower()}", COMMANDS["create"]) from None


def _create_options(ctx: Ctx, opts: Opts, args: list[str]) -> dict[str, Any]:
    """Everything the CLI itself checks before asking the service (usage errors)."""
    from .images import ARCHES, IMAGE_NAMES, host_arch, split_image

    distro, ver = split_image(args[0])
    if distro not in IMAGE_NAMES:
        raise UsageError(f"invalid distro: {distro}", COMMANDS["create"])
    arch = str(opts.get("arch") or host_arch())
    if arch not in ARCHES:
        raise UsageError(f"invalid architecture: {arch}", COMMANDS["create"])
    variant = "default"
    user_data = opts.get("user-data")
    if user_data:
        try:
            with open(str(user_data), "rb"):
                pass
        except OSError as exc:
            reason = (exc.strerror or "error").lower()
            raise UsageError(f"open {user_data}: {reason}", COMMANDS["create"]) from None
        variant = "cloud"
    found: dict[str, Any] = {
        "user_data": _read_user_data(str(user_data)) if user_data else None,
        "distro": distro,
        "ver": ver,
        "arch": arch,
        "variant": variant,
        "name": args[1] if len(args) > 1 else distro,
        "username": str(opts.get("user") or default_username()),
        "isolated": bool(opts.get("isolated")),
    }
    if opts.get("cpus") is not None:
        cpus = str(opts["cpus"])
        if not cpus.isdigit():
            raise UsageError(
                f'invalid argument "{cpus}" for "--cpus" flag: strconv.ParseUint: parsing '
                f'"{cpus}": invalid syntax',
                COMMANDS["create"],
            )
        found["cpu_limit"] = int(cpus)
    if opts.get("memory") is not None:
        found["memory_limit_mib"] = _size_mib(str(opts["memory"]), "memory")
    if opts.get("disk") is not None:
        found["disk_limit_bytes"] = _size_mib(str(opts["disk"]), "disk") << 20
    return found


def _reserve(ctx: Ctx, data: Data, o: dict[str, Any]) -> tuple[Record, Any]:
    """Under the lock: the service's checks, then the new record in state ``creating``."""
    from .images import IMAGE_NAMES, resolve, valid_name

    name = o["name"]
    fault = vm_gate(ctx, data, "create", [name])
    reconcile(ctx, data)
    if not valid_name(name):
        raise ServiceError(f"create '{name}': invalid machine name '{name}'")
    if find(data, name) is not None:
        raise ServiceError(f"create '{name}': machine already exists: '{name}'")
    if fault is not None and fault.kind == "download-502":
        raise ServiceError(f"create '{name}': {DOWNLOAD_502}")
    if fault is not None and fault.kind == "error":
        fault_error(fault, None, "creating")
    image, codename, exists = resolve(o["distro"], o["ver"], o["arch"], o["variant"])
    if not exists:
        raise ServiceError(
            f"create '{name}': make rootfs: image not found: {{{IMAGE_NAMES[o['distro']]} {codename} "
            f"{o['arch']} {o['variant']}}}"
        )
    now = time.time()
    rec: Record = {
        "id": new_ulid(now),
        "name": name,
        "distro": image,
        "version": codename,
        "arch": o["arch"],
        "variant": o["variant"],
        "isolated": o["isolated"],
        "username": o["username"],
        "created_at": now,
    }
    for key in ("cpu_limit", "memory_limit_mib", "disk_limit_bytes"):
        if key in o:
            rec[key] = o[key]
    claim(rec, "creating")
    data["machines"][rec["id"]] = rec
    return rec, fault


def cmd_create(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    o = _create_options(ctx, opts, args)
    ctx.engine.preflight()
    with ctx.store.locked() as data:
        rec, fault = _reserve(ctx, data, o)
    if fault is not None and fault.kind == "download-stall":
        return _detached(ctx, rec, lambda: _make(ctx, o, rec, fault))
    return _make(ctx, o, rec, fault)


def _make(ctx: Ctx, o: dict[str, Any], rec: Record, fault: Any) -> int:
    """The slow part of a create: download (stalled by a fault), boot, first-boot setup."""
    mid, name = rec["id"], rec["name"]
    mdir = ctx.store.mdir(mid)
    keep = False
    try:
        if fault is not None and fault.kind == "download-stall":
            time.sleep(fault.seconds())
            _update(ctx, mid)  # deleted meanwhile: cancelled
        mdir.mkdir(parents=True, exist_ok=True)
        ctx.engine.prepare(mdir, hostname=name, username=o["username"])
        if o["user_data"] is not None:
            ctx.engine.seed_cloud_init(mdir, user_data=o["user_data"], instance_id=mid, hostname=name)
        console(mdir, f"orbsim: created {name} ({rec['distro']}:{rec['version']})")
        ctx.profile.download(ctx.store.root / "downloads")
        _update(ctx, mid, state="provisioning")
        ip = ctx.engine.boot(mdir, hostname=name)
        console(mdir, f"orbsim: {name} booted, ip4 {ip}")
        ctx.profile.sleep("create", 1 - DOWNLOAD_SHARE)
        now = time.time()
        no_ip = fault is not None and fault.kind == "no-ip"
        _update(ctx, mid, state="running", ip4=ip, ip_at=now, started_at=now, ready_at=now, no_ip=no_ip)
        if no_ip:
            console(mdir, f"orbsim: {name} got no IP address")
            time.sleep(fault.seconds(0.0))
            raise ServiceError(f"create '{name}': {SETUP_TIMEOUT}")
        if fault is not None and fault.kind in ("setup-timeout", "setup-timeout-keep"):
            keep = fault.kind == "setup-timeout-keep"
            raise ServiceError(f"create '{name}': {SETUP_TIMEOUT}")
    except BaseException as exc:
        if not keep:
            ctx.engine.destroy(mdir)
            _forget(ctx, mid)
        if isinstance(exc, Cancelled):
            raise ServiceError(f"create '{name}': context canceled") from None
        raise
    if fault is not None and fault.kind == "hang":
        time.sleep(fault.seconds())
    return 0


def _detached(ctx: Ctx, rec: Record, work: Any) -> int:
    """Run ``work`` in a new session that outlives this process, as OrbStack's service outlives orbctl.

    The child owns the machine's ``creating`` state; this process waits for it and relays its
    exit code and error text (through a pipe).  Killed, it leaves the child going: the machine
    ends ``running``.
    """
    import os
    import signal
    import sys

    from .cli import SERVICE_PREFIX

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.setsid()
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # the caller may be gone
            os.close(read_end)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(write_end, 2)
            with ctx.store.locked() as data:
                if rec["id"] in data["machines"]:
                    claim(data["machines"][rec["id"]], "creating")
            code = work()
        except ServiceError as exc:
            with contextlib.suppress(OSError):
                sys.stderr.write(SERVICE_PREFIX + exc.message + "\n")
        except BaseException as exc:
            with contextlib.suppress(OSError):
                sys.stderr.write(f"orbsim: {exc}\n")
        finally:
            with contextlib.suppress(OSError):
                sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read(1 << 16)
    _, status = os.waitpid(pid, 0)
    sys.stderr.write(said.decode("utf-8", "replace"))
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 1


# --------------------------------------------------------------------------- start / stop / restart


def _targets(ctx: Ctx, data: Data, opts: Opts, args: list[str]) -> list[Record]:
    if opts.get("all"):
        return sorted(data["machines"].values(), key=lambda r: r["name"])
    return [lookup(ctx, data, ref) for ref in args]  # every name first: one missing fails all


def _boot(ctx: Ctx, rec: Record) -> None:
    mdir = ctx.mdir(rec)
    try:
        ctx.profile.sleep("start")
        ip = ctx.engine.boot(mdir, hostname=rec["name"])
    except BaseException:
        ctx.engine.halt(mdir)
        _update(ctx, rec["id"], state="stopped")
        raise
    now = time.time()
    console(mdir, f"orbsim: {rec['name']} started, ip4 {ip}")
    _update(
        ctx,
        rec["id"],
        state="running",
        ip4=ip,
        started_at=now,
        ready_at=now,
        ip_at=now + ctx.profile.delay("ip"),
    )


def start_machines(ctx: Ctx, data: Data, recs: list[Record], fault: Any) -> list[Record]:
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
            todo.append(dict(rec))
    return todo


def cmd_start(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    with ctx.store.locked() as data:
        fault = vm_gate(ctx, data, "start", args)
        if not args and not opts.get("all"):
            return 0  # `orbctl start` alone starts OrbStack itself
        reconcile(ctx, data)
        todo = start_machines(ctx, data, _targets(ctx, data, opts, args), fault)
    for rec in todo:
        _boot(ctx, rec)
    return 0


def _op_fault(ctx: Ctx, data: Data, op: str, names: list[str]) -> Any:
    """The own faults of ops that never start OrbStack (stop, restart)."""
    from .cli import own_fault

    return own_fault(ctx, data, op, names)


def _halt(ctx: Ctx, rec: Record) -> None:
    ctx.profile.sleep("stop")
    ctx.engine.halt(ctx.mdir(rec))
    console(ctx.mdir(rec), f"orbsim: {rec['name']} stopped")
    with contextlib.suppress(Cancelled):
        _update(ctx, rec["id"], state="stopped", ip4=None, stopped_at=time.time())


def stop_machines(ctx: Ctx, recs: list[Record], fault: Any, target: str = "stopping") -> list[Record]:
    todo = []
    for rec in recs:
        fault_error(fault, rec, target)
        if rec["state"] not in ("running", "stopped"):
            raise ServiceError(f"cannot transition from {rec['state']} to {target}")
    for rec in recs:
        if rec["state"] == "running":
            claim(rec, "stopping")
            todo.append(dict(rec))
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
        _boot(ctx, rec)
    return 0


# --------------------------------------------------------------------------- delete


def cmd_delete(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    if not args and not opts.get("all"):
        raise UsageError("no machines specified", COMMANDS["delete"])
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
                todo.append(dict(rec))
    for rec in todo:
        ctx.engine.destroy(ctx.mdir(rec))
        _forget(ctx, rec["id"])
    if todo:
        ctx.profile.sleep("delete")
    _wait_gone(ctx, waiting)
    return 0


def _undeletable(fault: Any, recs: list[Record]) -> list[Record]:
    """The machines an ``undeletable`` fault keeps (those its glob matches, else all)."""
    import fnmatch

    if fault is None or fault.kind != "undeletable":
        return []
    return [r for r in recs if fault.glob is None or fnmatch.fnmatchcase(r["name"], fault.glob)]


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
    from .images import valid_name

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
        rec: Record = {k: v for k, v in src.items() if k not in ("op_pid", "op_token", "cancel")}
        rec.update(id=new_ulid(now), name=new, created_at=now)
        for key in ("ip4", "ip_at", "started_at", "ready_at", "stopped_at", "no_ip"):
            rec.pop(key, None)
        claim(rec, "creating")
        data["machines"][rec["id"]] = rec
        src_dir = ctx.mdir(src)
    dst = ctx.mdir(rec)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        ctx.engine.clone(src_dir, dst, hostname=new)
        console(dst, f"orbsim: cloned from {src['name']}")
        ctx.profile.sleep("clone")
        _update(ctx, rec["id"], state="stopped", ready_at=None)
    except BaseException as exc:
        ctx.engine.destroy(dst)
        _forget(ctx, rec["id"])
        if isinstance(exc, Cancelled):
            raise ServiceError(f"clone '{new}': context canceled") from None
        raise
    return 0
