"""Whether machines can be made in this run: prepared once, said in one line, error or skip.

- :func:`mark_machine_tests`: every test that uses a machine fixture gets the
  ``orb`` marker, so ``-m "not orb"`` deselects them all.
- :func:`prepare`: once per run, on the xdist controller (or the only
  process; on another host, by the worker elected there: hosts.py),
  before any machine is made and only when a selected test needs one,
  the ``pytest_orbstack_prepare`` hooks get the orbctl in use and make
  its backend ready (orbsim's plugin installs its packages and builds its
  image there, with progress on the terminal).
- Under xdist the controller collects nothing: a worker whose selected tests
  need a machine says so with a file in the run's lock directory
  (:func:`note_wanted`) before it reports its collection, and the controller
  prepares when it reads that report, before it hands out any test.  The
  reason the hooks returned reaches the workers the same way
  (:func:`write_reason`, :func:`read_reason`): no worker asks again.
- :func:`give_up`: a machine fixture cannot have its machine for a reason
  that will not change during the run; the test errors with that one line
  (``--orb-if-unavailable error``, the default) or is skipped with it
  (``skip``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NoReturn, Optional

import pytest

__all__ = [
    "MACHINE_FIXTURE_NAMES",
    "give_up",
    "is_wanted",
    "mark_machine_tests",
    "note_wanted",
    "prepare",
    "prepare_here",
    "read_reason",
    "uses_machine",
    "write_reason",
]

#: Fixtures that need OrbStack: their tests get the ``orb`` marker.
MACHINE_FIXTURE_NAMES: Final = ("orb_vm", "orb_vm_fresh", "orb_machines", "orb_client")


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

    ``items`` is ``None`` on an xdist controller, which collects nothing: it
    prepares once a worker said its selected tests need a machine
    (:func:`is_wanted`), unless it only collects.  After collection (``items``
    given) a process without xdist prepares when a selected test needs a machine.
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


def _wanted_path(lock_dir: Path, run_id: str) -> Path:
    return lock_dir / f"orbstack-wanted-{run_id}"


def note_wanted(lock_dir: Path, run_id: str) -> None:
    """An xdist worker of run ``run_id`` will make machines (``lock_dir``: the run's lock directory)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    _wanted_path(lock_dir, run_id).touch()


def is_wanted(lock_dir: Path, run_id: str) -> bool:
    """Whether a worker of run ``run_id`` said it will make machines (:func:`note_wanted`)."""
    return _wanted_path(lock_dir, run_id).exists()


def _reason_path(lock_dir: Path, run_id: str) -> Path:
    return lock_dir / f"orbstack-prepared-{run_id}.json"


def write_reason(lock_dir: Path, run_id: str, reason: Optional[str]) -> None:
    """The controller prepared the backend for run ``run_id``: ``reason`` why no machine can be made,
    or ``None``.  Written whole or not at all."""
    path = _reason_path(lock_dir, run_id)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"reason": reason}))
    os.replace(tmp, path)


def read_reason(lock_dir: Path, run_id: str) -> tuple[bool, Optional[str]]:
    """(prepared?, reason) of run ``run_id``, as :func:`write_reason` left them."""
    try:
        data = json.loads(_reason_path(lock_dir, run_id).read_text())
    except (OSError, ValueError):
        return False, None
    reason = data.get("reason") if isinstance(data, dict) else None
    return True, reason if isinstance(reason, str) else None


def give_up(reason: str, if_unavailable: str) -> NoReturn:
    """End the fixture's setup: one error line, or a skip with the reason (``--orb-if-unavailable``)."""
    if if_unavailable == "skip":
        pytest.skip(reason)
    pytest.fail(reason, pytrace=False)
