"""The option table: every setting's command-line flag, ini key, environment variables and help.

Each :class:`Option` names its field of :class:`~pytest_orbstack.settings.Settings`
and its validator (``parsers.py``); :func:`add_options` registers them all with
pytest, :func:`raw` finds where a value was set (CLI > env > ini).  A new option
is one more row of :data:`OPTIONS` and one more field of ``Settings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Final, Optional

import pytest

from pytest_orbstack import parsers
from pytest_orbstack.naming import DEFAULT_PREFIX, REUSE_PREFIX
from pytest_orbstack.retry import MAX_RETRIES

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_MACHINE_TIMEOUT",
    "DEFAULT_PREFETCH",
    "DEFAULT_READY_TIMEOUT",
    "DEFAULT_RETRIES",
    "OPTIONS",
    "Option",
    "add_options",
    "raw",
]

DEFAULT_IMAGE: Final = "ubuntu:22.04"
DEFAULT_READY_TIMEOUT: Final = 120.0
DEFAULT_RETRIES: Final = 3
#: Machines made ahead at once per process (``--orb-prefetch``; at most ``parsers.MAX_PREFETCH``).
DEFAULT_PREFETCH: Final = 2
#: The overall deadline of one machine, from its first create or clone to ready (``--orb-machine-timeout``).
DEFAULT_MACHINE_TIMEOUT: Final = 1200.0


@dataclass(frozen=True)
class Option:
    """One setting: where users set it, how its value is read, what ``--help`` says of it."""

    #: the field of ``Settings`` (and ``orb_<field>``, its ``config.option`` name)
    field: str
    flag: str
    ini: str
    env: tuple[str, ...]
    parse: Callable[[str, Path], Any]
    help: str
    metavar: Optional[str] = None
    is_flag: bool = False
    #: the value of the bare flag when its value is optional (``--orb-reuse`` = ``on``)
    const: Optional[str] = None


_HELP_IMAGE: Final = f"image of machines, distro[:version] (default {DEFAULT_IMAGE})"
OPTIONS: Final = (
    Option(
        "image", "--orb-image", "orb_image", ("PYTEST_ORBSTACK_IMAGE",), parsers.image, _HELP_IMAGE, "IMAGE"
    ),
    Option(
        "arch",
        "--orb-arch",
        "orb_arch",
        ("PYTEST_ORBSTACK_ARCH",),
        parsers.arch,
        "CPU architecture of machines: amd64, arm64 or i386 (default: the host's)",
        "ARCH",
    ),
    Option(
        "user",
        "--orb-user",
        "orb_user",
        ("PYTEST_ORBSTACK_USER",),
        parsers.user,
        "default user created in machines (default: OrbStack's, your user name)",
        "USER",
    ),
    Option(
        "user_data",
        "--orb-user-data",
        "orb_user_data",
        ("PYTEST_ORBSTACK_USER_DATA",),
        parsers.user_data,
        "cloud-init user-data file applied when machines are created",
        "FILE",
    ),
    Option(
        "prefix",
        "--orb-prefix",
        "orb_prefix",
        ("PYTEST_ORBSTACK_PREFIX",),
        parsers.prefix,
        f"prefix of machine names; machines with it may be purged (default {DEFAULT_PREFIX})",
        "PREFIX",
    ),
    Option(
        "keep",
        "--orb-keep",
        "orb_keep",
        ("PYTEST_ORBSTACK_KEEP",),
        parsers.keep,
        "keep machines for debugging: never (default), failed (those used by failed tests) or always",
        "{never,failed,always}",
    ),
    Option(
        "ready_timeout",
        "--orb-ready-timeout",
        "orb_ready_timeout",
        ("PYTEST_ORBSTACK_READY_TIMEOUT",),
        parsers.seconds,
        f"seconds a machine may take to become ready (default {DEFAULT_READY_TIMEOUT:g})",
        "SECONDS",
    ),
    Option(
        "create_timeout",
        "--orb-create-timeout",
        "orb_create_timeout",
        ("PYTEST_ORBSTACK_CREATE_TIMEOUT",),
        parsers.seconds,
        "seconds one 'orbctl create' may take before it is killed (default 600); a create that "
        "hung is not tried again in the run",
        "SECONDS",
    ),
    Option(
        "clone_timeout",
        "--orb-clone-timeout",
        "orb_clone_timeout",
        ("PYTEST_ORBSTACK_CLONE_TIMEOUT",),
        parsers.seconds,
        "seconds one 'orbctl clone' may take before it is killed (default 300); a clone that hung "
        "is not tried again in the run",
        "SECONDS",
    ),
    Option(
        "machine_timeout",
        "--orb-machine-timeout",
        "orb_machine_timeout",
        ("PYTEST_ORBSTACK_MACHINE_TIMEOUT",),
        parsers.seconds,
        "seconds one machine may take from its first create or clone to ready, retries included "
        f"(default {DEFAULT_MACHINE_TIMEOUT:g})",
        "SECONDS",
    ),
    Option(
        "output_limit",
        "--orb-output-limit",
        "orb_output_limit",
        ("PYTEST_ORBSTACK_OUTPUT_LIMIT",),
        parsers.size,
        "bytes of stdout and of stderr kept per command run in a machine, the last ones "
        "(default 16M; K, M, G suffixes)",
        "SIZE",
    ),
    Option(
        "retries",
        "--orb-retries",
        "orb_retries",
        ("PYTEST_ORBSTACK_RETRIES",),
        parsers.retries,
        f"retries of transient failures of each orbctl call, 0 to {MAX_RETRIES} (default {DEFAULT_RETRIES})",
        "N",
    ),
    Option(
        "orbctl",
        "--orb-orbctl",
        "orb_orbctl",
        ("PYTEST_ORBSTACK_ORBCTL", "ORBCTL"),
        parsers.orbctl,
        "the orbctl executable (default: orbctl on PATH; on Linux, orbsim when there is no orbctl)",
        "PATH",
    ),
    Option(
        "no_purge",
        "--orb-no-purge",
        "orb_no_purge",
        ("PYTEST_ORBSTACK_NO_PURGE",),
        parsers.flag,
        "do not delete leftover machines of dead runs (this run still deletes its own)",
        is_flag=True,
    ),
    Option(
        "clone",
        "--orb-clone",
        "orb_clone",
        ("PYTEST_ORBSTACK_CLONE",),
        parsers.clone,
        "make machines by cloning one provisioned base machine per spec: auto (default: when OrbStack "
        "has 'orbctl clone', 2.0+), always, or never (create every machine)",
        "{auto,always,never}",
    ),
    Option(
        "reuse",
        "--orb-reuse",
        "orb_reuse",
        ("PYTEST_ORBSTACK_REUSE",),
        parsers.reuse,
        f"keep provisioned base machines ({REUSE_PREFIX}<hash>) across runs; "
        "--orb-reuse=refresh rebuilds them",
        "refresh",
        const="on",
    ),
    Option(
        "no_prefetch",
        "--orb-no-prefetch",
        "orb_no_prefetch",
        ("PYTEST_ORBSTACK_NO_PREFETCH",),
        parsers.flag,
        "do not make the next tests' orb_vm_fresh machines while the current test runs",
        is_flag=True,
    ),
    Option(
        "prefetch",
        "--orb-prefetch",
        "orb_prefetch",
        ("PYTEST_ORBSTACK_PREFETCH",),
        parsers.prefetch,
        "make the orb_vm_fresh machines of up to N coming tests while the current test runs "
        f"(default {DEFAULT_PREFETCH}; 0 = off)",
        "N",
    ),
    Option(
        "if_unavailable",
        "--orb-if-unavailable",
        "orb_if_unavailable",
        ("PYTEST_ORBSTACK_IF_UNAVAILABLE",),
        parsers.if_unavailable,
        "tests that need a machine when OrbStack (or orbsim) cannot be used: error (default, one "
        "line each) or skip (with the reason)",
        "{error,skip}",
    ),
    Option(
        "timeout_setup",
        "--orb-timeout-setup",
        "orb_timeout_setup",
        ("PYTEST_ORBSTACK_TIMEOUT_SETUP",),
        parsers.timeout_setup,
        "with pytest-timeout: exclude (default) stops a test's timer while its machines are made, "
        "include charges that time to the test",
        "{exclude,include}",
    ),
)


def add_options(parser: pytest.Parser) -> None:
    """Register every option and its ini twin."""
    group = parser.getgroup("orbstack", "OrbStack machines (pytest-orbstack)")
    for option in OPTIONS:
        env = " / ".join(f"${name}" for name in option.env)
        text = f"{option.help}. Env {env}, ini {option.ini}."
        if option.is_flag:
            group.addoption(
                option.flag, action="store_true", default=None, dest=f"orb_{option.field}", help=text
            )
            parser.addini(
                option.ini, f"{option.help}.", default=""
            )  # parsed by parsers.flag: errors name the key
        elif option.const is not None:
            group.addoption(
                option.flag,
                nargs="?",
                const=option.const,
                default=None,
                dest=f"orb_{option.field}",
                metavar=option.metavar,
                help=text,
            )
            parser.addini(option.ini, f"{option.help}.", default="")
        else:
            group.addoption(
                option.flag, default=None, dest=f"orb_{option.field}", metavar=option.metavar, help=text
            )
            parser.addini(option.ini, f"{option.help}.", default="")


def raw(config: pytest.Config, option: Option, environ: Mapping[str, str]) -> Optional[tuple[str, str, Path]]:
    """(value, source, base directory) of the first place that sets ``option``, or ``None``."""
    invocation = Path(config.invocation_params.dir)
    cli = getattr(config.option, f"orb_{option.field}", None)
    if cli is not None:
        return ("true" if cli is True else str(cli)), option.flag, invocation
    for name in option.env:
        if environ.get(name):
            return environ[name], f"env {name}", invocation
    ini = config.getini(option.ini)
    if ini:
        base = Path(config.inipath).parent if config.inipath else Path(config.rootpath)
        return str(ini), f"ini {option.ini}", base
    return None
