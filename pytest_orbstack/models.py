"""Value objects: the OrbStack version and machine records parsed from ``orbctl`` output, and the
spec a machine is made from (:class:`MachineSpec`).

Parsers accept every shape ``orbctl`` has printed (see ``docs/orbctl.md``):

* ``list -f json``: a JSON array of records, ``[]`` when there are none;
* ``info NAME -f json`` on 2.0+: ``{"record": {...}, "disk_size": N|null, "ip4": ..., "ip6": ...}``,
  where ``ip4`` / ``ip6`` are absent while the machine has no address;
* ``info NAME -f json`` on 1.x: the bare record, no wrapper and no addresses;
* ``record.config`` with only ``isolated`` (before 2024), with ``default_username``,
  or with the 2.1/2.2 keys (``cpu_limit``, ...).  Unknown keys are ignored everywhere.

Anything else raises :class:`~pytest_orbstack.errors.OrbctlParseError`, which keeps the text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final, final

from pytest_orbstack.errors import OrbctlParseError

__all__ = ["MachineInfo", "MachineSpec", "OrbVersion", "parse_machine_info", "parse_machine_list"]

#: ``Version: 2.0.4 (2000400)`` (first line of ``orbctl version``) or a bare ``2.0.4``.
_VERSION_RE: Final = re.compile(
    r"(?:Version:\s*)?v?(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?(?:\s*\((\d+)\))?",
)


@final
@dataclass(frozen=True, order=True)
class OrbVersion:
    """An OrbStack version, ordered by ``(major, minor, patch)``; ``build`` is informative only."""

    #: major version (``2`` in ``2.0.4``)
    major: int
    #: minor version
    minor: int
    #: patch level
    patch: int
    #: build number printed in parentheses (``2000400``), not compared
    build: int | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str) -> OrbVersion:
        """Parse the output of ``orbctl version`` or a bare ``MAJOR.MINOR.PATCH``."""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        match = _VERSION_RE.fullmatch(lines[0]) if lines else None
        if match is None:
            raise OrbctlParseError(
                "expected 'Version: MAJOR.MINOR.PATCH (BUILD)' or 'MAJOR.MINOR.PATCH'", text
            )
        major, minor, patch, build = match.groups()
        return cls(int(major), int(minor), int(patch), int(build) if build is not None else None)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@final
@dataclass(frozen=True)
class MachineInfo:
    """One machine as ``orbctl list -f json`` / ``orbctl info -f json`` describes it."""

    #: the machine's ULID (26 characters)
    id: str
    #: the machine name (also its hostname)
    name: str
    #: image name, e.g. ``ubuntu``, ``archlinux`` (orbctl's image name, not always the CLI name)
    distro: str
    #: image version as stored, a codename after alias mapping (``jammy`` for ``22.04``)
    version: str
    #: ``amd64``, ``arm64`` or ``i386``
    arch: str
    #: ``default``, ``cloud`` (created with cloud-init) or ``openrc``
    variant: str
    #: ``creating``, ``provisioning``, ``starting``, ``running``, ``stopping``, ``stopped``, ``deleting``
    state: str
    #: the machine's default user; ``None`` when orbctl does not say (before 2024)
    default_username: str | None
    #: whether the machine is isolated from the Mac
    isolated: bool
    #: IPv4 address, ``None`` while there is none (stopped, just started) or on 1.x
    ip4: str | None
    #: IPv6 address, ``None`` while there is none or on 1.x
    ip6: str | None
    #: disk usage in bytes, ``None`` when orbctl does not know it
    disk_size: int | None
    #: orbctl's own built-in machine (hidden from ``list``)
    builtin: bool
    #: the parsed JSON object, for keys this class does not model
    raw: dict[str, Any] = field(compare=False, hash=False, repr=False)
    #: the default user's Linux home, as the readiness probe printed it (``orbctl info`` does not say)
    home: str | None = field(default=None, compare=False)

    @property
    def image(self) -> str:
        """``distro:version`` as stored by orbctl, e.g. ``ubuntu:jammy``."""
        return f"{self.distro}:{self.version}"

    @property
    def running(self) -> bool:
        """Whether the state is ``running``."""
        return self.state == "running"


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:
        raise OrbctlParseError(f"orbctl output is not JSON ({exc})", str(text)) from None


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], text: str, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise OrbctlParseError(f"{where}.{key} is missing or not a {_kind_name(kind)}", text)
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _optional(obj: dict[str, Any], key: str, kind: type, text: str, where: str) -> Any:
    if obj.get(key) is None:
        return None
    return _get(obj, key, kind, text, where)


def _record(obj: Any, text: str, extra: dict[str, Any] | None = None) -> MachineInfo:
    """Build a :class:`MachineInfo` from one record (plus the 2.0 wrapper's fields in ``extra``)."""
    if not isinstance(obj, dict):
        raise OrbctlParseError("expected a JSON object for a machine record", text)
    image = _get(obj, "image", dict, text, "record")
    config = obj.get("config")
    config = {} if config is None else config
    if not isinstance(config, dict):
        raise OrbctlParseError("record.config is not an object", text)
    wrapper = extra or {}
    builtin = obj.get("builtin", False)
    isolated = config.get("isolated", False)
    if not isinstance(builtin, bool) or not isinstance(isolated, bool):
        raise OrbctlParseError("record.builtin / record.config.isolated is not a boolean", text)
    return MachineInfo(
        id=_get(obj, "id", str, text, "record"),
        name=_get(obj, "name", str, text, "record"),
        distro=_get(image, "distro", str, text, "record.image"),
        version=_get(image, "version", str, text, "record.image"),
        arch=_get(image, "arch", str, text, "record.image"),
        variant=_optional(image, "variant", str, text, "record.image") or "default",
        state=_get(obj, "state", str, text, "record"),
        default_username=_optional(config, "default_username", str, text, "record.config"),
        isolated=isolated,
        ip4=_optional(wrapper, "ip4", str, text, "info"),
        ip6=_optional(wrapper, "ip6", str, text, "info"),
        disk_size=_optional(wrapper, "disk_size", int, text, "info"),
        builtin=builtin,
        raw=dict(wrapper) if extra is not None else dict(obj),
    )


def parse_machine_list(text: str) -> list[MachineInfo]:
    """Parse ``orbctl list -f json``: a JSON array of machine records (``[]`` when empty)."""
    data = _load(text)
    if not isinstance(data, list):
        raise OrbctlParseError("expected a JSON array of machines from 'orbctl list -f json'", text)
    return [_record(item, text) for item in data]


def parse_machine_info(text: str) -> MachineInfo:
    """Parse ``orbctl info NAME -f json``: the 2.0+ wrapper or the 1.x bare record."""
    data = _load(text)
    if not isinstance(data, dict):
        raise OrbctlParseError("expected a JSON object from 'orbctl info -f json'", text)
    if "record" in data:
        return _record(data["record"], text, extra=data)
    return _record(data, text)


@dataclass(frozen=True)
class MachineSpec:
    """What a machine is made from.  Hashable: equal specs make interchangeable machines."""

    #: image, ``distro[:version]`` as orbctl takes it (``ubuntu:22.04``)
    image: str
    #: CPU architecture, ``None`` = the host's
    arch: str | None = None
    #: default user, ``None`` = OrbStack's default
    user: str | None = None
    #: absolute path of a cloud-init user-data file, or ``None``
    user_data: str | None = None

    def describe(self) -> str:
        parts = [self.image]
        if self.arch:
            parts.append(self.arch)
        if self.user:
            parts.append(f"user {self.user}")
        if self.user_data:
            parts.append("cloud-init")
        return ", ".join(parts)
