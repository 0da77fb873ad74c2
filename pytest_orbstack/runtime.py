"""The per-process runtime the fixtures share: :class:`OrbRuntime`, in ``config.stash``.

It lives from ``pytest_configure`` on and holds the pieces one pytest process
uses: the :class:`~pytest_orbstack.backend.Backend` (where orbctl is, its
client, whether OrbStack is usable: checked lazily, the first time a fixture
needs a machine, so tests without machines run even when OrbStack is
missing), the :class:`~pytest_orbstack.plan.Plan` (clone or create, prefetch:
decided once), the :class:`Provisioner` (made by the first fixture that needs a
machine), the :class:`~pytest_orbstack.plan.KeepPolicy` and the run's bases.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Optional, cast

import pytest

from pytest_orbstack import availability, basekey, bases, lookahead, naming, ownership
from pytest_orbstack.backend import Backend, Located
from pytest_orbstack.breaker import AddressBreaker
from pytest_orbstack.context import Limits, Namer
from pytest_orbstack.errors import OrbstackError
from pytest_orbstack.health import SharedMachine
from pytest_orbstack.machine import Machine
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.plan import Demand, KeepPolicy, Plan, decide
from pytest_orbstack.prefetch import PrefetchSource
from pytest_orbstack.provisioner import Provisioner
from pytest_orbstack.report import Stats
from pytest_orbstack.retry import RetryPolicy
from pytest_orbstack.settings import Clone, Settings

__all__ = ["OrbRuntime", "failure_text", "get_runtime", "new_runtime", "runtime_key"]


class OrbRuntime:
    """What pytest-orbstack keeps for one pytest process: its pieces, and the state plugin.py fills.

    The work is the pieces': :attr:`backend` (orbctl, OrbStack), :meth:`plan`
    (decided once), :meth:`provisioner` (machines), :attr:`keep`.  :meth:`orbctl`,
    :meth:`client` and :attr:`where` are the backend's, under the names the
    hooks use.
    """

    def __init__(self, config: pytest.Config, settings: Settings, run_id: str, worker: str) -> None:
        self.config = config
        self.settings = settings
        self.run_id = run_id
        #: ``main`` or the xdist worker id
        self.worker = worker
        self.stats = Stats()
        #: orbctl, its client (``pytest_orbstack_make_client``), OrbStack's state and version
        self.backend = Backend(
            settings.orbctl, lambda: cast(Orbctl, config.hook.pytest_orbstack_make_client(config=config))
        )
        #: which machines outlive their fixture (``--orb-keep``)
        self.keep = KeepPolicy(settings.keep)
        self._plan: Optional[Plan] = None
        #: the machines of each spec the run's selected tests can need (counted after collection)
        self.demand = Demand()
        self._lock = threading.Lock()
        #: why no machine can be made in this run, found by the prepare step (``availability``)
        self.unavailable: Optional[str] = None
        #: an xdist worker: the controller's prepare step is still to be read from the lock directory
        self.reason_from_controller = False
        self._provisioner: Optional[Provisioner] = None
        #: where the clone fast path keeps its locks (set by the first fixture that needs a machine)
        self.lock_dir: Optional[Path] = None
        #: the clone fast path's base machines, when it is on
        self.bases: Optional[bases.BaseManager] = None
        #: run-scoped bases that xdist workers built (reported to the controller)
        self.worker_bases: set[str] = set()
        #: the ``orb_vm`` machine between tests (replaced when it died)
        self.shared = SharedMachine()
        #: the test running now and those coming next (set by the plugin as each test starts)
        self.coming: Callable[[], Sequence[pytest.Item]] = list
        #: called once before this process makes its first machine (the run's lease, watchdog, purge)
        self.before_first_machine: Optional[Callable[[], None]] = None
        #: True once a test of the run set out to use a machine (here or in an xdist worker)
        self.machines_wanted = False
        self._started = False
        #: the running test's timeout stands still inside this (pytest-timeout, see timeout.py)
        self.timeout_pause: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
        self._announced: set[str] = set()

    @property
    def where(self) -> str:
        """Put before a problem of OrbStack: ``on host NAME: `` in a worker on another host."""
        return self.backend.where

    @where.setter
    def where(self, value: str) -> None:
        self.backend.where = value

    @property
    def failed_machines(self) -> set[str]:
        """Names of machines used by a failed test (``--orb-keep failed``)."""
        return self.keep.failed

    # --- orbctl and OrbStack (the backend) ---------------------------------------------------------

    def orbctl(self) -> Located:
        """(path, kind) of the orbctl in use (:func:`~pytest_orbstack.backend.locate`); may raise
        OrbctlNotFoundError."""
        return self.backend.locate()

    def client(self) -> Orbctl:
        """The orbctl client (``pytest_orbstack_make_client``), made once."""
        return self.backend.client()

    def problem(self) -> Optional[str]:
        """Why machines cannot be made (one line naming the fix), or ``None``.

        The prepare step's reason (an xdist worker reads the controller's),
        else OrbStack's state, checked once (:meth:`Backend.problem`).
        """
        if self.reason_from_controller and self.lock_dir is not None:
            prepared, reason = availability.read_reason(self.lock_dir, self.run_id)
            if prepared:  # written before the controller handed out any test
                self.reason_from_controller = False
                self.unavailable = reason
        if self.unavailable is not None:
            return self.unavailable
        return self.backend.problem()

    def usable_client(self) -> Optional[Orbctl]:
        """The client if OrbStack can be used right now, else ``None`` (never starts OrbStack)."""
        return None if self.problem() is not None else self.backend.client()

    def plan(self) -> Plan:
        """Clone or create, prefetch: decided once OrbStack's version is known (never asked with
        ``--orb-clone never``; while it cannot be told, clone is tried and it is asked again next time)."""
        if self._plan is not None:
            return self._plan
        asks = self.settings.clone != Clone.NEVER
        version = self.backend.version() if asks else None
        plan = decide(self.settings, version)
        if version is not None or not asks:
            self._plan = plan
        return plan

    def provisioner(self) -> Provisioner:
        """The provisioner; a test that needs it errors with one line if OrbStack is unusable."""
        problem = self.problem()
        if problem is not None:
            availability.give_up(problem, self.settings.if_unavailable)
        self.start_once()
        if self.unavailable is not None:  # found by the start (a worker on another host prepares there)
            availability.give_up(self.unavailable, self.settings.if_unavailable)
        with self._lock:
            if self._provisioner is None:
                settings = self.settings
                flag = None  # one breaker for the run's processes
                if self.lock_dir is not None:
                    flag = self.lock_dir / f"orbstack-no-address-{self.run_id}"
                self._provisioner = Provisioner(
                    self.backend.client(),
                    namer=Namer(settings.prefix, self.run_id, self.worker),
                    limits=Limits(
                        settings.ready_timeout,
                        settings.machine_timeout,
                        RetryPolicy(retries=settings.retries),
                    ),
                    hooks=_BoundHooks(self.config),
                    events=self.stats,
                    breaker=AddressBreaker(flag=flag),
                )
                self._provisioner.delete_in_background()
                plan = self.plan()
                self._install_clone(self._provisioner, plan)
                if plan.prefetch:
                    self._provisioner.source = PrefetchSource(
                        self._provisioner.context,
                        self._provisioner.source,
                        limit=plan.prefetch,
                        on_warm=lambda spec: self.prefetch(self.coming, current=True),
                    )
            return self._provisioner

    def start_once(self) -> None:
        """Run :attr:`before_first_machine` unless it ran already (and succeeded)."""
        if not self._started:
            if self.before_first_machine is not None:
                self.before_first_machine()  # a failure here fails this test; the next one tries again
            self._started = True

    def prefetch(self, coming: Callable[[], Sequence[pytest.Item]], *, current: bool = False) -> None:
        """Start making the machines ``coming()`` (the tests coming next, in order) will take.

        Those of ``orb_vm_fresh``, up to ``--orb-prefetch``, and the shared
        ``orb_vm`` machine while this process has none, when one of those tests
        uses it or the run's selected tests say this process will run such a
        test (:attr:`~pytest_orbstack.plan.Demand.shared_everywhere`): one
        more, beyond that bound.  ``current``: the first item is the test
        being set up; its ``orb_vm_fresh`` machine is asked for beyond the
        bound too (it is not ahead: it is needed now).  Does nothing when
        prefetch is off, or before this process can make a machine of a spec
        ahead (see :class:`~pytest_orbstack.prefetch.PrefetchSource`).  Skips
        items marked ``skip`` or ``skipif`` and items whose ``orb`` marker is
        wrong (the test reports that itself).  ``coming`` is called only when
        there is something to do: a test that uses no machine pays nothing for it.
        """
        with self._lock:
            provisioner = self._provisioner
        if provisioner is None or not isinstance(provisioner.source, PrefetchSource):
            return
        if provisioner.breaker.tripped:  # no more machines this run
            return
        source = provisioner.source
        ahead = lookahead.ahead(
            coming(),
            self.settings,
            source.limit,
            shared=self.shared.machine is None,
            surely_shared=self.demand.shared_everywhere,
            current=current,
        )
        for spec, count in ahead.counts.items():  # the spec of the nearest test first (dicts keep order)
            source.prepare(spec, count, extra=ahead.extra)

    def close(self, *, wait: bool = True) -> None:
        """The session ends: the provisioner lets go of what it holds (unused prefetched machines).

        ``wait=False`` (after Ctrl-C): machines still being made are deleted once they exist,
        without waiting here.
        """
        with self._lock:
            provisioner = self._provisioner
        if provisioner is not None:
            provisioner.close(wait=wait)

    def _install_clone(self, provisioner: Provisioner, plan: Plan) -> None:
        """Switch to the clone fast path when the plan says so (``--orb-clone``)."""
        if plan.refused is not None:
            self._provisioner = None
            pytest.fail(f"--orb-clone always: {plan.refused}", pytrace=False)
        if not plan.clone:
            return
        settings = self.settings
        hook = self.config.hook.pytest_orbstack_provision
        lock_dir = self.lock_dir or Path(self.config.rootpath)
        self.bases = bases.install(
            provisioner,
            clone=settings.clone,
            version=plan.version,
            reuse=settings.reuse,
            lock_dir=lock_dir,
            sources=lambda: basekey.provision_sources(hook),
            state_dir=ownership.state_dir(),
            lock_timeout=bases.wait_seconds(
                settings.create_timeout, settings.ready_timeout, settings.retries
            ),
            single=self.demand.single if plan.one_off else None,
        )

    def run_bases(self) -> set[str]:
        """Run-scoped base machines built by this process or reported by its xdist workers."""
        built = set(self.bases.built) if self.bases is not None else set()
        return built | self.worker_bases

    # --- machines ----------------------------------------------------------------------------

    def obtain(self, spec: MachineSpec) -> Machine:
        with self.timeout_pause():
            provisioner = self.provisioner()
            self._say_first_create(spec)
            try:
                return provisioner.obtain(spec)
            except OrbstackError as exc:
                failure = failure_text(exc)
            pytest.fail(failure, pytrace=False)  # outside the except: no chain of causes repeats it

    def _say_first_create(self, spec: MachineSpec) -> None:
        """On real OrbStack, the first create of an image may download it: say so before the wait."""
        plan = self._plan
        direct = plan is not None and plan.one_off and self.demand.single(spec)
        if (self.bases is not None and not direct) or spec.image in self._announced:
            return  # the clone fast path says it builds a base instead
        self._announced.add(spec.image)
        located = self.backend.found()
        if located is not None and located.kind == "orbctl":
            self.stats.waiting(
                f"making the first {spec.describe()} machine: OrbStack downloads an image "
                "the first time it is used, which can take minutes"
            )

    def should_keep(self, machine: Machine) -> bool:
        return self.keep.keeps(machine.name)

    def release(self, machine: Machine) -> None:
        with self.timeout_pause():
            self.provisioner().release(machine, keep=self.should_keep(machine))


def failure_text(exc: BaseException) -> str:
    """``exc`` and its chain of causes, each line said once (what pytest would repeat per cause)."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    while cause is not None:
        for line in str(cause).splitlines():
            if line.strip() and line not in text:
                text += f"\n{line}"
        cause = cause.__cause__
    return text


class _BoundHooks:
    """The ``pytest_orbstack_*`` machine hooks of one config."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def provision(self, machine: Machine) -> None:
        self._config.hook.pytest_orbstack_provision(machine=machine, config=self._config)

    def ready(self, machine: Machine) -> None:
        self._config.hook.pytest_orbstack_machine_ready(machine=machine, config=self._config)

    def teardown(self, machine: Machine) -> None:
        self._config.hook.pytest_orbstack_machine_teardown(machine=machine, config=self._config)


runtime_key: Final = pytest.StashKey[OrbRuntime]()


def get_runtime(config: pytest.Config) -> OrbRuntime:
    return config.stash[runtime_key]


def new_runtime(
    config: pytest.Config, settings: Settings, run_id: str, worker_id: Optional[str]
) -> OrbRuntime:
    runtime = OrbRuntime(config, settings, run_id, naming.worker_tag(worker_id))
    config.stash[runtime_key] = runtime
    return runtime
