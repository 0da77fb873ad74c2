"""Run ids and machine names.

Every machine the plugin makes is named ``<prefix><run id>-<worker>-<token>``,
for example ``pytest-test-k3x9q2ab-gw1-7fd0qz``.  The name alone tells which
run made the machine, so a later run can decide whether it is an orphan
(see :mod:`pytest_orbstack.ownership`) without any other bookkeeping.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Final, NamedTuple, Optional

from pytest_orbstack.errors import InvalidSpecError

__all__ = [
    "DEFAULT_PREFIX",
    "REUSE_PREFIX",
    "MachineOwner",
    "machine_name",
    "new_run_id",
    "parse_machine_name",
    "run_id_of",
    "validate_prefix",
    "worker_tag",
]

#: The prefix of every machine the plugin creates unless ``--orb-prefix`` says otherwise.
DEFAULT_PREFIX: Final = "pytest-test-"
#: The prefix of provisioned base machines kept across runs (``--orb-reuse``).  The purge
#: never deletes them, whatever prefix a run purges.
REUSE_PREFIX: Final = "pytest-base-"

_ALPHABET: Final = string.ascii_lowercase + string.digits
_RUN_ID_LENGTH: Final = 8
_TOKEN_LENGTH: Final = 6
#: What follows the prefix in a name this plugin made.
_SUFFIX_RE: Final = re.compile(r"([a-z0-9]{8})-(main|gw[0-9]+)-([a-z0-9]{6})")
_TAIL_RE: Final = re.compile(r"(?:^|-)([a-z0-9]{8})-(?:main|gw[0-9]+)-[a-z0-9]{6}$")
#: orbctl's machine name rule (see orbctl-spec.md), used to check that a prefix can start names.
_NAME_RE: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9.-]+$")
#: Machine names become host names, which are limited to 63 characters.
_MAX_NAME_LENGTH: Final = 63
_SUFFIX_LENGTH: Final = _RUN_ID_LENGTH + 1 + len("gw999") + 1 + _TOKEN_LENGTH


class MachineOwner(NamedTuple):
    """Which run and which worker made a machine."""

    run_id: str
    worker: str


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_run_id() -> str:
    """A fresh run id: eight characters from ``[a-z0-9]``."""
    return _random(_RUN_ID_LENGTH)


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if machine names can start with it, else raise :class:`InvalidSpecError`."""
    # An empty prefix would let the purge consider every machine on the host.
    if not prefix or not _NAME_RE.match(prefix + "x0") or len(prefix) + _SUFFIX_LENGTH > _MAX_NAME_LENGTH:
        raise InvalidSpecError(
            "machine name prefix",
            prefix,
            "use 1 or more letters, digits, '-' and '.', starting with a letter or digit "
            f"(no '_'), at most {_MAX_NAME_LENGTH - _SUFFIX_LENGTH} characters, e.g. 'pytest-test-'",
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


def parse_machine_name(name: str, prefix: str) -> Optional[MachineOwner]:
    """Who made ``name``, or ``None`` when no run of this plugin could have made it.

    A name without ``prefix`` also gives ``None``: callers must check the
    prefix themselves before treating a machine as theirs.
    """
    if not name.startswith(prefix):
        return None
    match = _SUFFIX_RE.fullmatch(name[len(prefix) :])
    if match is None:
        return None
    return MachineOwner(run_id=match.group(1), worker=match.group(2))


def run_id_of(name: str) -> Optional[str]:
    """The run id at the end of ``name``, whatever its prefix, or ``None``.

    Used by the purge to recognise machines of a live run that uses a longer
    prefix than ours (``pytest-test-x-...`` when we purge ``pytest-test-``).
    """
    match = _TAIL_RE.search(name)
    return match.group(1) if match else None
