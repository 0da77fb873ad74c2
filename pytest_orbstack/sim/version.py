"""Which OrbStack version orbsim emulates (``ORBSIM_VERSION``, default 2.0.4).

The version decides the details that changed between OrbStack releases:

- before 2.0: ``info -f json`` prints the bare record, "machine not found" has
  no name, there is no ``clone`` command;
- before 1.3 (January 2024): ``record.config`` holds only ``isolated``;
- 2.1+: ``create --isolated`` and the config keys ``isolate_network`` and
  ``forward_ssh_agent``;
- 2.1.x: ``push``/``pull`` fail on isolated machines (their ``cp`` goes through
  ``/mnt/mac``); 2.2.0 made them work;
- 2.2+: ``create --cpus/--memory/--disk`` and the limit keys of the config.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Final, Optional

DEFAULT: Final = "2.0.4"

Version = tuple[int, int, int]


class VersionError(ValueError):
    """``ORBSIM_VERSION`` is not a version orbsim understands."""


def parse(text: str) -> Version:
    """``"2.0.4"`` -> ``(2, 0, 4)``; ``"1.9"`` -> ``(1, 9, 0)``."""
    parts = text.strip().lstrip("v").split(".")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= 3 or any(n < 0 for n in numbers):
        raise VersionError(f"ORBSIM_VERSION={text!r} is not a version: use MAJOR.MINOR.PATCH, e.g. 2.0.4")
    numbers += [0] * (3 - len(numbers))
    return (numbers[0], numbers[1], numbers[2])


def current(environ: Optional[Mapping[str, str]] = None) -> Version:
    env = os.environ if environ is None else environ
    return parse(env.get("ORBSIM_VERSION", "") or DEFAULT)


def build_number(v: Version) -> int:
    """OrbStack's build number: 2.0.4 -> 2000400."""
    return v[0] * 1_000_000 + v[1] * 10_000 + v[2] * 100


def text(v: Version) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}"


def version_output(v: Version) -> str:
    """What ``orbctl version`` prints (two lines)."""
    import hashlib  # start-up time: every orbctl command loads this module, only ``version`` hashes

    sha = hashlib.sha1(f"orbsim {text(v)}".encode()).hexdigest()
    return f"Version: {text(v)} ({build_number(v)})\nCommit: {sha} (v{text(v)})\n"


def has_clone(v: Version) -> bool:
    return v >= (2, 0, 0)


def info_wrapped(v: Version) -> bool:
    return v >= (2, 0, 0)


def not_found_has_name(v: Version) -> bool:
    return v >= (2, 0, 0)


def config_has_username(v: Version) -> bool:
    return v >= (1, 3, 0)


def has_isolated_flag(v: Version) -> bool:
    return v >= (2, 1, 0)


def has_limits(v: Version) -> bool:
    return v >= (2, 2, 0)


def delete_cancels_create(v: Version) -> bool:
    return v >= (2, 0, 0)


def isolated_transfer(v: Version) -> bool:
    """push/pull work on ``--isolated`` machines (OrbStack 2.2.0, issue orbstack/orbstack#2469)."""
    return v >= (2, 2, 0)
