"""pytest-orbstack: real, managed OrbStack Linux machines as pytest fixtures.

Only the names in ``__all__`` are public; every module is private and may change.

The names are imported on first use (PEP 562), so that ``orbsim`` -- which
lives in this package but uses none of it -- starts without loading the plugin.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: orbsim starts faster without it
if TYPE_CHECKING:
    from typing import Any

    from pytest_orbstack.client import (
        CommandResult,
        OrbctlClient,
        Timeouts,
        find_orbctl,
    )
    from pytest_orbstack.errors import (
        ImageNotFoundError,
        InvalidMachineNameError,
        InvalidSpecError,
        MachineDeadlineError,
        MachineExistsError,
        MachineNotFoundError,
        MachineNotReadyError,
        OrbctlCommandError,
        OrbctlHungError,
        OrbctlNotFoundError,
        OrbctlParseError,
        OrbctlTimeoutError,
        OrbstackError,
        OrbStackNotRunningError,
        TransientOrbctlError,
        UnsupportedFeatureError,
    )
    from pytest_orbstack.machine import (
        CommandFailedError,
        Machine,
        RunResult,
    )
    from pytest_orbstack.models import (
        MachineInfo,
        OrbVersion,
        parse_machine_info,
        parse_machine_list,
    )
    from pytest_orbstack.provisioner import (
        MachineFactory,
        MachineSpec,
    )
    from pytest_orbstack.ssh import SshConfig, SshConfigError

__version__ = "0.1.0"

_SOURCES: dict[str, str] = {
    "CommandFailedError": "pytest_orbstack.machine",
    "CommandResult": "pytest_orbstack.client",
    "find_orbctl": "pytest_orbstack.client",
    "ImageNotFoundError": "pytest_orbstack.errors",
    "InvalidMachineNameError": "pytest_orbstack.errors",
    "InvalidSpecError": "pytest_orbstack.errors",
    "Machine": "pytest_orbstack.machine",
    "MachineDeadlineError": "pytest_orbstack.errors",
    "MachineExistsError": "pytest_orbstack.errors",
    "MachineFactory": "pytest_orbstack.provisioner",
    "MachineInfo": "pytest_orbstack.models",
    "MachineNotFoundError": "pytest_orbstack.errors",
    "MachineNotReadyError": "pytest_orbstack.errors",
    "MachineSpec": "pytest_orbstack.provisioner",
    "OrbctlClient": "pytest_orbstack.client",
    "OrbctlCommandError": "pytest_orbstack.errors",
    "OrbctlHungError": "pytest_orbstack.errors",
    "OrbctlNotFoundError": "pytest_orbstack.errors",
    "OrbctlParseError": "pytest_orbstack.errors",
    "OrbctlTimeoutError": "pytest_orbstack.errors",
    "OrbstackError": "pytest_orbstack.errors",
    "OrbStackNotRunningError": "pytest_orbstack.errors",
    "OrbVersion": "pytest_orbstack.models",
    "parse_machine_info": "pytest_orbstack.models",
    "parse_machine_list": "pytest_orbstack.models",
    "RunResult": "pytest_orbstack.machine",
    "SshConfig": "pytest_orbstack.ssh",
    "SshConfigError": "pytest_orbstack.ssh",
    "Timeouts": "pytest_orbstack.client",
    "TransientOrbctlError": "pytest_orbstack.errors",
    "UnsupportedFeatureError": "pytest_orbstack.errors",
}

__all__ = [
    "CommandFailedError",
    "CommandResult",
    "ImageNotFoundError",
    "InvalidMachineNameError",
    "InvalidSpecError",
    "Machine",
    "MachineDeadlineError",
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
    "OrbctlHungError",
    "OrbctlNotFoundError",
    "OrbctlParseError",
    "OrbctlTimeoutError",
    "OrbstackError",
    "RunResult",
    "SshConfig",
    "SshConfigError",
    "Timeouts",
    "TransientOrbctlError",
    "UnsupportedFeatureError",
    "__version__",
    "find_orbctl",
    "parse_machine_info",
    "parse_machine_list",
]


def __getattr__(name: str) -> Any:
    try:
        module = _SOURCES[name]
    except KeyError:
        raise AttributeError(f"module 'pytest_orbstack' has no attribute {name!r}") from None
    import importlib  # noqa: PLC0415 - not at import time: orbsim lives in this package

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
