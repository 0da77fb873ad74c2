"""pytest-orbstack: real, managed OrbStack Linux machines as pytest fixtures.

Only the names in ``__all__`` are public; every module is private and may change.
"""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "ImageNotFoundError",
    "InvalidMachineNameError",
    "InvalidSpecError",
    "MachineExistsError",
    "MachineNotFoundError",
    "MachineNotReadyError",
    "OrbStackNotRunningError",
    "OrbctlCommandError",
    "OrbctlNotFoundError",
    "OrbctlParseError",
    "OrbctlTimeoutError",
    "OrbstackError",
    "TransientOrbctlError",
    "UnsupportedFeatureError",
    "__version__",
]
