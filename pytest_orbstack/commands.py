"""The pure ``orbctl`` argv builder: input validation and argument lists, no I/O.

Longer than most modules on purpose: one builder per orbctl verb the plugin
runs, each with the checks of its input, mirrors orbctl's command line; the
validators stay beside the flags they guard.

Every builder returns the argv *without* the ``orbctl`` binary, e.g.
``["list", "-f", "json"]``, and validates its input first: a bad name, image,
architecture or option raises :class:`~pytest_orbstack.errors.InvalidSpecError`
with a one-line message saying what is allowed, so bad input never reaches
``orbctl``.  Flags that need a newer OrbStack than ``orb_version`` raise
:class:`~pytest_orbstack.errors.UnsupportedFeatureError`.

Values are always separate argv items: a name, path or command holding
``; $( ) ' "`` or spaces is passed on intact, never through a shell.

Image versions: the numeric aliases orbctl maps to codenames (``ubuntu:22.04``, ``debian:12``,
...) and any other token of ``[A-Za-z0-9._-]`` (starting with a letter or digit)
are accepted; whether such a version exists is for ``orbctl`` to say
(``image not found``), because the set of versions changes with every release.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import Final, Union

from pytest_orbstack.errors import InvalidSpecError, UnsupportedFeatureError
from pytest_orbstack.models import OrbVersion

__all__ = [
    "ARCHES",
    "CLOUD_INIT_UNSUPPORTED",
    "DISTROS",
    "NAME_PATTERN",
    "RESERVED_NAMES",
    "VERSION_ALIASES",
    "clone",
    "create",
    "delete",
    "info",
    "list_machines",
    "logs",
    "parse_image",
    "pull",
    "push",
    "rename",
    "restart",
    "run",
    "start",
    "status",
    "stop",
    "validate_arch",
    "validate_name",
    "validate_user",
    "version",
]

PathArg = Union[str, "os.PathLike[str]"]

#: The distros ``orbctl create`` knows (CLI names).
DISTROS: Final = (
    "alma", "alpine", "arch", "centos", "debian", "devuan", "fedora", "gentoo",
    "kali", "nixos", "openeuler", "opensuse", "oracle", "rocky", "ubuntu", "void",
)  # fmt: skip
#: Version aliases orbctl maps to codenames.
VERSION_ALIASES: Final[dict[str, dict[str, str]]] = {
    "debian": {"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie"},
    "ubuntu": {"20.04": "focal", "22.04": "jammy", "24.04": "noble", "24.10": "oracular", "25.04": "plucky"},
}
#: Distros whose machines cannot take a cloud-init user-data file (``-c``).
CLOUD_INIT_UNSUPPORTED: Final = ("arch", "gentoo", "void", "nixos")
ARCHES: Final = ("amd64", "arm64", "i386")
#: Names orbctl keeps for itself.
RESERVED_NAMES: Final = frozenset({"default", "vm", "host", "services", "gateway", "k8s", "docker"})
#: What orbctl accepts as a machine name (at least 2 characters).
NAME_PATTERN: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-.]+$")
_VERSION_TOKEN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: shadow's rule for user names (``lib/chkname.c``: ``[a-zA-Z0-9_.][a-zA-Z0-9_.-]*``), at most 32
#: characters: macOS short names such as ``john.doe`` or ``John`` are default users on OrbStack.
_USER_PATTERN: Final = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}")
_SIZE_PATTERN: Final = re.compile(r"[1-9][0-9]*[MG]")
_FORMATS: Final = ("json", "text")

#: First OrbStack version with each version-gated feature.
CLONE_SINCE: Final = OrbVersion(2, 0, 0)
ISOLATED_SINCE: Final = OrbVersion(2, 1, 0)
LIMITS_SINCE: Final = OrbVersion(2, 2, 0)

_NAME_ALLOWED: Final = (
    "2+ characters of letters, digits, '-' and '.', starting with a letter or digit, "
    f"not one of {', '.join(sorted(RESERVED_NAMES))}"
)


# --- validators ----------------------------------------------------------------------------------


def validate_name(name: str, *, field: str = "machine name") -> str:
    """Return ``name`` if orbctl accepts it for a new machine, else raise ``InvalidSpecError``."""
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None or name in RESERVED_NAMES:
        raise InvalidSpecError(field, name, _NAME_ALLOWED)
    return name


def _machine_ref(machine: str) -> str:
    """An existing machine, by name or ID (reserved names are not checked: they never exist)."""
    if not isinstance(machine, str) or NAME_PATTERN.fullmatch(machine) is None:
        raise InvalidSpecError("machine", machine, "a machine name or ID (letters, digits, '-', '.')")
    return machine


def _machine_refs(machines: Iterable[str], command: str) -> list[str]:
    refs = list(dict.fromkeys(_machine_ref(m) for m in machines))
    if not refs:
        raise InvalidSpecError("machines", (), f"'{command}' needs at least one machine name")
    return refs


def parse_image(image: str) -> tuple[str, str | None]:
    """Split ``DISTRO[:VERSION]`` into ``(distro, version or None)``, validating both."""
    if not isinstance(image, str):
        raise InvalidSpecError("image", image, "a string DISTRO[:VERSION], e.g. 'ubuntu:22.04'")
    distro, sep, version = image.partition(":")
    if distro not in DISTROS:
        raise InvalidSpecError("image", image, f"DISTRO[:VERSION] with DISTRO one of {', '.join(DISTROS)}")
    if not sep:
        return distro, None
    if _VERSION_TOKEN.fullmatch(version) is None:
        aliases = ", ".join(VERSION_ALIASES.get(distro, {})) or "a codename"
        raise InvalidSpecError(
            "image", image, f"VERSION must be letters, digits, '.', '_', '-' (for {distro}: e.g. {aliases})"
        )
    return distro, version


def validate_arch(arch: str) -> str:
    """Return ``arch`` if it is one of :data:`ARCHES`."""
    if arch not in ARCHES:
        raise InvalidSpecError("arch", arch, f"one of {', '.join(ARCHES)}")
    return arch


def validate_user(user: str) -> str:
    """Return ``user`` if it is a Linux user name (letters, digits, ``_ . -``, at most 32 chars).

    Not all digits (a uid), not ``.`` or ``..``, not starting with ``-``.
    """
    if (
        not isinstance(user, str)
        or _USER_PATTERN.fullmatch(user) is None
        or user.isdigit()
        or user in (".", "..")
    ):
        raise InvalidSpecError(
            "user",
            user,
            "a Linux user name: up to 32 letters, digits, '_', '.', '-' (e.g. john.doe), "
            "not starting with '-', not all digits",
        )
    return user


def _path(value: PathArg, field: str) -> str:
    """A path argument: non-empty, no NUL, not starting with '-' (orbctl would read it as a flag)."""
    try:
        text = os.fspath(value)
    except TypeError:
        raise InvalidSpecError(field, value, "a path (str or os.PathLike)") from None
    if not isinstance(text, str) or not text or "\0" in text or text.startswith("-"):
        raise InvalidSpecError(
            field, value, "a non-empty path without NUL, not starting with '-' (write ./-x)"
        )
    return text


def _size(value: str, field: str) -> str:
    if not isinstance(value, str) or _SIZE_PATTERN.fullmatch(value) is None:
        raise InvalidSpecError(field, value, "a size like 512M or 4G (a positive integer, then M or G)")
    return value


def _require(feature: str, since: OrbVersion, orb_version: OrbVersion | None) -> None:
    if orb_version is not None and orb_version < since:
        raise UnsupportedFeatureError(feature, str(since), str(orb_version))


# --- builders ------------------------------------------------------------------------------------


def status() -> list[str]:
    """``orbctl status``: prints Running / Stopped / Starting."""
    return ["status"]


def version() -> list[str]:
    """``orbctl version``."""
    return ["version"]


def create(
    image: str,
    name: str | None = None,
    *,
    arch: str | None = None,
    user: str | None = None,
    user_data: PathArg | None = None,
    cpus: int | None = None,
    memory: str | None = None,
    disk: str | None = None,
    isolated: bool = False,
    orb_version: OrbVersion | None = None,
) -> list[str]:
    """``orbctl create [flags] DISTRO[:VERSION] [NAME]``.

    ``user_data`` is only checked as a path here; whether the file is readable
    is checked by the client before it runs orbctl.
    """
    distro, _ = parse_image(image)
    argv = ["create"]
    if arch is not None:
        argv += ["-a", validate_arch(arch)]
    if user is not None:
        argv += ["-u", validate_user(user)]
    if user_data is not None:
        path = _path(user_data, "user_data")
        if distro in CLOUD_INIT_UNSUPPORTED:
            raise InvalidSpecError(
                "user_data", path, f"cloud-init (-c) is not supported for {', '.join(CLOUD_INIT_UNSUPPORTED)}"
            )
        argv += ["-c", path]
    if cpus is not None:
        if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
            raise InvalidSpecError("cpus", cpus, "a positive integer")
        _require("--cpus", LIMITS_SINCE, orb_version)
        argv += ["--cpus", str(cpus)]
    if memory is not None:
        argv += ["--memory", _size(memory, "memory")]
        _require("--memory", LIMITS_SINCE, orb_version)
    if disk is not None:
        argv += ["--disk", _size(disk, "disk")]
        _require("--disk", LIMITS_SINCE, orb_version)
    if isolated:
        _require("--isolated", ISOLATED_SINCE, orb_version)
        argv.append("--isolated")
    argv.append(image)
    if name is not None:
        argv.append(validate_name(name))
    return argv


def list_machines(*, running: bool = False, quiet: bool = False, fmt: str = "json") -> list[str]:
    """``orbctl list [-r] [-q] [-f FMT]``; with ``quiet`` (names only) no format is sent."""
    if fmt == "json" and not (running or quiet):
        return ["list", "-f", "json"]
    if fmt not in _FORMATS:
        raise InvalidSpecError("format", fmt, f"one of {', '.join(_FORMATS)}")
    argv = ["list"]
    if running:
        argv.append("-r")
    if quiet:
        return [*argv, "-q"]
    return [*argv, "-f", fmt]


def info(machine: str) -> list[str]:
    """``orbctl info MACHINE -f json``."""
    return ["info", _machine_ref(machine), "-f", "json"]


def start(*machines: str) -> list[str]:
    """``orbctl start MACHINE...``."""
    return ["start", *_machine_refs(machines, "start")]


def stop(*machines: str, force: bool = False) -> list[str]:
    """``orbctl stop [-f] MACHINE...``."""
    return ["stop", *(["-f"] if force else []), *_machine_refs(machines, "stop")]


def restart(*machines: str) -> list[str]:
    """``orbctl restart MACHINE...``."""
    return ["restart", *_machine_refs(machines, "restart")]


def delete(*machines: str, force: bool = True) -> list[str]:
    """``orbctl delete [-f] MACHINE...`` (duplicates dropped; at least one name, never a bare delete)."""
    return ["delete", *(["-f"] if force else []), *_machine_refs(machines, "delete")]


def clone(source: str, new: str, orb_version: OrbVersion | None = None) -> list[str]:
    """``orbctl clone SOURCE NEW`` (OrbStack 2.0+)."""
    _require("clone", CLONE_SINCE, orb_version)
    return ["clone", _machine_ref(source), validate_name(new, field="new machine name")]


def rename(old: str, new: str) -> list[str]:
    """``orbctl rename OLD NEW``."""
    return ["rename", _machine_ref(old), validate_name(new, field="new machine name")]


def run(
    machine: str, command: Sequence[str], *, user: str | None = None, workdir: str | None = None
) -> list[str]:
    """``orbctl run -m MACHINE [-u USER] [-w DIR] CMD [ARGS...]``: flags first, never ``--``.

    ``command`` is an argv list run without a shell (use ``["sh", "-c", "..."]``
    for shell syntax).  Its first item cannot start with ``-``: orbctl would
    read it as a flag and there is no ``--`` to stop that.
    """
    if isinstance(command, str) or not isinstance(command, Sequence):
        raise InvalidSpecError("command", command, "a list of argv items, e.g. ['sh', '-c', 'echo hi']")
    items = list(command)
    if not items:
        raise InvalidSpecError("command", command, "a non-empty list of argv items")
    if not all(isinstance(item, str) and "\0" not in item for item in items):
        raise InvalidSpecError("command", command, "argv items must be strings without NUL characters")
    if not items[0] or items[0].startswith("-"):
        raise InvalidSpecError(
            "command",
            command,
            "a program name first, not empty nor starting with '-' (e.g. ['env', '-i', ...])",
        )
    argv = ["run", "-m", _machine_ref(machine)]
    if user is not None:
        argv += ["-u", validate_user(user)]
    if workdir is not None:
        argv += ["-w", _path(workdir, "workdir")]
    return argv + items


def _transfer(verb: str, machine: str, sources: Sequence[PathArg], dest: PathArg | None) -> list[str]:
    if isinstance(sources, (str, os.PathLike)) or not sources:
        raise InvalidSpecError("sources", sources, f"a non-empty list of paths to {verb}")
    paths = [_path(source, "source") for source in sources]
    if dest is None and len(paths) > 1:
        raise InvalidSpecError("dest", dest, f"a destination when you {verb} several sources")
    argv = [verb, "-m", _machine_ref(machine), *paths]
    return argv if dest is None else [*argv, _path(dest, "dest")]


def push(machine: str, sources: Sequence[PathArg], dest: PathArg | None = None) -> list[str]:
    """``orbctl push -m MACHINE SRC... [DEST]`` (DEST defaults to the Linux home)."""
    return _transfer("push", machine, sources, dest)


def pull(machine: str, sources: Sequence[PathArg], dest: PathArg | None = None) -> list[str]:
    """``orbctl pull -m MACHINE SRC... [DEST]`` (DEST defaults to the current directory)."""
    return _transfer("pull", machine, sources, dest)


def logs(machine: str, all_logs: bool = False) -> list[str]:
    """``orbctl logs MACHINE [-a]``."""
    return ["logs", _machine_ref(machine), *(["-a"] if all_logs else [])]
