"""The session's options, ini values and environment variables, resolved once into :class:`Settings`.

Every setting can come from four places.  The first one that is set wins:

1. the command line (``--orb-image``),
2. the environment (``PYTEST_ORBSTACK_IMAGE``; the orbctl path also reads ``ORBCTL``),
3. the ini file (``orb_image``),
4. the default.

The ``orb`` marker of a test overrides the machine spec above all of them (see ``marker.py``).

A bad value raises :class:`pytest.UsageError` naming where it came from, before
any machine is created.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Final, Optional

import pytest

from pytest_orbstack import commands
from pytest_orbstack.client import DEFAULT_OUTPUT_LIMIT
from pytest_orbstack.errors import InvalidSpecError
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.naming import DEFAULT_PREFIX, REUSE_PREFIX, reuse_conflict, validate_prefix
from pytest_orbstack.retry import MAX_RETRIES

__all__ = [
    "IF_UNAVAILABLE_CHOICES",
    "SPEC_PARSERS",
    "Clone",
    "Keep",
    "Reuse",
    "Settings",
    "add_options",
    "load_settings",
]


class _Choice(str, enum.Enum):
    """An option value among a few words; equal to (and printed as) the word users type."""

    def __str__(self) -> str:
        return str(self.value)


class Keep(_Choice):
    """``--orb-keep``: which machines are kept for debugging instead of deleted."""

    NEVER = "never"
    FAILED = "failed"
    ALWAYS = "always"


class Clone(_Choice):
    """``--orb-clone``: make machines by cloning a provisioned base (``auto``: when OrbStack has clone)."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


class Reuse(_Choice):
    """``--orb-reuse``: keep provisioned bases across runs (``refresh``: rebuild them first)."""

    OFF = "off"
    ON = "on"
    REFRESH = "refresh"


DEFAULT_IMAGE: Final = "ubuntu:22.04"
DEFAULT_READY_TIMEOUT: Final = 120.0
DEFAULT_RETRIES: Final = 3
#: Machines made ahead at once per process (``--orb-prefetch``), and the most it accepts.
DEFAULT_PREFETCH: Final = 2
MAX_PREFETCH: Final = 16
#: The overall deadline of one machine, from its first create or clone to ready (``--orb-machine-timeout``).
DEFAULT_MACHINE_TIMEOUT: Final = 1200.0
#: The largest user-data file accepted: 1 MiB (it is read whole and handed to cloud-init).
MAX_USER_DATA: Final = 1024 * 1024
#: How a cloud-init user-data file may start (cloud-init's "user data formats"); gzip is accepted too.
USER_DATA_HEADERS: Final = (
    "#cloud-config",
    "#!",
    "#include",
    "#cloud-boothook",
    "#part-handler",
    "## template: jinja",
    "Content-Type: multipart/",
    "MIME-Version:",
)
_GZIP_MAGIC: Final = b"\x1f\x8b"
#: Bounds of ``--orb-output-limit``: 1 KiB to 1 GiB.
_OUTPUT_LIMITS: Final = (1024, 1024**3)
_SIZE: Final = re.compile(r"\s*([0-9]+)\s*([kKmMgG]?)i?[bB]?\s*")
#: ``--orb-if-unavailable`` values.
IF_UNAVAILABLE_CHOICES: Final = ("error", "skip")
#: A version given as a number: it must be one orbctl maps to a codename.
_NUMERIC: Final = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass(frozen=True)
class Settings:
    """Every pytest-orbstack setting of this run, validated."""

    #: image of machines, ``distro[:version]`` (``--orb-image``)
    image: str = DEFAULT_IMAGE
    #: CPU architecture, ``None`` = the host's (``--orb-arch``)
    arch: Optional[str] = None
    #: default user created in machines, ``None`` = OrbStack's default (``--orb-user``)
    user: Optional[str] = None
    #: absolute path of a cloud-init user-data file (``--orb-user-data``)
    user_data: Optional[str] = None
    #: prefix of every machine name (``--orb-prefix``)
    prefix: str = DEFAULT_PREFIX
    #: ``never``, ``failed`` or ``always`` (``--orb-keep``)
    keep: Keep = Keep.NEVER
    #: seconds a machine may take to become ready (``--orb-ready-timeout``)
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    #: seconds one ``orbctl create`` may take, ``None`` = the client's default (``--orb-create-timeout``)
    create_timeout: Optional[float] = None
    #: seconds one ``orbctl clone`` may take, ``None`` = the client's default (``--orb-clone-timeout``)
    clone_timeout: Optional[float] = None
    #: seconds one machine may take in all, retries included (``--orb-machine-timeout``)
    machine_timeout: float = DEFAULT_MACHINE_TIMEOUT
    #: retries of transient create/start/delete failures (``--orb-retries``)
    retries: int = DEFAULT_RETRIES
    #: bytes of stdout and of stderr kept per command (the last ones; ``--orb-output-limit``)
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    #: the orbctl to run, ``None`` = look for ``orbctl`` (then ``orbsim`` on Linux) (``--orb-orbctl``)
    orbctl: Optional[str] = None
    #: do not purge machines of dead runs (``--orb-no-purge``)
    no_purge: bool = False
    #: ``auto``, ``always`` or ``never``: clone machines from a provisioned base (``--orb-clone``)
    clone: Clone = Clone.AUTO
    #: ``off``, ``on`` or ``refresh``: keep provisioned bases across runs (``--orb-reuse``)
    reuse: Reuse = Reuse.OFF
    #: do not make the next tests' fresh machines while the current test runs (``--orb-no-prefetch``)
    no_prefetch: bool = False
    #: the most ``orb_vm_fresh`` machines made ahead at once per process (``--orb-prefetch``; 0 = off)
    prefetch: int = DEFAULT_PREFETCH
    #: ``error`` or ``skip``: machine tests when OrbStack cannot be used (``--orb-if-unavailable``)
    if_unavailable: str = "error"

    #: ``exclude`` or ``include``: making machines counts in pytest-timeout's timer (``--orb-timeout-setup``)
    timeout_setup: str = "exclude"

    @property
    def prefetch_limit(self) -> int:
        """How many machines prefetch may make ahead: 0 when it is off."""
        return 0 if self.no_prefetch else self.prefetch

    @property
    def spec(self) -> MachineSpec:
        """The machine spec of ``orb_vm`` and of machines without a marker."""
        return MachineSpec(image=self.image, arch=self.arch, user=self.user, user_data=self.user_data)


# --- validators: value -> parsed value, or ValueError with what is allowed -------------------------


def _image(value: str, base: Path) -> str:
    try:
        distro, version = commands.parse_image(value)
    except InvalidSpecError as exc:
        raise ValueError(f"expected {exc.allowed}") from None
    aliases = commands.VERSION_ALIASES.get(distro, {})
    if version and aliases and _NUMERIC.fullmatch(version) and version not in aliases:
        raise ValueError(
            f"unknown {distro} version: use one of {', '.join(aliases)} or a codename "
            f"({', '.join(aliases.values())})"
        )
    return value


def _arch(value: str, base: Path) -> str:
    try:
        return commands.validate_arch(value)
    except InvalidSpecError as exc:
        raise ValueError(f"expected {exc.allowed}") from None


def _user(value: str, base: Path) -> str:
    try:
        return commands.validate_user(value)
    except InvalidSpecError as exc:
        raise ValueError(f"expected {exc.allowed}") from None


def _user_data(value: str, base: Path) -> str:
    path = (base / os.path.expanduser(value)).resolve()
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_USER_DATA + 1)  # bounded: /dev/zero is refused, not read forever
    except OSError as exc:
        raise ValueError(f"expected a readable cloud-init user-data file ({path}: {exc.strerror})") from None
    problem = _user_data_problem(data)
    if problem is not None:
        raise ValueError(f"expected a cloud-init user-data file of at most 1 MiB ({path}: {problem})")
    return str(path)


def _user_data_problem(data: bytes) -> Optional[str]:
    """Why ``data`` is not cloud-init user-data, or ``None``."""
    if len(data) > MAX_USER_DATA:
        return "larger than 1 MiB"
    if data.startswith(_GZIP_MAGIC):
        return None  # cloud-init takes gzip-compressed user-data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary, not UTF-8 text"
    if "\0" in text:
        return "binary, contains NUL bytes"
    if not text.lstrip("\ufeff").startswith(USER_DATA_HEADERS):
        return f"its first line must start with one of {', '.join(USER_DATA_HEADERS)}"
    return None


def _prefix(value: str, base: Path) -> str:
    # At least 2 characters and a separator last: the run id stays a word of its own in names
    # (``ci-k3x9q2ab-main-...``, not ``xk3x9q2ab-main-...``), and the prefix cannot end in the
    # middle of a word of another prefix's names (``team`` would also start ``teamcity-...``).
    if len(value) < 2 or not value.endswith(("-", ".")):
        raise ValueError("use at least 2 characters ending in '-' or '.', e.g. 'pytest-test-' or 'ci.'")
    try:
        return validate_prefix(value)
    except InvalidSpecError as exc:
        raise ValueError(exc.allowed) from None  # naming's text starts with "use ..."


def _choice(kind: type[_Choice], value: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"expected one of {', '.join(member.value for member in kind)}") from None


def _keep(value: str, base: Path) -> Keep:
    return _choice(Keep, value)  # type: ignore[no-any-return]


def _seconds(value: str, base: Path) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("expected a number of seconds > 0")
    return seconds


def _retries(value: str, base: Path) -> int:
    if not value.strip().isdigit() or int(value) > MAX_RETRIES:
        raise ValueError(f"expected a whole number from 0 to {MAX_RETRIES}")
    return int(value)


def _prefetch(value: str, base: Path) -> int:
    if not value.strip().isdigit() or int(value) > MAX_PREFETCH:
        raise ValueError(f"expected a whole number from 0 (off) to {MAX_PREFETCH}")
    return int(value)


def _size(value: str, base: Path) -> int:
    match = _SIZE.fullmatch(value)
    if match is not None:
        size: int = int(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " ")
        if _OUTPUT_LIMITS[0] <= size <= _OUTPUT_LIMITS[1]:
            return size
    raise ValueError("expected a size from 1K to 1G: bytes, or a number with K, M or G (KiB, MiB, GiB)")


def _orbctl(value: str, base: Path) -> str:
    if os.sep not in value:
        found = shutil.which(value)
        if found is None:
            raise ValueError("expected an orbctl executable; none of that name is on PATH")
        return found
    path = (base / os.path.expanduser(value)).resolve()
    if not path.is_file():
        raise ValueError("expected the path of an executable orbctl; it does not exist")
    return str(path)  # not executable: machine tests say so in one line (the other tests run)


def _if_unavailable(value: str, base: Path) -> str:
    if value not in IF_UNAVAILABLE_CHOICES:
        raise ValueError(f"expected one of {', '.join(IF_UNAVAILABLE_CHOICES)}")
    return value


#: Values of ``--orb-timeout-setup``.
TIMEOUT_SETUP_CHOICES: Final = ("exclude", "include")


def _timeout_setup(value: str, base: Path) -> str:
    if value not in TIMEOUT_SETUP_CHOICES:
        raise ValueError(f"expected one of {', '.join(TIMEOUT_SETUP_CHOICES)}")
    return value


def _clone(value: str, base: Path) -> Clone:
    return _choice(Clone, value)  # type: ignore[no-any-return]


def _reuse(value: str, base: Path) -> Reuse:
    lowered = value.strip().lower()
    if lowered == "refresh":
        return Reuse.REFRESH
    try:
        return Reuse.ON if _flag(lowered, base) else Reuse.OFF
    except ValueError:
        raise ValueError(
            "expected nothing, refresh, or true/false (put paths before a bare --orb-reuse, "
            "or write --orb-reuse=on)"
        ) from None


def _flag(value: str, base: Path) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false (1/0, yes/no)")


@dataclass(frozen=True)
class _Option:
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
_OPTIONS: Final = (
    _Option("image", "--orb-image", "orb_image", ("PYTEST_ORBSTACK_IMAGE",), _image, _HELP_IMAGE, "IMAGE"),
    _Option(
        "arch",
        "--orb-arch",
        "orb_arch",
        ("PYTEST_ORBSTACK_ARCH",),
        _arch,
        "CPU architecture of machines: amd64, arm64 or i386 (default: the host's)",
        "ARCH",
    ),
    _Option(
        "user",
        "--orb-user",
        "orb_user",
        ("PYTEST_ORBSTACK_USER",),
        _user,
        "default user created in machines (default: OrbStack's, your user name)",
        "USER",
    ),
    _Option(
        "user_data",
        "--orb-user-data",
        "orb_user_data",
        ("PYTEST_ORBSTACK_USER_DATA",),
        _user_data,
        "cloud-init user-data file applied when machines are created",
        "FILE",
    ),
    _Option(
        "prefix",
        "--orb-prefix",
        "orb_prefix",
        ("PYTEST_ORBSTACK_PREFIX",),
        _prefix,
        f"prefix of machine names; machines with it may be purged (default {DEFAULT_PREFIX})",
        "PREFIX",
    ),
    _Option(
        "keep",
        "--orb-keep",
        "orb_keep",
        ("PYTEST_ORBSTACK_KEEP",),
        _keep,
        "keep machines for debugging: never (default), failed (those used by failed tests) or always",
        "{never,failed,always}",
    ),
    _Option(
        "ready_timeout",
        "--orb-ready-timeout",
        "orb_ready_timeout",
        ("PYTEST_ORBSTACK_READY_TIMEOUT",),
        _seconds,
        f"seconds a machine may take to become ready (default {DEFAULT_READY_TIMEOUT:g})",
        "SECONDS",
    ),
    _Option(
        "create_timeout",
        "--orb-create-timeout",
        "orb_create_timeout",
        ("PYTEST_ORBSTACK_CREATE_TIMEOUT",),
        _seconds,
        "seconds one 'orbctl create' may take before it is killed (default 600); a create that "
        "hung is not tried again in the run",
        "SECONDS",
    ),
    _Option(
        "clone_timeout",
        "--orb-clone-timeout",
        "orb_clone_timeout",
        ("PYTEST_ORBSTACK_CLONE_TIMEOUT",),
        _seconds,
        "seconds one 'orbctl clone' may take before it is killed (default 300); a clone that hung "
        "is not tried again in the run",
        "SECONDS",
    ),
    _Option(
        "machine_timeout",
        "--orb-machine-timeout",
        "orb_machine_timeout",
        ("PYTEST_ORBSTACK_MACHINE_TIMEOUT",),
        _seconds,
        "seconds one machine may take from its first create or clone to ready, retries included "
        f"(default {DEFAULT_MACHINE_TIMEOUT:g})",
        "SECONDS",
    ),
    _Option(
        "output_limit",
        "--orb-output-limit",
        "orb_output_limit",
        ("PYTEST_ORBSTACK_OUTPUT_LIMIT",),
        _size,
        "bytes of stdout and of stderr kept per command run in a machine, the last ones "
        "(default 16M; K, M, G suffixes)",
        "SIZE",
    ),
    _Option(
        "retries",
        "--orb-retries",
        "orb_retries",
        ("PYTEST_ORBSTACK_RETRIES",),
        _retries,
        f"retries of transient failures of each orbctl call, 0 to {MAX_RETRIES} (default {DEFAULT_RETRIES})",
        "N",
    ),
    _Option(
        "orbctl",
        "--orb-orbctl",
        "orb_orbctl",
        ("PYTEST_ORBSTACK_ORBCTL", "ORBCTL"),
        _orbctl,
        "the orbctl executable (default: orbctl on PATH; on Linux, orbsim when there is no orbctl)",
        "PATH",
    ),
    _Option(
        "no_purge",
        "--orb-no-purge",
        "orb_no_purge",
        ("PYTEST_ORBSTACK_NO_PURGE",),
        _flag,
        "do not delete leftover machines of dead runs (this run still deletes its own)",
        is_flag=True,
    ),
    _Option(
        "clone",
        "--orb-clone",
        "orb_clone",
        ("PYTEST_ORBSTACK_CLONE",),
        _clone,
        "make machines by cloning one provisioned base machine per spec: auto (default: when OrbStack "
        "has 'orbctl clone', 2.0+), always, or never (create every machine)",
        "{auto,always,never}",
    ),
    _Option(
        "reuse",
        "--orb-reuse",
        "orb_reuse",
        ("PYTEST_ORBSTACK_REUSE",),
        _reuse,
        f"keep provisioned base machines ({REUSE_PREFIX}<hash>) across runs; "
        "--orb-reuse=refresh rebuilds them",
        "refresh",
        const="on",
    ),
    _Option(
        "no_prefetch",
        "--orb-no-prefetch",
        "orb_no_prefetch",
        ("PYTEST_ORBSTACK_NO_PREFETCH",),
        _flag,
        "do not make the next tests' orb_vm_fresh machines while the current test runs",
        is_flag=True,
    ),
    _Option(
        "prefetch",
        "--orb-prefetch",
        "orb_prefetch",
        ("PYTEST_ORBSTACK_PREFETCH",),
        _prefetch,
        "make the orb_vm_fresh machines of up to N coming tests while the current test runs "
        f"(default {DEFAULT_PREFETCH}; 0 = off)",
        "N",
    ),
    _Option(
        "if_unavailable",
        "--orb-if-unavailable",
        "orb_if_unavailable",
        ("PYTEST_ORBSTACK_IF_UNAVAILABLE",),
        _if_unavailable,
        "tests that need a machine when OrbStack (or orbsim) cannot be used: error (default, one "
        "line each) or skip (with the reason)",
        "{error,skip}",
    ),
    _Option(
        "timeout_setup",
        "--orb-timeout-setup",
        "orb_timeout_setup",
        ("PYTEST_ORBSTACK_TIMEOUT_SETUP",),
        _timeout_setup,
        "with pytest-timeout: exclude (default) stops a test's timer while its machines are made, "
        "include charges that time to the test",
        "{exclude,include}",
    ),
)


def add_options(parser: pytest.Parser) -> None:
    """Register every option and its ini twin."""
    group = parser.getgroup("orbstack", "OrbStack machines (pytest-orbstack)")
    for option in _OPTIONS:
        env = " / ".join(f"${name}" for name in option.env)
        text = f"{option.help}. Env {env}, ini {option.ini}."
        if option.is_flag:
            group.addoption(
                option.flag, action="store_true", default=None, dest=f"orb_{option.field}", help=text
            )
            parser.addini(option.ini, f"{option.help}.", default="")  # parsed by _flag: errors name the key
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


def _raw(
    config: pytest.Config, option: _Option, environ: Mapping[str, str]
) -> Optional[tuple[str, str, Path]]:
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


def load_settings(config: pytest.Config, environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Resolve every setting (CLI > env > ini > default); :class:`pytest.UsageError` on a bad value."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in _OPTIONS:
        found = _raw(config, option, env)
        if found is None:
            continue
        value, source, base = found
        try:
            values[option.field] = option.parse(value, base)
        except ValueError as exc:
            raise pytest.UsageError(f"{source}: {exc}, got {value!r}") from None
        sources[option.field] = source
    settings = Settings(**values)
    conflict = reuse_conflict(settings.prefix) if settings.reuse != Reuse.OFF else None
    if conflict is not None:
        raise pytest.UsageError(f"{sources['reuse']}: {conflict}")
    return settings


#: The validators of the spec fields a marker or ``orb_machines.create`` may set: value, base
#: directory -> the value, or :class:`ValueError` saying what is allowed.
SPEC_PARSERS: Final[Mapping[str, Callable[[str, Path], Any]]] = {
    "image": _image,
    "arch": _arch,
    "user": _user,
    "user_data": _user_data,
}
