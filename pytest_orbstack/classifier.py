"""orbctl's error texts turned into typed errors: the one classifier.

:func:`classify` maps a failed orbctl call to its
:class:`~pytest_orbstack.errors.OrbctlCommandError` subclass by the real error
texts orbctl prints (docs/orbctl.md); :func:`orbctl_failure` tells, from the
stderr of ``orbctl run``, a failure of orbctl itself from one of the command.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from pytest_orbstack.errors import (
    ImageNotFoundError,
    InvalidMachineNameError,
    MachineExistsError,
    MachineNotFoundError,
    OrbctlCommandError,
    OrbStackNotRunningError,
    TransientOrbctlError,
)

__all__ = ["classify", "orbctl_failure"]

#: (error class, stderr pattern) checked in order; the first match wins.
_RULES: Final[tuple[tuple[type[OrbctlCommandError], re.Pattern[str]], ...]] = (
    (MachineNotFoundError, re.compile(r"machine not found")),
    (MachineExistsError, re.compile(r"machine already exists")),
    (InvalidMachineNameError, re.compile(r"invalid machine name")),
    (ImageNotFoundError, re.compile(r"image not found|invalid distro: ")),
    (OrbStackNotRunningError, re.compile(r"timed out waiting for VM to start")),
    (
        TransientOrbctlError,
        re.compile(
            r"didn't start in \d+|timed out waiting for services to start|cannot transition from"
            r"|download[^\n]*(status: (5\d\d|429)|timeout|timed out|connection reset|connection refused|EOF)"
        ),
    ),
)


def classify(argv: Sequence[str], returncode: int | None, stdout: str, stderr: str) -> OrbctlCommandError:
    """Map a failed call to its typed error using orbctl's real error texts (the one classifier)."""
    for cls, pattern in _RULES:
        if pattern.search(stderr):
            return cls(argv, returncode, stdout, stderr)
    if list(argv[1:2]) == ["status"]:
        word = stdout.strip()
        if word == "Stopped":
            return OrbStackNotRunningError(argv, returncode, stdout, stderr, message="OrbStack is stopped")
        if word == "Starting":
            return TransientOrbctlError(argv, returncode, stdout, stderr, message="OrbStack is starting")
    return OrbctlCommandError(argv, returncode, stdout, stderr)


#: stderr of ``orbctl run`` that orbctl itself wrote (not the command): its service's error prefix,
#: or OrbStack that could not be started.
_ORBCTL_SIDE: Final = re.compile(
    r"\A\s*(\[-32\d\d\d\] |(start VM: )?timed out waiting for (VM|services) to start)"
)


def orbctl_failure(stderr: str) -> bool:
    """Whether the stderr of ``orbctl run`` is orbctl's own failure, not the command's."""
    return _ORBCTL_SIDE.search(stderr) is not None
