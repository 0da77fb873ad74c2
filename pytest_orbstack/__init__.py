"""pytest-orbstack: real, managed OrbStack Linux machines as pytest fixtures.

Only the names in ``__all__`` are public; every module is private and may change.

The names are imported on first use (PEP 562), so that ``orbsim`` -- which
lives in this package but uses none of it -- starts without loading the plugin.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: orbsim starts faster without it
if TYPE_CHECKING:
    from typing import Any

    from pytest_orbstack.client import OrbctlClient, Timeouts, find_orbctl
    from pytest_orbstack.errors import (
        InvalidSpecError,
        MachineNotFoundError,
        MachineNotReadyError,
        MarkerError,
        OrbctlCommandError,
        OrbctlTimeoutError,
        OrbstackError,
        OrbStackNotRunningError,
    )
    from pytest_orbstack.machine import Machine
    from pytest_orbstack.models import MachineInfo, MachineSpec, OrbVersion
    from pytest_orbstack.provisioner import MachineFactory
    from pytest_orbstack.results import CommandFailedError, RunResult
    from pytest_orbstack.ssh import SshConfig, SshConfigError

__version__ = "0.1.0"

#: The public names and the module each comes from.
_SOURCES: dict[str, str] = {
    # what a test receives from the fixtures
    "Machine": "pytest_orbstack.machine",
    "MachineFactory": "pytest_orbstack.provisioner",
    "MachineSpec": "pytest_orbstack.models",
    "MachineInfo": "pytest_orbstack.models",
    "RunResult": "pytest_orbstack.results",
    "SshConfig": "pytest_orbstack.ssh",
    # the client, for those who drive orbctl directly
    "OrbctlClient": "pytest_orbstack.client",
    "OrbVersion": "pytest_orbstack.models",
    "Timeouts": "pytest_orbstack.client",
    "find_orbctl": "pytest_orbstack.client",
    # errors: all derive from OrbstackError
    "OrbstackError": "pytest_orbstack.errors",
    "CommandFailedError": "pytest_orbstack.results",
    "InvalidSpecError": "pytest_orbstack.errors",
    "MarkerError": "pytest_orbstack.errors",
    "MachineNotReadyError": "pytest_orbstack.errors",
    "OrbctlCommandError": "pytest_orbstack.errors",
    "MachineNotFoundError": "pytest_orbstack.errors",
    "OrbStackNotRunningError": "pytest_orbstack.errors",
    "OrbctlTimeoutError": "pytest_orbstack.errors",
    "SshConfigError": "pytest_orbstack.ssh",
}

#: Names the changelog announced before the public API was narrowed: still importable from here,
#: no longer part of ``__all__`` (``CommandResult`` is :class:`RunResult`).
_COMPAT: dict[str, tuple[str, str]] = {
    "CommandResult": ("pytest_orbstack.results", "RunResult"),
    "ImageNotFoundError": ("pytest_orbstack.errors", "ImageNotFoundError"),
    "MachineDeadlineError": ("pytest_orbstack.errors", "MachineDeadlineError"),
    "MachineExistsError": ("pytest_orbstack.errors", "MachineExistsError"),
    "OrbctlHungError": ("pytest_orbstack.errors", "OrbctlHungError"),
    "TransientOrbctlError": ("pytest_orbstack.errors", "TransientOrbctlError"),
    "UnsupportedFeatureError": ("pytest_orbstack.errors", "UnsupportedFeatureError"),
    "parse_machine_info": ("pytest_orbstack.models", "parse_machine_info"),
    "parse_machine_list": ("pytest_orbstack.models", "parse_machine_list"),
}

__all__ = [
    "CommandFailedError",
    "InvalidSpecError",
    "Machine",
    "MachineFactory",
    "MachineInfo",
    "MachineNotFoundError",
    "MachineNotReadyError",
    "MachineSpec",
    "MarkerError",
    "OrbStackNotRunningError",
    "OrbVersion",
    "OrbctlClient",
    "OrbctlCommandError",
    "OrbctlTimeoutError",
    "OrbstackError",
    "RunResult",
    "SshConfig",
    "SshConfigError",
    "Timeouts",
    "__version__",
    "find_orbctl",
]


def __getattr__(name: str) -> Any:
    if name in _SOURCES:
        module, attribute = _SOURCES[name], name
    elif name in _COMPAT:
        module, attribute = _COMPAT[name]
    else:
        raise AttributeError(f"module 'pytest_orbstack' has no attribute {name!r}")
    import importlib  # noqa: PLC0415 - not at import time: orbsim lives in this package

    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
