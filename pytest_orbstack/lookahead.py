"""Which tests this process runs next, and the machines prefetch makes for them (:func:`ahead`).

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
import itertools
from collections.abc import Sequence
from typing import Final, NamedTuple, Optional

import pytest

from pytest_orbstack.errors import MarkerError
from pytest_orbstack.marker import marker_overrides, spec_for
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.plan import Demand
from pytest_orbstack.settings import Settings

__all__ = ["Ahead", "ahead", "demand", "upcoming"]

#: How many coming items prefetch looks at (the machines it makes are bounded by ``--orb-prefetch``).
WINDOW: Final = 100

_index_key: Final = pytest.StashKey[dict[str, int]]()


def upcoming(item: pytest.Item, nextitem: Optional[pytest.Item], limit: int) -> list[pytest.Item]:
    """Up to ``limit`` items this process runs after ``item``, in order, ``nextitem`` first."""
    if nextitem is None or limit < 1:
        return []
    session = item.session
    queued = _worker_queue(item.config, limit)
    if queued is not None:
        items = session.items
        rest = [items[i] for i in queued if 0 <= i < len(items)]
    elif hasattr(item.config, "workerinput"):
        rest = []  # an xdist worker whose queue cannot be read: only nextitem is known
    else:  # only the window is copied: once per test, so the run's cost grows with its length only
        start = _index(session, nextitem) + 1
        rest = session.items[start : start + limit]
    return [nextitem, *rest][:limit]


class Ahead(NamedTuple):
    """The machines to make ahead: how many of each spec, the spec of the nearest test first."""

    counts: dict[MachineSpec, int]
    #: how many of them are beyond the prefetch bound (the current test's own, the shared one)
    extra: int


def ahead(
    items: Sequence[pytest.Item],
    settings: Settings,
    limit: int,
    *,
    shared: bool,
    surely_shared: bool = False,
    current: bool = False,
) -> Ahead:
    """The machines ``items`` (tests in the order this process runs them) will take, to make ahead.

    ``orb_vm_fresh`` tests' up to ``limit``; the shared ``orb_vm`` machine when
    this process has none yet (``shared``) and one of ``items`` uses it or
    ``surely_shared`` (:attr:`~pytest_orbstack.plan.Demand.shared_everywhere`);
    ``current``: the first item is the test being set up, its own
    ``orb_vm_fresh`` machine, unless handed out already, is needed now.  Those
    two are beyond ``limit`` (:attr:`Ahead.extra`).  Coming items marked
    ``skip`` or ``skipif`` may well be skipped (known only at their setup)
    and an item whose ``orb`` marker is wrong reports that itself: neither
    counts.
    """
    counts: collections.Counter[MachineSpec] = collections.Counter()
    fresh = extra = 0
    asked = not shared  # the shared machine: exists, or asked for below
    if not asked and surely_shared:  # this process will run an orb_vm test sooner or later
        counts[settings.spec] += 1
        asked, extra = True, 1
    for index, item in enumerate(items):
        names = getattr(item, "fixturenames", ())
        now = current and index == 0  # being set up, so not skipped
        # its orb_vm_fresh handed out already: another spec is warming (orb_machines.create(image=))
        own = now and "orb_vm_fresh" not in getattr(item, "funcargs", {})
        shares = not asked and "orb_vm" in names
        fresh_one = "orb_vm_fresh" in names and (own if now else fresh < limit)
        if not (shares or fresh_one):
            continue  # (the cheap test first: this runs at every test's call phase)
        if not now and (any(item.iter_markers("skip")) or any(item.iter_markers("skipif"))):
            continue
        if shares:
            counts[settings.spec] += 1
            asked, extra = True, extra + 1
        if fresh_one:
            try:
                counts[spec_for(settings, marker_overrides(item))] += 1
            except MarkerError:
                continue
            if own:
                extra += 1
            else:
                fresh += 1
        if fresh >= limit and asked:
            break
    return Ahead(dict(counts), extra)


def _index(session: pytest.Session, item: pytest.Item) -> int:
    """``item``'s place in ``session.items`` (the map is built once per session)."""
    positions = session.stash.get(_index_key, None)
    if positions is None:
        positions = {it.nodeid: i for i, it in enumerate(session.items)}
        session.stash[_index_key] = positions
    return positions.get(item.nodeid, len(session.items))


def _worker_queue(config: pytest.Config, limit: int) -> Optional[list[int]]:
    """The first ``limit`` item indices an xdist worker has been sent and not started, or ``None``.

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
                snapshot = list(itertools.islice(pending, limit))
        elif hasattr(torun, "queue") and hasattr(torun, "mutex"):
            with torun.mutex:
                snapshot = list(itertools.islice(torun.queue, limit))
        else:
            return None
        return [i for i in snapshot if isinstance(i, int)]
    return None


#: xdist's ``--dist`` modes that hand out tests in runs of the collection order, not by file,
#: scope or group
_SPREAD: Final = frozenset({"load", "worksteal"})


def demand(items: Sequence[pytest.Item], settings: Settings, processes: int, *, dist: str = "no") -> Demand:
    """The machines of each spec ``items`` (the run's selected tests) can need.

    ``processes`` runs share them (xdist's worker count, else 1): ``orb_vm``
    (the options' spec) gives at most one machine per process, each
    ``orb_vm_fresh`` test one of its own spec.  ``dist``: xdist's ``--dist``
    (``each``: each process runs every test).  A test marked ``skip`` needs
    none; an ``orb_machines`` test can make any number (open-ended); a test
    whose ``orb`` marker is wrong errors before it has a machine.
    """
    every_process = dist == "each"
    counts: collections.Counter[MachineSpec] = collections.Counter()
    shared = sure = 0  # orb_vm tests; those of them without skipif (that surely run)
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
            sure += not any(item.iter_markers("skipif"))
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
    if processes == 1 or every_process:  # every process runs every orb_vm test that runs
        everywhere = sure >= 1
    else:  # an estimate: most of the run's tests use orb_vm, so every worker is likely to get one
        everywhere = dist in _SPREAD and sure >= processes and 2 * sure >= len(items)
    return Demand(dict(counts), open_ended=False, shared_everywhere=everywhere)
