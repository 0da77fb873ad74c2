"""What each option accepts: its validator, and the words of the options that take a choice.

A validator takes the text a user gave and the directory relative paths are
read from; it returns the parsed value or raises :class:`ValueError` with what
is allowed (``settings.load_settings`` adds where the value came from).  The
option table is in ``options.py``, the resolved :class:`~pytest_orbstack.settings.Settings`
in ``settings.py``.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Final, Optional

from pytest_orbstack import commands
from pytest_orbstack.errors import InvalidSpecError
from pytest_orbstack.naming import validate_prefix
from pytest_orbstack.retry import MAX_RETRIES

__all__ = [
    "IF_UNAVAILABLE_CHOICES",
    "MAX_PREFETCH",
    "SPEC_PARSERS",
    "TIMEOUT_SETUP_CHOICES",
    "Clone",
    "Keep",
    "Reuse",
    "arch",
    "clone",
    "flag",
    "if_unavailable",
    "image",
    "keep",
    "orbctl",
    "prefetch",
    "prefix",
    "retries",
    "reuse",
    "seconds",
    "size",
    "timeout_setup",
    "user",
    "user_data",
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


#: Machines made ahead at once per process (``--orb-prefetch``): the most it accepts.
MAX_PREFETCH: Final = 16
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
#: Values of ``--orb-timeout-setup``.
TIMEOUT_SETUP_CHOICES: Final = ("exclude", "include")


# --- validators: value -> parsed value, or ValueError with what is allowed -------------------------


def image(value: str, base: Path) -> str:
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


def arch(value: str, base: Path) -> str:
    try:
        return commands.validate_arch(value)
    except InvalidSpecError as exc:
        raise ValueError(f"expected {exc.allowed}") from None


def user(value: str, base: Path) -> str:
    try:
        return commands.validate_user(value)
    except InvalidSpecError as exc:
        raise ValueError(f"expected {exc.allowed}") from None


def user_data(value: str, base: Path) -> str:
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


def prefix(value: str, base: Path) -> str:
    try:
        return validate_prefix(value)
    except InvalidSpecError as exc:
        raise ValueError(exc.allowed) from None  # naming's text starts with "use ..."


def _choice(kind: type[_Choice], value: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"expected one of {', '.join(member.value for member in kind)}") from None


def keep(value: str, base: Path) -> Keep:
    return _choice(Keep, value)  # type: ignore[no-any-return]


def seconds(value: str, base: Path) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("expected a number of seconds > 0")
    return seconds


def retries(value: str, base: Path) -> int:
    if not value.strip().isdigit() or int(value) > MAX_RETRIES:
        raise ValueError(f"expected a whole number from 0 to {MAX_RETRIES}")
    return int(value)


def prefetch(value: str, base: Path) -> int:
    if not value.strip().isdigit() or int(value) > MAX_PREFETCH:
        raise ValueError(f"expected a whole number from 0 (off) to {MAX_PREFETCH}")
    return int(value)


def size(value: str, base: Path) -> int:
    match = _SIZE.fullmatch(value)
    if match is not None:
        size: int = int(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " ")
        if _OUTPUT_LIMITS[0] <= size <= _OUTPUT_LIMITS[1]:
            return size
    raise ValueError("expected a size from 1K to 1G: bytes, or a number with K, M or G (KiB, MiB, GiB)")


def orbctl(value: str, base: Path) -> str:
    if os.sep not in value:
        found = shutil.which(value)
        if found is None:
            raise ValueError("expected an orbctl executable; none of that name is on PATH")
        return found
    path = (base / os.path.expanduser(value)).resolve()
    if not path.is_file():
        raise ValueError("expected the path of an executable orbctl; it does not exist")
    return str(path)  # not executable: machine tests say so in one line (the other tests run)


def if_unavailable(value: str, base: Path) -> str:
    if value not in IF_UNAVAILABLE_CHOICES:
        raise ValueError(f"expected one of {', '.join(IF_UNAVAILABLE_CHOICES)}")
    return value


def timeout_setup(value: str, base: Path) -> str:
    if value not in TIMEOUT_SETUP_CHOICES:
        raise ValueError(f"expected one of {', '.join(TIMEOUT_SETUP_CHOICES)}")
    return value


def clone(value: str, base: Path) -> Clone:
    return _choice(Clone, value)  # type: ignore[no-any-return]


def reuse(value: str, base: Path) -> Reuse:
    lowered = value.strip().lower()
    if lowered == "refresh":
        return Reuse.REFRESH
    try:
        return Reuse.ON if flag(lowered, base) else Reuse.OFF
    except ValueError:
        raise ValueError(
            "expected nothing, refresh, or true/false (put paths before a bare --orb-reuse, "
            "or write --orb-reuse=on)"
        ) from None


def flag(value: str, base: Path) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false (1/0, yes/no)")


#: The validators of the spec fields a marker or ``orb_machines.create`` may set: value, base
#: directory -> the value, or :class:`ValueError` saying what is allowed.
SPEC_PARSERS: Final[Mapping[str, Callable[[str, Path], Any]]] = {
    "image": image,
    "arch": arch,
    "user": user,
    "user_data": user_data,
}
