"""``orbctl run`` (its own flag parser) and ``push``/``pull``.

``run`` parses flags only before the command and stops at the first
non-flag; ``--`` is rejected like OrbStack 2.0.x does (``Error: unknown flag --``).
Environment variables reach the machine only when named in ``ORBENV``
(``ORBENV=A:B``).  The working directory defaults to orbsim's own cwd (the
engine falls back to ``/`` when that path does not exist in the machine).
A stopped machine is started first, and the ``start`` rules of the faults that belong to
a machine (``no-ip``, ``conflict``, ``error``, ...) apply to that start too.
"""

from __future__ import annotations

import os
import sys
import time

from . import version as versions
from .cobra import Command, HelpRequested, UsageError
from .common import Ctx, ServiceError, default_machine, gate_faults, lookup, own_fault, reconcile, vm_gate
from .fastrun import RUN_FLAGS, command_and_workdir, forwarded_env, scan_run
from .lifecycle import boot, start_machines

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    from .cobra import Opts
    from .state import Record

__all__ = ["RUN_FLAGS", "cmd_pull", "cmd_push", "cmd_run", "forwarded_env", "parse_run"]


def parse_run(argv: list[str], run: Command) -> tuple[dict[str, str], bool, list[str]]:
    """(options, shell flag, command) from run's argv; help or a bad flag is raised."""
    opts, shell, rest, trouble = scan_run(argv)
    if trouble is not None:
        kind, word = trouble
        if kind == "help":
            raise HelpRequested(run)
        raise UsageError(
            f"flag needs an argument: {word}" if kind == "needs-value" else f"unknown flag {word}", run
        )
    return opts, shell, rest


def _ready_machine(ctx: Ctx, ref: Optional[str], op: str) -> Record:
    """The machine to act on, started first if it is stopped (waits while another call starts it)."""
    names = [ref] if ref else []
    fault = None
    deadline = time.monotonic() + 120
    first = True
    while True:
        with ctx.store.locked() as data:
            if first:
                fault = vm_gate(ctx, data, op, names)
                first = False
            else:
                vm_gate(ctx, data, "", names)
            rec = lookup(ctx, data, ref) if ref else default_machine(ctx, data)
            if rec["state"] == "running" and not ctx.engine.running(ctx.mdir(rec)):
                reconcile(ctx, data)
                rec = lookup(ctx, data, rec["id"])
            busy = rec["state"] == "starting" and fault is None and time.monotonic() < deadline
            todo: list[Record] = []
            if not busy and (rec["state"] != "running" or fault is not None):
                start_fault = fault
                if start_fault is None and rec["state"] == "stopped":  # a start, whoever asks for it
                    start_fault = own_fault(ctx, data, "start", [rec["name"]])
                todo = start_machines(ctx, data, [rec], start_fault)
            snapshot = rec.copy()
        if not busy:
            break
        time.sleep(0.05)
    for r in todo:
        boot(ctx, r)
    return snapshot


def cmd_run(ctx: Ctx, _opts: Opts, argv: list[str]) -> int:
    """``run``: its flags are parsed here (``disable_flag_parsing`` in the table)."""
    opts, shell, command = parse_run(argv, ctx.command)
    if ctx.faults:
        gate_faults(ctx, "run", [opts["machine"]] if "machine" in opts else [])
    rec = _ready_machine(ctx, opts.get("machine"), "run")
    command, workdir = command_and_workdir(opts, shell, command)
    ctx.profile.sleep("run")
    code = ctx.engine.exec(
        ctx.mdir(rec), command, user=opts.get("user") or rec["username"], workdir=workdir, env=forwarded_env()
    )
    return code if code >= 0 else 128 - code


def cmd_push(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    return _transfer(ctx, "push", opts, args)


def cmd_pull(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    return _transfer(ctx, "pull", opts, args)


def _transfer(ctx: Ctx, which: str, opts: Opts, args: list[str]) -> int:
    ref = opts.get("machine")
    rec = _ready_machine(ctx, str(ref) if ref else None, which)
    sources, dest = (args, None) if len(args) == 1 else (args[:-1], args[-1])
    fn = ctx.engine.push if which == "push" else ctx.engine.pull
    if not sources:
        raise ServiceError("no sources")
    if rec.get("isolated") and not versions.isolated_transfer(ctx.version):
        return _isolated_transfer(which, sources, dest)
    return fn(ctx.mdir(rec), user=rec["username"], sources=sources, dest=dest)


def _isolated_transfer(which: str, sources: list[str], dest: Optional[str]) -> int:
    """What OrbStack 2.1 prints: its ``cp`` in the machine goes through ``/mnt/mac``, which is blocked."""
    if which == "push":
        for src in sources:
            sys.stderr.write(f"cp: cannot stat '/mnt/mac{os.path.abspath(src)}': Permission denied\n")
    else:
        target = os.path.abspath(dest or ".")
        sys.stderr.write(f"cp: cannot create regular file '/mnt/mac{target}': Permission denied\n")
    return 1
