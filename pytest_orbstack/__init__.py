"""pytest-orbstack: real, managed OrbStack Linux machines as pytest fixtures.

Only the names in ``__all__`` are public; every module is private and may change.
"""

from __future__ import annotations

from pytest_orbstack.client import CommandResult, OrbctlClient, Timeouts, find_orbctl
from pytest_orbstack.errors import (
    ImageNotFoundError,
    InvalidMachineNameError,
    InvalidSpecError,
    MachineExistsError,
    MachineNotFoundError,
    MachineNotReadyError,
    OrbctlCommandError,
    OrbctlNotFoundError,
    OrbctlParseError,
    OrbctlTimeoutError,
    OrbstackError,
    OrbStackNotRunningError,
    TransientOrbctlError,
    UnsupportedFeatureError,
)
from pytest_orbstack.machine import CommandFailedError, Machine, RunResult
from pytest_orbstack.models import MachineInfo, OrbVersion, parse_machine_info, parse_machine_list
from pytest_orbstack.provisioner import MachineFactory, MachineSpec

__version__ = "0.1.0"

__all__ = [
    "CommandFailedError",
    "CommandResult",
    "ImageNotFoundError",
    "InvalidMachineNameError",
    "InvalidSpecError",
    "Machine",
    "MachineExistsError",
    "MachineFactory",
    "MachineInfo",
    "MachineNotFoundError",
    "MachineNotReadyError",
    "MachineSpec",
    "OrbStackNotRunningError",
    "OrbVersion",
    "OrbctlClient",
    "OrbctlCommandError",
    "OrbctlNotFoundError",
    "OrbctlParseError",
    "OrbctlTimeoutError",
    "OrbstackError",
    "RunResult",
    "Timeouts",
    "TransientOrbctlError",
    "UnsupportedFeatureError",
    "__version__",
    "find_orbctl",
    "parse_machine_info",
    "parse_machine_list",
]
