"""The simple orbctl commands: status, version, list, info, rename, default, logs, config."""

from __future__ import annotations

import os
import sys
import time

from . import version as versions
from .cobra import UsageError
from .common import (
    SERVICE_PREFIX,
    Ctx,
    Failure,
    ServiceError,
    default_machine,
    dump_json,
    fault_error,
    lookup,
    out,
    reconcile,
    vm_gate,
)
from .faults import take
from .images import valid_name
from .state import by_name, find

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    from .cobra import Opts
    from .state import Data, Record

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
    record = public_record(ctx, rec)
    if not versions.info_wrapped(ctx.version):
        return record
    obj: dict[str, Any] = {"record": record, "disk_size": None}
    ip = rec.get("ip4")
    if rec["state"] == "running" and ip and not rec.get("no_ip") and time.time() >= rec.get("ip_at", 0):
        obj["ip4"] = ip
    return obj


def cmd_status(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    with ctx.store.locked() as data:
        if ctx.faults:
            fault = take(data["faults"], ctx.faults, "vm", (), frozenset({"stopped", "starting"}))
            if fault is not None and fault.kind == "starting":
                out("Starting\n")
                return 2
            if fault is not None:
                out("Stopped\n")
                return 1
        if data.get("vm") == "stopped":
            out("Stopped\n")
            return 1
    out("Running\n")
    return 0


def cmd_version(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    out(versions.version_output(ctx.version))
    return 0


def _fmt(ctx: Ctx, opts: Opts, default: str) -> str:
    fmt = str(opts.get("format") or default)
    if fmt not in ("text", "json"):
        raise UsageError(f"invalid format: {fmt}", ctx.command)
    return fmt


def cmd_list(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    fmt = _fmt(ctx, opts, "text")
    with ctx.store.locked() as data:
        fault_error(vm_gate(ctx, data, "list"), None, "listing")
        reconcile(ctx, data)
        recs = by_name(data)
    if opts.get("running"):
        recs = [r for r in recs if r["state"] == "running"]
    if opts.get("quiet"):
        out("".join(r["name"] + "\n" for r in recs))
    elif fmt == "json":
        out(dump_json([public_record(ctx, r) for r in recs]))
    else:
        rows = [[r["name"], r["state"], r["distro"], r["version"], r["arch"]] for r in recs]
        if sys.stdout.isatty():
            rows.insert(0, ["NAME", "STATE", "DISTRO", "VERSION", "ARCH"])
        out(table(rows))
    return 0


def table(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def cmd_info(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    fmt = _fmt(ctx, opts, "text")
    with ctx.store.locked() as data:
        fault = vm_gate(ctx, data, "info", args)
        reconcile(ctx, data)
        rec = lookup(ctx, data, args[0])
        fault_error(fault, rec, rec["state"])
    obj = info_object(ctx, rec)
    if fmt == "json":
        out(dump_json(obj))
        return 0
    lines = [
        ("ID", rec["id"]),
        ("Name", rec["name"]),
        ("State", rec["state"]),
        ("Distro", rec["distro"]),
        ("Version", rec["version"]),
        ("Architecture", rec["arch"]),
    ]
    if "ip4" in obj:
        lines.append(("IPv4", obj["ip4"]))
    out("".join(f"{k}: {v}\n" for k, v in lines))
    return 0


def cmd_rename(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    old, new = args
    with ctx.store.locked() as data:
        fault = vm_gate(ctx, data, "rename", args)
        rec = lookup(ctx, data, old)
        fault_error(fault, rec, "renaming")
        if not valid_name(new):
            raise ServiceError(f"invalid machine name '{new}'")
        other = find(data, new)
        if other is not None and other is not rec:
            raise ServiceError(f"machine already exists: '{new}'")
        if rec["state"] not in ("running", "stopped"):
            raise ServiceError(f"cannot transition from {rec['state']} to renaming")
        rec["name"] = new
        ctx.engine.set_hostname(ctx.mdir(rec), new)
    return 0


def cmd_default(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    with ctx.store.locked() as data:
        fault_error(vm_gate(ctx, data, "default", args), None, "default")
        if args:
            rec = lookup(ctx, data, args[0])
            data["default"] = rec["id"]
            return 0
        rec = default_machine(ctx, data)
    out(rec["name"] + "\n")
    return 0


def cmd_logs(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    with ctx.store.locked() as data:
        rec = find(data, args[0])
    if rec is None:
        msg = ctx.not_found(args[0]).message
        out(SERVICE_PREFIX + msg + "\n")  # orbctl logs reports errors on stdout, exit 0
        return 0
    log = os.path.join(ctx.mdir(rec), "console.log")
    if os.path.isfile(log):
        with open(log, encoding="utf-8", errors="replace") as fh:
            out(fh.read())
    return 0


def cmd_not_done(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    raise Failure("orbsim does not implement export/import: create the machine instead")


# --------------------------------------------------------------------------- config

GLOBAL_CONFIG: dict[str, str] = {
    "cpu": "0",
    "memory_mib": "0",
    "network_proxy": "auto",
    "rosetta": "true",
    "setup.use_admin": "true",
}


def _config_items(ctx: Ctx, data: Data) -> list[tuple[str, str]]:
    items = {**GLOBAL_CONFIG, **data.get("config", {})}
    pairs = sorted(items.items())
    for rec in by_name(data):
        pairs.append((f"machine.{rec['name']}.username", rec["username"]))
    return pairs


def cmd_config_show(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    with ctx.store.locked() as data:
        fault_error(vm_gate(ctx, data, "config"), None, "config")
        pairs = _config_items(ctx, data)
    out("".join(f"{k}: {v}\n" for k, v in pairs))
    return 0


def _machine_key(key: str) -> Optional[tuple[str, str]]:
    if key.startswith("machine.") and key.count(".") >= 2:
        name, _, field = key[len("machine.") :].rpartition(".")
        return name, field
    return None


def cmd_config_get(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    key = args[0]
    with ctx.store.locked() as data:
        fault_error(vm_gate(ctx, data, "config"), None, "config")
        pairs = dict(_config_items(ctx, data))
    if key not in pairs:
        parsed = _machine_key(key)
        if parsed and parsed[1] == "username":
            raise ctx.not_found(parsed[0])
        raise Failure(f"Error: unknown config key: {key}")
    out(pairs[key] + "\n")
    return 0


def cmd_config_set(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    key, value = args
    with ctx.store.locked() as data:
        fault_error(vm_gate(ctx, data, "config"), None, "config")
        parsed = _machine_key(key)
        if parsed is not None and parsed[1] == "username":
            rec = lookup(ctx, data, parsed[0])
            rec["username"] = value
        elif key in GLOBAL_CONFIG:
            data.setdefault("config", {})[key] = value
        else:
            raise Failure(f"Error: unknown config key: {key}")
    return 0
