"""The command table: every orbctl command with its usage line, aliases, flags, argument rule and handler.

``__main__`` hands :func:`build_root` to ``cli.main``, which dispatches.
"""

from __future__ import annotations

from . import version as versions
from .cli import ROOT
from .cobra import Command, Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Callable

    from .cobra import Opts
    from .common import Ctx


class Handler:
    """A command's handler ``module.function``, imported when the command runs.

    Start-up time: each command loads only its own module (``orbctl info`` does
    not load ``create``'s image and cloud-init code, nor ``push``'s tar).
    """

    __slots__ = ("module", "name")

    def __init__(self, spec: str) -> None:
        self.module, _, self.name = spec.partition(".")

    def resolve(self) -> Callable[[Ctx, Opts, list[str]], int]:
        found: Callable[[Ctx, Opts, list[str]], int] = getattr(_load(self.module), self.name)
        return found

    def __call__(self, ctx: Ctx, opts: Opts, args: list[str]) -> int:
        return self.resolve()(ctx, opts, args)


def _load(module: str) -> ModuleType:
    if module == "basic":
        from . import basic

        return basic
    if module == "lifecycle":
        from . import lifecycle

        return lifecycle
    if module == "create":
        from . import create

        return create
    if module == "runcmd":
        from . import runcmd

        return runcmd
    if module == "simcmds":
        from . import simcmds

        return simcmds
    raise ValueError(f"no command module {module!r}")


FMT = Flag("format", "f", "output format: text, json")
MACHINE = Flag("machine", "m", "machine name (default: default machine)")


def _orbctl_commands(v: versions.Version) -> list[Command]:
    create_flags = [
        Flag("arch", "a", "override machine CPU architecture (amd64, arm64)"),
        Flag("user", "u", "username for the default user"),
        Flag("user-data", "c", "path to a cloud-init user data file"),
    ]
    if versions.has_isolated_flag(v):
        create_flags.append(Flag("isolated", None, "isolate the machine from macOS", is_bool=True))
    if versions.has_limits(v):
        create_flags += [
            Flag("cpus", None, "CPU limit", metavar="uint"),
            Flag("memory", None, "memory limit (e.g. 4G)"),
            Flag("disk", None, "disk size limit (e.g. 64G)"),
        ]
    cmds = [
        Command("status", "status", "Show OrbStack status", nargs=(0, 0), run=Handler("basic.cmd_status")),
        Command("version", "version", "Show version", nargs=(0, 0), run=Handler("basic.cmd_version")),
        Command(
            "create",
            "create [flags] DISTRO[:VERSION] [MACHINE_NAME]",
            "Create a new machine",
            aliases=("add", "new"),
            flags=create_flags,
            nargs=(1, 2),
            run=Handler("create.cmd_create"),
        ),
        Command(
            "list",
            "list [flags]",
            "List machines",
            aliases=(),
            flags=[
                Flag("running", "r", "only show running machines", is_bool=True),
                Flag("quiet", "q", "only show machine names", is_bool=True),
                FMT,
            ],
            nargs=(0, 0),
            run=Handler("basic.cmd_list"),
        ),
        Command(
            "info",
            "info [flags] ID/NAME",
            "Get info about a machine",
            aliases=("i",),
            flags=[FMT],
            nargs=(1, 1),
            run=Handler("basic.cmd_info"),
        ),
        Command(
            "start",
            "start [flags] [ID/NAME]...",
            "Start OrbStack or a machine",
            flags=[Flag("all", "a", "start all machines", is_bool=True)],
            run=Handler("lifecycle.cmd_start"),
        ),
        Command(
            "stop",
            "stop [flags] [ID/NAME]...",
            "Stop OrbStack or a machine",
            flags=[
                Flag("all", "a", "stop all machines", is_bool=True),
                Flag("force", "f", "force stop (kill)", is_bool=True),
            ],
            run=Handler("lifecycle.cmd_stop"),
        ),
        Command(
            "restart",
            "restart [flags] [ID/NAME]...",
            "Restart OrbStack or a machine",
            flags=[Flag("all", "a", "restart all machines", is_bool=True)],
            run=Handler("lifecycle.cmd_restart"),
        ),
        Command(
            "delete",
            "delete [flags] ID/NAME...",
            "Delete machines",
            flags=[
                Flag("force", "f", "do not ask for confirmation", is_bool=True),
                Flag("all", "a", "delete all machines", is_bool=True),
            ],
            run=Handler("lifecycle.cmd_delete"),
        ),
        Command(
            "rename",
            "rename OLD_NAME NEW_NAME",
            "Rename a machine",
            nargs=(2, 2),
            run=Handler("basic.cmd_rename"),
        ),
        Command(
            "run",
            "run [flags] COMMAND [ARGS]...",
            "Run a command in a machine",
            aliases=("exec", "shell"),
            run=Handler("runcmd.cmd_run"),
            disable_flag_parsing=True,
        ),
        Command(
            "push",
            "push [flags] MACOS_SOURCE... [LINUX_DEST]",
            "Copy files to a machine",
            flags=[MACHINE],
            nargs=(1, None),
            run=Handler("runcmd.cmd_push"),
        ),
        Command(
            "pull",
            "pull [flags] LINUX_SOURCE... [MACOS_DEST]",
            "Copy files from a machine",
            flags=[MACHINE],
            nargs=(1, None),
            run=Handler("runcmd.cmd_pull"),
        ),
        Command(
            "logs",
            "logs [flags] ID/NAME",
            "Show a machine's console logs",
            flags=[Flag("all", "a", "show all logs", is_bool=True)],
            nargs=(1, 1),
            run=Handler("basic.cmd_logs"),
        ),
        Command(
            "default",
            "default [ID/NAME]",
            "Get or set the default machine",
            nargs=(0, 1),
            run=Handler("basic.cmd_default"),
        ),
        Command(
            "config",
            "config",
            "Change OrbStack settings",
            subcommands=[
                Command(
                    "show", "show", "Show all settings", nargs=(0, 0), run=Handler("basic.cmd_config_show")
                ),
                Command("get", "get KEY", "Get a setting", nargs=(1, 1), run=Handler("basic.cmd_config_get")),
                Command(
                    "set",
                    "set KEY VALUE",
                    "Change a setting",
                    nargs=(2, 2),
                    run=Handler("basic.cmd_config_set"),
                ),
            ],
        ),
        Command(
            "export",
            "export [flags] ID/NAME OUTPUT.tar.zst",
            "Export a machine",
            nargs=(2, 2),
            run=Handler("basic.cmd_not_done"),
        ),
        Command(
            "import",
            "import [flags] INPUT.tar.zst",
            "Import a machine",
            flags=[Flag("name", "n", "name of the imported machine")],
            nargs=(1, 1),
            run=Handler("basic.cmd_not_done"),
        ),
    ]
    if versions.has_clone(v):
        cmds.insert(
            10,
            Command(
                "clone",
                "clone OLD_NAME NEW_NAME",
                "Clone a machine",
                nargs=(2, 2),
                run=Handler("lifecycle.cmd_clone"),
            ),
        )
    return cmds


def _orbsim_commands() -> list[Command]:
    return [
        Command(
            "shims",
            "shims DIR",
            "orbsim: write orbctl and orb launchers into DIR",
            nargs=(1, 1),
            run=Handler("simcmds.cmd_shims"),
        ),
        Command(
            "reset",
            "reset",
            "orbsim: delete every machine of this ORBSIM_HOME",
            nargs=(0, 0),
            run=Handler("simcmds.cmd_reset"),
        ),
        Command(
            "image",
            "image",
            "orbsim: the machine image",
            subcommands=[
                Command(
                    "build",
                    "build [flags]",
                    "build the machine image (root, ~1 min)",
                    flags=[Flag("force", None, "rebuild even if it exists", is_bool=True)],
                    nargs=(0, 0),
                    run=Handler("simcmds.cmd_image_build"),
                ),
                Command(
                    "status",
                    "status",
                    "show the machine image as JSON",
                    nargs=(0, 0),
                    run=Handler("simcmds.cmd_image_status"),
                ),
                Command(
                    "key",
                    "key",
                    "print a key that changes when the image must be rebuilt (for CI caches)",
                    nargs=(0, 0),
                    run=Handler("simcmds.cmd_image_key"),
                ),
            ],
        ),
        Command(
            "ssh-config",
            "ssh-config",
            "orbsim: print the path of the ssh config (Host orb) of this ORBSIM_HOME",
            nargs=(0, 0),
            run=Handler("simcmds.cmd_ssh_config"),
        ),
        Command(
            "ssh-proxy",
            "ssh-proxy USER@MACHINE",
            "orbsim: ProxyCommand of that ssh config (ProxyUseFdpass)",
            nargs=(1, 1),
            run=Handler("simcmds.cmd_ssh_proxy"),
        ),
        Command(
            "timeline",
            "timeline [ID/NAME]...",
            "orbsim: per-machine timestamps as JSON (ready_at, ...)",
            run=Handler("simcmds.cmd_timeline"),
        ),
    ]


def build_root(prog: str, v: versions.Version) -> Command:
    subs = _orbctl_commands(v)
    if prog == "orbsim":
        subs += _orbsim_commands()
    return Command(ROOT, ROOT, "OrbStack command-line interface", subcommands=subs)
