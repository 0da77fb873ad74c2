"""The clone fast path: one provisioned base machine per spec, cloned for every machine a test gets.

``orbctl create`` takes 10-20 s (minutes on first use of an image) while
``orbctl clone`` of a prepared machine takes seconds (OrbStack 2.0+).  So for
each distinct base key (:mod:`pytest_orbstack.basekey`) a run creates ONE
base machine, runs the provision hooks on it once, and stops it; every
``orb_vm``, ``orb_vm_fresh`` and ``orb_machines.create`` is then ``orbctl
clone`` of the base + start + readiness
(:class:`~pytest_orbstack.clonesource.CloneSource`).  Which process builds a
base, and which run may delete a reused one, is settled by the locks and
records of :mod:`pytest_orbstack.basestore`.

Base names:

- run-scoped (default): an ordinary machine name of the run,
  ``<prefix><run id>-<worker>-<token>``, so the run's final purge deletes it
  and a crashed run's base is purged like any other orphan;
- reused (``--orb-reuse``): ``pytest-base-<key>``, outside the purge prefix, kept
  across runs; its key covers the provision hooks' source, so changing a hook
  builds a new base.

A base pays for itself from the second machine of its spec on: building it and
then cloning it costs a stop, a clone and a start more than creating one
machine.  So when the run's selected tests need only one machine of a spec
(``--orb-clone auto``, no ``--orb-reuse``), :class:`OneOffSource` creates it
directly and builds no base.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Final, Optional

from pytest_orbstack import commands
from pytest_orbstack.basebuild import BaseBuilder, VolatileProvisionWarning, VolatileWarner
from pytest_orbstack.basekey import base_key, reused_base_name
from pytest_orbstack.basestore import BaseBuildError, BaseRecord, BaseStore
from pytest_orbstack.clonesource import CloneSource
from pytest_orbstack.errors import (
    OrbctlCommandError,
    OrbstackError,
    first_line,
)
from pytest_orbstack.machine import Machine
from pytest_orbstack.settings import Clone, Reuse
from pytest_orbstack.sources import CreateSource, MachineSource, Made

if TYPE_CHECKING:
    from pytest_orbstack.context import MakeContext
    from pytest_orbstack.machine import MachineManager
    from pytest_orbstack.models import MachineSpec, OrbVersion
    from pytest_orbstack.provisioner import Provisioner

#: ``VolatileProvisionWarning`` is also named here, where it was first announced, so that
#: ``-W ignore::pytest_orbstack.bases.VolatileProvisionWarning`` keeps working.
__all__ = [
    "BaseManager",
    "OneOffSource",
    "VolatileProvisionWarning",
    "clone_decision",
    "install",
    "wait_seconds",
]

#: The first OrbStack with ``orbctl clone``.
CLONE_SINCE: Final = commands.CLONE_SINCE


def clone_decision(mode: Clone, version: Optional[OrbVersion]) -> tuple[bool, Optional[str]]:
    """(clone?, note) for ``--orb-clone mode`` with OrbStack ``version`` (``None``: unknown).

    ``note`` is the one header line that explains a fallback to ``create``.
    ``always`` with a version known to be too old raises :class:`ValueError`
    (the caller turns it into a usage error).
    """
    if mode == Clone.NEVER:
        return False, None
    if version is not None and version < CLONE_SINCE:
        if mode == Clone.ALWAYS:
            raise ValueError(
                f"OrbStack {version} has no 'orbctl clone' (needs {CLONE_SINCE}+); "
                "update OrbStack or use --orb-clone auto"
            )
        return False, (
            f"OrbStack {version} has no 'orbctl clone' ({CLONE_SINCE}+): every machine is created "
            "with 'orbctl create' (slower)"
        )
    return True, None


class BaseManager:
    """Builds (or finds) the base of each key, once per run, and remembers it in this process."""

    def __init__(
        self,
        context: MakeContext,
        store: BaseStore,
        *,
        manager: MachineManager,
        provision: Callable[[Machine], None],
        sources: Callable[[], Sequence[str]],
        reuse: Reuse = Reuse.OFF,
        warn: Optional[VolatileWarner] = None,
    ) -> None:
        if reuse not in tuple(Reuse):
            raise ValueError(f"reuse must be one of {', '.join(map(str, Reuse))}, got {reuse!r}")
        self._c = context
        self._store = store
        self._builder = BaseBuilder(context, manager=manager, provision=provision, warn=warn)
        self._sources = sources
        self.reuse = reuse
        self._guard = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        #: key -> base name, for bases ready in this process
        self._known: dict[str, str] = {}
        #: run-scoped bases this process built (the controller reports their deletion)
        self.built: list[str] = []
        self._source_texts: Optional[tuple[str, ...]] = None

    def key(self, spec: MachineSpec) -> str:
        with self._guard:
            if self._source_texts is None:  # hooks are registered before any machine is made
                self._source_texts = tuple(self._sources())
            texts = self._source_texts
        return base_key(spec, texts)

    def base_for(self, spec: MachineSpec) -> str:
        """The name of the stopped, provisioned base for ``spec``; builds it if this run has none yet."""
        key = self.key(spec)
        with self._guard:
            known = self._known.get(key)
            if known is not None:
                return known
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # threads of one process (create_many) wait for one build
            with self._guard:
                if key in self._known:
                    return self._known[key]
            name = self._obtain_shared(spec, key)
            with self._guard:
                self._known[key] = name
            return name

    def close(self) -> None:
        """The session ends: stop being a user of the reused bases (others may refresh them now)."""
        self._store.close()

    # --- across processes --------------------------------------------------------------------

    def _obtain_shared(self, spec: MachineSpec, key: str) -> str:
        start = self._c.clock()
        record = self._store.recorded(key)  # built already: no lock to wait for
        if record is not None:
            return self._recorded(spec, key, record, start)
        with self._store.build_turn(spec, key) as turn:
            if turn.record is not None:
                return self._recorded(spec, key, turn.record, start)
            reused = self.reuse != Reuse.OFF
            try:
                name = (
                    self._obtain_reused(spec, key)
                    if reused
                    else self._builder.build(spec, self._c.new_name())
                )
            except BaseBuildError as exc:
                turn.failed(exc.name, exc.reason)
                raise
            if not reused:
                with self._guard:
                    self.built.append(name)
            turn.built(name, reused=reused)
            return name

    def _recorded(self, spec: MachineSpec, key: str, record: BaseRecord, start: float) -> str:
        """The base another process of the run left a record of (waited for since ``start``)."""
        if record.error is not None:
            raise BaseBuildError(spec, record.name, record.error, record.worker)
        waited = self._c.clock() - start
        if waited >= 1.0:
            self._c.events.event(
                f"waited {waited:.1f}s for base {record.name} built by {record.worker}", verbose=True
            )
        if record.reused:
            self._store.use(key)
        return record.name

    def _obtain_reused(self, spec: MachineSpec, key: str) -> str:
        """The base kept across runs: found, or (re)built under a lock in the state directory."""
        name = reused_base_name(key)
        with self._store.reuse_lock(spec, key, name):
            state = self._state_of(spec, name)
            # Only a stopped base is a finished one: a base is renamed to its reuse name
            # after it was provisioned and stopped (below), so anything else is suspect.
            if state is not None and self.reuse == Reuse.ON and state == "stopped":
                self._store.use(key)
                self._c.events.event(f"reusing base {name} ({spec.describe()})", verbose=True)
                return name
            if state is None:
                built = self._build_renamed(spec, name)
                self._store.use(key)
                return built
            with self._store.taken_over(spec, key, name):  # nobody clones from it while we rebuild
                why = "--orb-reuse=refresh" if self.reuse == Reuse.REFRESH else f"it is {state}"
                self._c.events.event(f"rebuilding base {name} ({why})")
                self._c.delete_name(name)
                return self._build_renamed(spec, name)

    def _build_renamed(self, spec: MachineSpec, name: str) -> str:
        """Build under a name of this run (purged if we die meanwhile), then take ``name``."""
        building = self._builder.build(spec, self._c.new_name())
        try:
            self._c.client.rename(building, name)
        except OrbstackError as exc:
            with contextlib.suppress(Exception):
                self._c.delete_name(building)
            raise BaseBuildError(spec, name, f"rename {building} failed: {first_line(exc)}") from exc
        return name

    def _state_of(self, spec: MachineSpec, name: str) -> Optional[str]:
        try:
            for info in self._c.client.list():
                if info.name == name:
                    return str(info.state)
        except OrbctlCommandError as exc:
            raise BaseBuildError(spec, name, f"orbctl list failed: {first_line(exc)}") from None
        return None


class OneOffSource:
    """A :class:`~pytest_orbstack.sources.MachineSource`: the one machine of a spec the run needs is
    created directly; any other machine comes from ``clone`` (the base of its spec, cloned).

    ``single(spec)`` says whether the run's selected tests need exactly one
    machine of ``spec`` (:meth:`pytest_orbstack.plan.Demand.single`).  Only the
    first machine of such a spec is created: should the count be wrong (a
    fixture reached through ``request.getfixturevalue``), the next one is a
    clone, as without this source.  The created machine is provisioned at
    hand-out, like any created machine.
    """

    def __init__(
        self, context: MakeContext, clone: MachineSource, single: Callable[[MachineSpec], bool]
    ) -> None:
        self._c = context
        #: where every machine but the one-off ones comes from
        self.clone = clone
        self._single = single
        self._guard = threading.Lock()
        self._seen: set[MachineSpec] = set()

    def close(self, *, wait: bool = True) -> None:
        self.clone.close(wait=wait)

    def warm(self, spec: MachineSpec) -> bool:
        """The base, unless the next machine of ``spec`` is the one-off one (``False``: nothing ahead)."""
        with self._guard:
            direct = spec not in self._seen and self._single(spec)
        return False if direct else self.clone.warm(spec)

    def make(self, spec: MachineSpec, name: str) -> Made:
        with self._guard:
            direct = spec not in self._seen and self._single(spec)
            self._seen.add(spec)
        if not direct:
            return self.clone.make(spec, name)
        self._c.events.event(
            f"creating {name} ({spec.describe()}) directly: the run needs one machine of it, so no base "
            "is built",
            verbose=True,
        )
        return dataclasses.replace(CreateSource(self._c).make(spec, name), instead_of_base=True)


def install(
    provisioner: Provisioner,
    *,
    clone: Clone,
    version: Optional[OrbVersion],
    reuse: Reuse,
    lock_dir: Path,
    sources: Callable[[], Sequence[str]],
    state_dir: Optional[Path] = None,
    lock_timeout: float = 1800.0,
    single: Optional[Callable[[MachineSpec], bool]] = None,
) -> Optional[BaseManager]:
    """Switch ``provisioner`` to cloning (when :func:`clone_decision` says so); the manager, or ``None``.

    ``single``: whether the run needs only one machine of a spec, which is then
    created directly (:class:`OneOffSource`); ``None``: every machine is a clone.
    Raises :class:`ValueError` for ``clone="always"`` with an OrbStack without clone.
    """
    on, _ = clone_decision(clone, version)
    if not on:
        return None
    namer = provisioner.namer
    store = BaseStore(
        lock_dir=lock_dir,
        run_id=namer.run_id,
        worker=namer.worker,
        state_dir=state_dir,
        lock_timeout=lock_timeout,
    )
    manager = BaseManager(
        provisioner.context,
        store,
        manager=provisioner,
        provision=provisioner.hooks.provision,
        sources=sources,
        reuse=reuse,
        warn=provisioner.warn_volatile,
    )
    source: MachineSource = CloneSource(provisioner.context, manager)
    if single is not None:
        source = OneOffSource(provisioner.context, source, single)
    provisioner.source = source
    return manager


def wait_seconds(create_timeout: Optional[float], ready_timeout: float, retries: int) -> float:
    """How long a worker waits for another one's build: every attempt of create + readiness, + slack."""
    per_attempt = (create_timeout if create_timeout is not None else 600.0) + ready_timeout
    return per_attempt * (retries + 1) + 300.0
