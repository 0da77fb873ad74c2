"""Run ids and machine names.

Every machine the plugin makes is named ``<prefix><run id>-<worker>-<token>``,
for example ``pytest-test-02n8kq7f1x9a-gw1-7fd0qz``.  The run id is twelve
characters from ``[a-z0-9]``:

* 5: the pid of the process that owns the run's machines (the pytest
  process, the xdist controller under xdist, or on another host the
  worker elected there: see :mod:`pytest_orbstack.hosts`), in base 36;
* 4: a fingerprint of that process's start time
  (:func:`pytest_orbstack.processes.fingerprint`);
* 3: a serial number from a random start, so that several runs in one
  process (``pytester``) differ.

The name alone tells which process on the host owns the machine, so every
run on the same OrbStack can decide whether a machine is an orphan
(see :mod:`pytest_orbstack.ownership`) whatever its ``HOME`` or state
directory.  Names of earlier versions carry an 8-character random run id.
"""

from __future__ import annotations

import os
import re
import secrets
import string
from typing import Final, Optional

from pytest_orbstack import processes
from pytest_orbstack.errors import InvalidSpecError

__all__ = [
    "DEFAULT_PREFIX",
    "KEPT_PREFIX",
    "kept_name",
    "REUSE_PREFIX",
    "machine_name",
    "new_run_id",
    "owner_of",
    "reuse_conflict",
    "run_id_of",
    "validate_prefix",
    "worker_tag",
]

#: The prefix of every machine the plugin creates unless ``--orb-prefix`` says otherwise.
DEFAULT_PREFIX: Final = "pytest-test-"
#: The prefix of provisioned base machines kept across runs (``--orb-reuse``).  The purge
#: never deletes them, whatever prefix a run purges.
REUSE_PREFIX: Final = "pytest-base-"
#: Machines kept for debugging (``--orb-keep``) are renamed to ``pytest-kept-<run id>-<worker>-<token>``:
#: the purge never deletes them, whatever prefix a run purges.
KEPT_PREFIX: Final = "pytest-kept-"

_ALPHABET: Final = string.ascii_lowercase + string.digits
_PID_LENGTH: Final = 5  # 36**5 > 2**22, the largest pid_max of Linux; macOS pids stay below 100000
_SERIAL_LENGTH: Final = 3
_RUN_ID_LENGTH: Final = _PID_LENGTH + processes.FINGERPRINT_LENGTH + _SERIAL_LENGTH
#: Runs in one process (``pytester``) count on from a random start: their ids never repeat.
_FIRST_SERIAL: Final = secrets.randbelow(36**_SERIAL_LENGTH)
_runs_here = 0
_TOKEN_LENGTH: Final = 6
#: A run id, or the eight random characters of a run id of an earlier version.
_RUN_ID: Final = r"[a-z0-9]{12}|[a-z0-9]{8}"
#: What follows the prefix in a name this plugin made.
_TAIL_RE: Final = re.compile(rf"(?:^|-)({_RUN_ID})-(?:main|gw[0-9]+)-[a-z0-9]{{6}}$")
#: orbctl's machine name rule (see docs/orbctl.md), used to check that a prefix can start names.
_NAME_RE: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9.-]+$")
#: Machine names become host names, which are limited to 63 characters.
_MAX_NAME_LENGTH: Final = 63
_SUFFIX_LENGTH: Final = _RUN_ID_LENGTH + 1 + len("gw999") + 1 + _TOKEN_LENGTH


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _base36(value: int, width: int) -> str:
    digits = ""
    while value:
        value, digit = divmod(value, len(_ALPHABET))
        digits = (string.digits + string.ascii_lowercase)[digit] + digits
    return digits.rjust(width, "0")


def new_run_id(pid: Optional[int] = None, identity: Optional[str] = None) -> str:
    """A fresh run id owned by process ``pid`` (default: this process).

    ``identity`` is the owner's start identity
    (:func:`pytest_orbstack.processes.start_identity`), read when not given.
    An identity that cannot be read gives the fingerprint that means
    "alive while the pid exists".
    """
    pid = os.getpid() if pid is None else pid
    identity = processes.start_identity(pid) if identity is None else identity
    if not 0 < pid < len(_ALPHABET) ** _PID_LENGTH:
        raise ValueError(f"pid {pid} does not fit in a run id")
    global _runs_here  # noqa: PLW0603 (one counter per process)
    _runs_here += 1
    serial = (_FIRST_SERIAL + _runs_here) % len(_ALPHABET) ** _SERIAL_LENGTH
    return _base36(pid, _PID_LENGTH) + processes.fingerprint(identity) + _base36(serial, _SERIAL_LENGTH)


def owner_of(run_id: str) -> Optional[tuple[int, str]]:
    """(pid, start fingerprint) of the process owning ``run_id``; ``None`` for a legacy run id."""
    if len(run_id) != _RUN_ID_LENGTH or not run_id.isalnum():
        return None
    end = _PID_LENGTH + processes.FINGERPRINT_LENGTH
    return int(run_id[:_PID_LENGTH], 36), run_id[_PID_LENGTH:end]


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if machine names can start with it, else raise :class:`InvalidSpecError`."""
    # An empty prefix would let the purge consider every machine on the host.  At least 2
    # characters and a separator last: the run id stays a word of its own in names
    # (``ci-k3x9q2ab-main-...``, not ``xk3x9q2ab-main-...``), and the prefix cannot end in the
    # middle of a word of another prefix's names (``team`` would also start ``teamcity-...``).
    if (
        len(prefix) < 2
        or not prefix.endswith(("-", "."))
        or not _NAME_RE.match(prefix + "x0")
        or len(prefix) + _SUFFIX_LENGTH > _MAX_NAME_LENGTH
    ):
        raise InvalidSpecError(
            "machine name prefix",
            prefix,
            "use at least 2 characters ending in '-' or '.': letters, digits, '-' and '.', starting "
            f"with a letter or digit (no '_'), at most {_MAX_NAME_LENGTH - _SUFFIX_LENGTH} characters, "
            "e.g. 'pytest-test-' or 'ci.'",
        )
    return prefix


def worker_tag(worker_id: Optional[str]) -> str:
    """The worker part of a name: the xdist worker id (``gw0``...) or ``main``."""
    if worker_id and re.fullmatch(r"gw[0-9]{1,3}", worker_id):
        return worker_id
    return "main"


def machine_name(prefix: str, run_id: str, worker: str, token: Optional[str] = None) -> str:
    """The name of a new machine of ``run_id`` made by ``worker``."""
    return f"{prefix}{run_id}-{worker}-{token or _random(_TOKEN_LENGTH)}"


def run_id_of(name: str) -> Optional[str]:
    """The run id at the end of ``name``, whatever its prefix, or ``None``.

    Used by the purge to recognise machines of a live run that uses a longer
    prefix than ours (``pytest-test-x-...`` when we purge ``pytest-test-``).
    """
    match = _TAIL_RE.search(name)
    return match.group(1) if match else None


def kept_name(name: str) -> str:
    """The name a machine kept for debugging is renamed to: ``pytest-kept-<run id>-<worker>-<token>``.

    Unique (the token is), at most 63 characters, and outside every purge.
    """
    match = _TAIL_RE.search(name)
    tail = name[match.start(1) :] if match else name[-(_MAX_NAME_LENGTH - len(KEPT_PREFIX)) :].lstrip("-.")
    return KEPT_PREFIX + tail


def reuse_conflict(prefix: str) -> Optional[str]:
    """Why ``--orb-reuse`` cannot be used with machine name ``prefix`` (the purge would delete bases)."""
    if REUSE_PREFIX.startswith(prefix) or prefix.startswith(REUSE_PREFIX):
        return (
            f"the machine name prefix {prefix!r} overlaps the names of reused bases ({REUSE_PREFIX}...), "
            "which the purge would then delete; use a prefix such as 'pytest-test-'"
        )
    return None
