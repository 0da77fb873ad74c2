"""Which tests this process runs next: the ones prefetch may make machines for.

Without xdist the session's whole item list is known, so the tests after
pytest's ``nextitem`` are those that follow it in ``session.items``.  An
xdist worker runs only the items the controller sends it, in batches; the
ones it has been sent and not started yet wait in its ``WorkerInteractor``'s
queue.  That queue is xdist's own and not a public API: it is read when it
looks as expected, and otherwise only ``nextitem`` is known (as pytest
itself promises).  Work stealing can take queued items away again, so a
machine made ahead for one of them may go unused: the prefetch bound limits
how many.

:func:`demand` looks further: how many machines of each spec the run's
selected tests can need (every xdist worker collects the whole selection,
so each counts the same).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Final, Optional

import pytest

from pytest_orbstack.errors import MarkerError
from pytest_orbstack.marker import marker_overrides, spec_for
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.plan import Demand
from pytest_orbstack.settings import Settings

__all__ = ["demand", "upcoming"]

#: How many coming items prefetch looks at (the machines it makes are bounded by ``--orb-prefetch``).
WINDOW: Final = 100

_index_key: Final = pytest.StashKey[dict[str, int]]()


def upcoming(item: pytest.Item, nextitem: Optional[pytest.Item], limit: int) -> list[pytest.Item]:
    """Up to ``limit`` items this process runs after ``item``, in order, ``nextitem`` first."""
    if nextitem is None or limit < 1:
        return []
    session = item.session
    queued = _worker_queue(item.config)
    if queued is not None:
        items = session.items
        rest = [items[i] for i in queued if 0 <= i < len(items)]
    elif hasattr(item.config, "workerinput"):
        rest = []  # an xdist worker whose queue cannot be read: only nextitem is known
    else:
        rest = session.items[_index(session, nextitem) + 1 :]
    return [nextitem, *rest][:limit]


def _index(session: pytest.Session, item: pytest.Item) -> int:
    """``item``'s place in ``session.items`` (the map is built once per session)."""
    positions = session.stash.get(_index_key, None)
    if positions is None:
        positions = {it.nodeid: i for i, it in enumerate(session.items)}
        session.stash[_index_key] = positions
    return positions.get(item.nodeid, len(session.items))


def _worker_queue(config: pytest.Config) -> Optional[list[int]]:
    """The item indices an xdist worker has been sent and not started, or ``None``.

    xdist 3.6+ keeps them in a ``TestQueue`` that is inspected under its ``lock()``;
    older releases in a ``queue.Queue`` (``.queue`` under ``.mutex``).
    """
    if not hasattr(config, "workerinput"):
        return None
    for plugin in config.pluginmanager.get_plugins():
        torun = getattr(plugin, "torun", None)
        if torun is None or not hasattr(plugin, "nextitem_index"):
            continue
        snapshot: list[object]
        if callable(getattr(torun, "lock", None)):
            with torun.lock() as pending:
                snapshot = list(pending)
        elif hasattr(torun, "queue") and hasattr(torun, "mutex"):
            with torun.mutex:
                snapshot = list(torun.queue)
        else:
            return None
        return [i for i in snapshot if isinstance(i, int)]
    return None


def demand(
    items: Sequence[pytest.Item], settings: Settings, processes: int, *, every_process: bool = False
) -> Demand:
    """The machines of each spec ``items`` (the run's selected tests) can need.

    ``processes`` runs share them (xdist's worker count, else 1): ``orb_vm``
    (the options' spec) gives at most one machine per process, each
    ``orb_vm_fresh`` test one of its own spec.  ``every_process``: each process
    runs every test (``--dist each``).  A test marked ``skip`` needs none; an
    ``orb_machines`` test can make any number (open-ended); a test whose
    ``orb`` marker is wrong errors before it has a machine.
    """
    counts: collections.Counter[MachineSpec] = collections.Counter()
    shared = 0
    for item in items:
        names = getattr(item, "fixturenames", ())
        if not any(name in names for name in ("orb_vm", "orb_vm_fresh", "orb_machines")):
            continue
        if any(item.iter_markers("skip")):
            continue
        if "orb_machines" in names:
            return Demand()
        if "orb_vm" in names:
            shared += 1
        if "orb_vm_fresh" in names:
            try:
                counts[spec_for(settings, marker_overrides(item))] += 1
            except MarkerError:
                continue
    processes = max(1, processes)
    if every_process:
        counts = collections.Counter({spec: count * processes for spec, count in counts.items()})
    if shared:
        counts[settings.spec] += processes if every_process else min(shared, processes)
    return Demand(dict(counts), open_ended=False)
