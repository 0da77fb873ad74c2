"""The ``pytest_orbstack_*`` hooks.  Implement them in a ``conftest.py`` or a plugin.

Hooks may gain arguments in later versions; implementations that take only
the arguments they need keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import pytest

if TYPE_CHECKING:
    from pytest_orbstack.machine import Machine
    from pytest_orbstack.orbctl import Orbctl


@pytest.hookspec()
def pytest_orbstack_provision(machine: Machine, config: pytest.Config) -> None:
    """Prepare a new machine before any test gets it: install software, write files, add users.

    Called once for each machine the plugin creates, after it is ready and
    before :func:`pytest_orbstack_machine_ready`.  Every implementation runs.
    An exception fails the fixture that asked for the machine (the machine is
    deleted).

    With the clone fast path (``--orb-clone``, on with OrbStack 2.0+) it runs
    once per run and spec, on the base machine that every machine is then
    cloned from; ``machine`` is that base.  The source code of the
    implementations is part of the base's identity: with ``--orb-reuse``,
    editing a hook builds a new base.  The base is then sealed (its machine id
    emptied) and stopped, and clones boot afresh: provision into the disk, not
    into ``/tmp``, ``/run`` or running processes (a command that names ``/tmp``
    or ``/run`` here gets one ``VolatileProvisionWarning`` per process).
    """


@pytest.hookspec()
def pytest_orbstack_machine_ready(machine: Machine, config: pytest.Config) -> None:
    """A machine is ready and provisioned and is about to be handed to a test."""


@pytest.hookspec()
def pytest_orbstack_machine_teardown(machine: Machine, config: pytest.Config) -> None:
    """A machine is about to be deleted (or kept): collect logs or files from it here.

    An exception is reported as a warning and does not stop the deletion.
    """


@pytest.hookspec(firstresult=True)
def pytest_orbstack_make_client(config: pytest.Config) -> Optional[Orbctl]:
    """Return the orbctl client the plugin uses (an ``OrbctlClient``, or an object with the same methods).

    The first non-``None`` result wins; the plugin's own implementation runs
    last and builds an ``OrbctlClient`` from ``--orb-orbctl`` and the timeouts.
    Called at most once per process, when a fixture first needs OrbStack.
    """


@pytest.hookspec(firstresult=True)
def pytest_orbstack_prepare(config: pytest.Config, orbctl: str) -> Optional[str]:
    """Make the orbctl backend ready before any machine is made; return why it cannot be, or ``None``.

    Called at most once per run with the path of the orbctl in use, only
    when a selected test needs a machine: without xdist after collection; on
    the xdist controller once a worker reported such a test in its
    collection, before any test is handed out; on another host than the
    controller's (xdist gateways), by the worker elected there, for that
    host's orbctl.  Never on the other xdist workers, never with
    ``--collect-only``.  Lines written to the terminal here are
    seen before the tests start (a long first-time setup should say what it
    does and how long it has taken).

    Return ``None`` when machines can be made, or one line saying why no
    machine can be made in this run and what to do: every test that needs a
    machine then errors with that line (or is skipped with it, see
    ``--orb-if-unavailable``) and nothing retries.  The first non-``None``
    result wins.  orbsim implements it (``pytest_orbstack.sim.pytest_plugin``)
    to install what it needs and build its machine image.
    """
