"""Whether machines can be made in this run: prepared once, said in one line, error or skip.

- :func:`mark_machine_tests`: every test that uses a machine fixture gets the
  ``orb`` marker, so ``-m "not orb"`` deselects them all.
- :func:`prepare`: once per run, on the xdist controller (or the only
  process), before any machine is made, the ``pytest_orbstack_prepare`` hooks
  get the orbctl in use and make its backend ready (orbsim's plugin installs
  its packages and builds its image there, with progress on the terminal).  A
  reason they return travels to xdist workers in ``workerinput``
  (:data:`WORKERINPUT_KEY`): no worker asks again.
- :func:`give_up`: a machine fixture cannot have its machine for a reason
  that will not change during the run; the test errors with that one line
  (``--orb-if-unavailable error``, the default) or is skipped with it
  (``skip``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NoReturn, Optional

import pytest

__all__ = [
    "MACHINE_FIXTURE_NAMES",
    "WORKERINPUT_KEY",
    "give_up",
    "mark_machine_tests",
    "prepare",
    "prepare_here",
    "uses_machine",
]

#: Fixtures that need OrbStack: their tests get the ``orb`` marker.
MACHINE_FIXTURE_NAMES: Final = ("orb_vm", "orb_vm_fresh", "orb_machines", "orb_client")
#: ``workerinput`` key of the controller's reason why no machine can be made (or ``None``).
WORKERINPUT_KEY: Final = "orbstack_unavailable"


def uses_machine(item: pytest.Item) -> bool:
    """Whether ``item`` asks (directly or through other fixtures) for a machine fixture."""
    names = getattr(item, "fixturenames", ())
    return any(name in names for name in MACHINE_FIXTURE_NAMES)


def mark_machine_tests(items: Sequence[pytest.Item]) -> None:
    """Add a bare ``orb`` marker to every test that uses a machine fixture (it sets no spec field)."""
    for item in items:
        if uses_machine(item) and item.get_closest_marker("orb") is None:
            item.add_marker(pytest.mark.orb)


def prepare_here(config: pytest.Config, items: Optional[Sequence[pytest.Item]]) -> bool:
    """Whether this process prepares the backend now.

    ``items`` is ``None`` at session start: only an xdist controller prepares
    then (its workers start right after and it never sees their tests), unless
    it only collects.  After collection (``items`` given) a process without
    xdist prepares when a selected test needs a machine.
    """
    if hasattr(config, "workerinput") or config.option.collectonly:
        return False
    controller = config.pluginmanager.has_plugin("dsession")
    if items is None:
        return controller
    return not controller and any(uses_machine(item) for item in items)


def prepare(config: pytest.Config, orbctl: Optional[str]) -> Optional[str]:
    """Run the ``pytest_orbstack_prepare`` hooks for ``orbctl``; their one-line reason, or ``None``.

    ``orbctl`` is ``None`` when none was found: then there is nothing to
    prepare (the machine fixtures say so themselves).
    """
    if orbctl is None:
        return None
    reason = config.hook.pytest_orbstack_prepare(config=config, orbctl=orbctl)
    if reason is None:
        return None
    return next((line for line in str(reason).splitlines() if line.strip()), str(reason))


def give_up(reason: str, if_unavailable: str) -> NoReturn:
    """End the fixture's setup: one error line, or a skip with the reason (``--orb-if-unavailable``)."""
    if if_unavailable == "skip":
        pytest.skip(reason)
    pytest.fail(reason, pytrace=False)
