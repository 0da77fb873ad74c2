"""Options, ini values, environment variables and the ``orb`` marker, resolved once.

Every setting can come from four places.  The first one that is set wins:

1. the ``@pytest.mark.orb(...)`` marker (only ``image``, ``arch``, ``user``, ``user_data``,
   and only for ``orb_vm_fresh`` / ``orb_machines``),
2. the command line (``--orb-image``),
3. the environment (``PYTEST_ORBSTACK_IMAGE``; the orbctl path also reads ``ORBCTL``),
4. the ini file (``orb_image``),
5. the default.

A bad value raises :class:`pytest.UsageError` naming where it came from, before
any machine is created.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Final, Optional

import pytest

from pytest_orbstack import bases, commands
from pytest_orbstack.availability import IF_UNAVAILABLE_CHOICES
from pytest_orbstack.client import DEFAULT_OUTPUT_LIMIT
from pytest_orbstack.errors import InvalidSpecError
from pytest_orbstack.naming import DEFAULT_PREFIX, validate_prefix
from pytest_orbstack.provisioner import MachineSpec
from pytest_orbstack.retry import MAX_RETRIES

__all__ = [
    "KEEP_CHOICES",
    "MARKER_ARGS",
    "MarkerError",
    "Settings",
    "add_options",
    "check_marker_use",
    "load_settings",
    "marker_overrides",
    "spec_for",
]

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
KEEP_CHOICES: Final = ("never", "failed", "always")
#: The arguments ``@pytest.mark.orb`` accepts.
MARKER_ARGS: Final = ("image", "arch", "user", "user_data")
MARKER_LINE: Final = (
    "orb(image=None, arch=None, user=None, user_data=None): the machine spec of orb_vm_fresh and the "
    "defaults of orb_machines for this test; every test using a machine fixture has it, so "
    "-m 'not orb' deselects them (pytest-orbstack)"
)
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
    keep: str = "never"
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
    clone: str = "auto"
    #: ``off``, ``on`` or ``refresh``: keep provisioned bases across runs (``--orb-reuse``)
    reuse: str = "off"
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


def _keep(value: str, base: Path) -> str:
    if value not in KEEP_CHOICES:
        raise ValueError(f"expected one of {', '.join(KEEP_CHOICES)}")
    return value


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


def _clone(value: str, base: Path) -> str:
    if value not in bases.CLONE_CHOICES:
        raise ValueError(f"expected one of {', '.join(bases.CLONE_CHOICES)}")
    return value


def _reuse(value: str, base: Path) -> str:
    lowered = value.strip().lower()
    if lowered == "refresh":
        return "refresh"
    try:
        return "on" if _flag(lowered, base) else "off"
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
        f"keep provisioned base machines ({bases.REUSE_PREFIX}<hash>) across runs; "
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

#: Environment variable names, for the docs and the help text.
ENV_NAMES: Final = {option.field: option.env for option in _OPTIONS}


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
    conflict = bases.reuse_conflict(settings.prefix) if settings.reuse != "off" else None
    if conflict is not None:
        raise pytest.UsageError(f"{sources['reuse']}: {conflict}")
    return settings


class MarkerError(Exception):
    """An ``@pytest.mark.orb`` marker is wrong; the message names the test and the argument."""


_MARKER_PARSERS: Final[dict[str, Callable[[str, Path], Any]]] = {
    "image": _image,
    "arch": _arch,
    "user": _user,
    "user_data": _user_data,
}


def spec_fields(values: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """Spec fields given in test code (``orb_machines.create(...)``), validated as a marker's are.

    ``None`` values are left out; ``user_data`` is relative to ``base`` (the
    test file's directory).  A bad value raises :class:`InvalidSpecError`
    naming the field and what is allowed.
    """
    found: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if not isinstance(value, str) and not (key == "user_data" and isinstance(value, os.PathLike)):
            kind = "a str or a path" if key == "user_data" else "a str"
            raise InvalidSpecError(key, value, f"expected {kind}, got {type(value).__name__}")
        try:
            found[key] = _MARKER_PARSERS[key](os.fspath(value), base)
        except (TypeError, ValueError) as exc:
            raise InvalidSpecError(key, value, str(exc)) from None
    return found


#: Fixtures whose machines an ``orb`` marker shapes.
MARKED_FIXTURES: Final = ("orb_vm_fresh", "orb_machines")


def check_marker_use(item: pytest.Item) -> None:
    """An ``orb`` marker with arguments on a test that only uses ``orb_vm`` is a :class:`MarkerError`.

    ``orb_vm`` is shared by the whole worker and made from the options, so
    such a marker would be silently ignored.  Markers of a class or module
    apply to many tests and are left alone.
    """
    fixtures = getattr(item, "fixturenames", ())
    if "orb_vm" not in fixtures or any(name in fixtures for name in MARKED_FIXTURES):
        return
    if any(mark.name == "orb" and mark.kwargs for mark in item.own_markers):
        raise MarkerError(
            f"{item.nodeid}: @pytest.mark.orb does not apply to orb_vm (one machine shared by the "
            "worker, made from the --orb-* options); use orb_vm_fresh or orb_machines, or the options"
        )


def marker_overrides(item: pytest.Item) -> dict[str, Any]:
    """The spec fields set by ``orb`` markers on ``item`` (closest marker wins), validated.

    Raises :class:`MarkerError` for a positional argument, an unknown argument,
    an argument given twice at one level (two ``orb`` markers on one function)
    or a bad value.  ``user_data`` paths are relative to the test file's directory.
    """
    found: dict[str, Any] = {}
    checked: list[Any] = []
    base = Path(str(item.path)).parent
    for node, mark in item.iter_markers_with_node("orb"):
        if mark.args:
            raise MarkerError(
                f"{item.nodeid}: @pytest.mark.orb takes keyword arguments only "
                f"({', '.join(MARKER_ARGS)}), got positional {mark.args!r}"
            )
        if node not in checked:
            _check_same_level(item, node)
            checked.append(node)
        for key, value in mark.kwargs.items():
            if key not in MARKER_ARGS:
                raise MarkerError(
                    f"{item.nodeid}: @pytest.mark.orb got an unknown argument {key!r}; "
                    f"allowed: {', '.join(MARKER_ARGS)}"
                )
            if key in found or value is None:
                continue  # a closer marker already set it
            try:
                found.update(spec_fields({key: value}, base))
            except InvalidSpecError as exc:
                where = f"{item.nodeid}: @pytest.mark.orb({key}={value!r})"
                raise MarkerError(f"{where}: {exc.allowed}") from None
    return found


def _check_same_level(item: pytest.Item, node: Any) -> None:
    """Two ``orb`` markers on the same node may not set the same argument."""
    seen: dict[str, int] = {}
    for other in node.own_markers:
        if other.name != "orb":
            continue
        for key in other.kwargs:
            seen[key] = seen.get(key, 0) + 1
    twice = sorted(key for key, count in seen.items() if count > 1)
    if twice:
        raise MarkerError(
            f"{item.nodeid}: @pytest.mark.orb argument {twice[0]!r} is given twice (duplicate orb markers)"
        )


def spec_for(settings: Settings, overrides: Mapping[str, Any]) -> MachineSpec:
    """The spec of a machine for a test: marker values over the run's settings."""
    base = settings.spec
    return MachineSpec(
        image=overrides.get("image", base.image),
        arch=overrides.get("arch", base.arch),
        user=overrides.get("user", base.user),
        user_data=overrides.get("user_data", base.user_data),
    )
