"""The fixtures: ``orb_client``, ``orb_vm``, ``orb_vm_fresh``, ``orb_machines``.

Each asks the per-process :class:`~pytest_orbstack.runtime.OrbRuntime` for its
machines; a test that needs one errors (or skips) with one line when OrbStack
cannot be used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import pytest

from pytest_orbstack.errors import MarkerError
from pytest_orbstack.machine import Machine
from pytest_orbstack.marker import marker_overrides, spec_fields, spec_for
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.provisioner import MachineFactory
from pytest_orbstack.runtime import OrbRuntime, get_runtime

__all__ = [
    "MACHINE_FIXTURES",
    "machines_used_by",
    "orb_client",
    "orb_machines",
    "orb_vm",
    "orb_vm_fresh",
]

#: Fixtures whose machines a failed test keeps (``--orb-keep failed``) and reports.
MACHINE_FIXTURES: Final = ("orb_vm", "orb_vm_fresh", "orb_machines")


def _runtime(request: pytest.FixtureRequest) -> OrbRuntime:
    """The runtime; remembers the directory of the run's locks (shared by its xdist workers)."""
    runtime = get_runtime(request.config)
    if runtime.lock_dir is None:
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        basetemp = factory.getbasetemp()
        runtime.lock_dir = basetemp.parent if hasattr(request.config, "workerinput") else basetemp
    return runtime


def _marker_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    try:
        return marker_overrides(request.node)
    except MarkerError as exc:  # also caught at collection; kept for items made by other plugins
        pytest.fail(str(exc), pytrace=False)


def _test_spec(request: pytest.FixtureRequest, runtime: OrbRuntime) -> MachineSpec:
    return spec_for(runtime.settings, _marker_overrides(request))


@pytest.fixture(scope="session")
def orb_client(request: pytest.FixtureRequest) -> Orbctl:
    """The orbctl client pytest-orbstack uses (``OrbctlClient``), for direct orbctl operations.

    Errors with one line when OrbStack is missing or stopped.  Machines you
    create through it yourself are yours to delete.
    """
    runtime = _runtime(request)
    runtime.provisioner()
    return runtime.client()


@pytest.fixture(scope="session")
def orb_vm(request: pytest.FixtureRequest) -> Iterator[Machine]:
    """One ready OrbStack machine per xdist worker (or per session), shared by every test there.

    Made from --orb-image / --orb-arch / --orb-user / --orb-user-data (markers
    do not apply), provisioned by the pytest_orbstack_provision hooks, deleted
    at the end of the session (see --orb-keep).  Tests share it: leave it as
    you found it, or use orb_vm_fresh.
    """
    runtime = _runtime(request)
    machine = runtime.obtain(runtime.settings.spec)
    ready_hooks = request.config.hook.pytest_orbstack_machine_ready.get_hookimpls()
    runtime.shared.handed_out(machine, runtime.provisioner(), watch_boot=bool(ready_hooks))
    yield machine
    runtime.shared.released(machine)
    runtime.release(machine)


@pytest.fixture
def orb_vm_fresh(request: pytest.FixtureRequest) -> Iterator[Machine]:
    """A new ready OrbStack machine for this test only, deleted after it even if it fails.

    Its spec comes from @pytest.mark.orb(image=..., arch=..., user=...,
    user_data=...) on the test, then the --orb-* options.
    """
    runtime = _runtime(request)
    machine = runtime.obtain(_test_spec(request, runtime))
    yield machine
    runtime.release(machine)


@pytest.fixture
def orb_machines(request: pytest.FixtureRequest) -> Iterator[MachineFactory]:
    """A factory of OrbStack machines for this test: ``.create(image=None, *, arch=, user=, user_data=)``.

    ``.create_many(n, ...)`` makes n machines in parallel.  Defaults come from
    the test's @pytest.mark.orb marker, then the --orb-* options.  Every
    machine is deleted when the test ends.
    """
    runtime = _runtime(request)
    runtime.provisioner()  # errors here, at setup, when OrbStack is unusable
    settings, overrides = runtime.settings, _marker_overrides(request)
    base = Path(str(request.node.path)).parent

    def spec(given: Mapping[str, Any]) -> MachineSpec:  # arguments over the marker over the options
        return spec_for(settings, {**overrides, **spec_fields(given, base)})

    factory = MachineFactory(runtime.obtain, runtime.release, spec)
    try:
        yield factory
    finally:
        factory.release_all()


def machines_used_by(item: pytest.Item) -> list[Machine]:
    """The machines the fixtures of ``item`` handed out (directly or through other fixtures)."""
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    found: list[Machine] = []
    for name in MACHINE_FIXTURES:
        value = funcargs.get(name)
        if isinstance(value, Machine):
            found.append(value)
        elif isinstance(value, MachineFactory):
            found.extend(value.machines)
    return found
