"""orbsim's ``orbctl``: dispatch, and the exit code and error text of every failure.

``main`` gets the command tree from its caller (``table.build_root``: every
command with its usage, flags and handler), finds the command, parses its
flags, runs the shared fault gate and calls the handler with a ``common.Ctx``.
What the commands share is ``common.py``; the machine registry is
``state.py``, the machines themselves the engine's (``engine.py``).
"""

from __future__ import annotations

import sys

from . import version as versions
from .cobra import Command, HelpRequested, UsageError, check_nargs, parse_flags
from .common import SERVICE_PREFIX, Ctx, Failure, ServiceError, gate_faults, out
from .engineapi import EngineError
from .faults import FaultSyntaxError
from .profile import ProfileError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional

    #: Builds the command tree for a program name (orbctl, orb, orbsim) and an emulated version.
    BuildRoot = Callable[[str, versions.Version], Command]

ROOT = "orbctl"
#: orbsim's own commands: no fault of ``ORBSIM_FAULTS`` applies to them.
ORBSIM_ONLY = frozenset({"shims", "reset", "image", "timeline", "ssh-config", "ssh-proxy"})


class UnknownCommand(UsageError):
    """``unknown command "X" for "orbctl ..."``, as cobra's Find reports it."""

    def __init__(self, word: str, where: Command) -> None:
        super().__init__(f'unknown command "{word}" for "{where.path}"', None)
        self.where = where


def resolve(root: Command, prog: str, argv: list[str]) -> tuple[Command, list[str]]:
    """The command to run and its arguments (``orb WORD`` falls back to ``run``)."""
    if prog == "orb" and (not argv or root.find(argv[0]) is None) and argv[:1] not in (["-h"], ["--help"]):
        run = root.find("run")
        assert run is not None
        return run, argv
    cmd = root
    rest = list(argv)
    while cmd.subcommands and rest and not rest[0].startswith("-"):
        sub = cmd.find(rest[0])
        if sub is None:
            raise UnknownCommand(rest[0], cmd)
        cmd = sub
        rest.pop(0)
    return cmd, rest


def _fault_op(root: Command, cmd: Command) -> Optional[str]:
    """The op name ``ORBSIM_FAULTS`` rules use for ``cmd`` (``config`` for its subcommands)."""
    parent = cmd.parent
    if parent is root:
        return None if cmd.name in ORBSIM_ONLY else cmd.name
    if parent is not None and parent.name == "config" and parent.parent is root:
        return "config"
    return None


def dispatch(root: Command, prog: str, version: versions.Version, argv: list[str]) -> int:
    """Run the command ``argv`` names in the tree ``root``; errors are raised."""
    cmd, rest = resolve(root, prog, argv)
    ctx = Ctx(prog, version, cmd)
    if cmd.run is not None and cmd.disable_flag_parsing:
        return cmd.run(ctx, {}, rest)  # run: its own parser and fault gate
    opts, args = parse_flags(cmd, rest)
    if cmd.run is None:
        if args:
            raise UnknownCommand(args[0], cmd)
        raise HelpRequested(cmd)
    check_nargs(cmd, args)
    op = _fault_op(root, cmd)
    if op is not None:
        gate_faults(ctx, op, args)
    return cmd.run(ctx, opts, args)


def main(argv: list[str], prog: str, build_root: BuildRoot) -> int:
    """orbctl's exit code for ``argv``, having written its output and errors."""
    try:
        version = versions.current()
        return dispatch(build_root(prog, version), prog, version, argv)
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
    except (versions.VersionError, ProfileError, FaultSyntaxError, EngineError) as exc:
        sys.stderr.write(f"orbsim: {exc}\n")  # a bad ORBSIM_* setting, or a machine that cannot be made
        return 1
