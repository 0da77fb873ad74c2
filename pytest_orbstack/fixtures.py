"""The fixtures, and the per-process runtime they share.

:class:`OrbRuntime` lives in ``config.stash`` from ``pytest_configure`` on.
It finds orbctl, checks once per process that OrbStack is usable (lazily, the
first time a fixture needs a machine, so tests without machines run even
when OrbStack is missing), and owns the :class:`Provisioner`.
"""

from __future__ import annotations

import collections
import contextlib
import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Optional, cast

import pytest

from pytest_orbstack import availability, basekey, bases, naming, ownership
from pytest_orbstack.breaker import AddressBreaker
from pytest_orbstack.client import find_orbctl
from pytest_orbstack.context import Limits, Namer
from pytest_orbstack.errors import (
    MarkerError,
    OrbctlCommandError,
    OrbctlNotFoundError,
    OrbstackError,
    first_line,
)
from pytest_orbstack.health import SharedMachine
from pytest_orbstack.machine import Machine
from pytest_orbstack.marker import marker_overrides, spec_fields, spec_for
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.prefetch import PrefetchSource
from pytest_orbstack.provisioner import MachineFactory, Provisioner
from pytest_orbstack.report import Stats
from pytest_orbstack.retry import RetryPolicy
from pytest_orbstack.settings import Clone, Keep, Settings

__all__ = [
    "MACHINE_FIXTURES",
    "OrbRuntime",
    "orb_client",
    "orb_machines",
    "orb_vm",
    "orb_vm_fresh",
    "runtime_key",
]

#: Fixtures whose machines a failed test keeps (``--orb-keep failed``) and reports.
MACHINE_FIXTURES: Final = ("orb_vm", "orb_vm_fresh", "orb_machines")


def resolve_orbctl(settings: Settings) -> tuple[str, str]:
    """(path, kind) of the orbctl to use; kind is ``orbctl``, ``orbsim`` or ``orbsim-fallback``.

    On Linux without any orbctl (and none given), ``orbsim`` (on PATH, or
    next to the Python interpreter) stands in: kind ``orbsim-fallback``.  Raises
    :class:`OrbctlNotFoundError` when nothing is found.
    """
    try:
        path = find_orbctl(settings.orbctl)
    except OrbctlNotFoundError:
        if platform.system() != "Linux" or settings.orbctl is not None:
            raise  # an orbctl that was asked for and cannot be used is never replaced
        beside = Path(sys.executable).with_name("orbsim")
        found = shutil.which("orbsim") or (str(beside) if os.access(beside, os.X_OK) else None)
        if found is None:
            raise
        return found, "orbsim-fallback"
    return path, ("orbsim" if Path(path).name.startswith("orbsim") else "orbctl")


class OrbRuntime:
    """Everything pytest-orbstack keeps for one pytest process."""

    def __init__(self, config: pytest.Config, settings: Settings, run_id: str, worker: str) -> None:
        self.config = config
        self.settings = settings
        self.run_id = run_id
        #: ``main`` or the xdist worker id
        self.worker = worker
        self.stats = Stats()
        #: names of machines used by a failed test (``--orb-keep failed``)
        self.failed_machines: set[str] = set()
        self._lock = threading.Lock()
        self._client: Optional[Orbctl] = None
        self._problem: Optional[str] = None
        self._checked = False
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
        #: called once before this process makes its first machine (the run's lease, watchdog, purge)
        self.before_first_machine: Optional[Callable[[], None]] = None
        #: True once a test of the run set out to use a machine (here or in an xdist worker)
        self.machines_wanted = False
        #: put before a problem of OrbStack here: ``on host NAME: `` in a worker on another host
        self.where = ""
        self._started = False
        #: the running test's timeout stands still inside this (pytest-timeout, see timeout.py)
        self.timeout_pause: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
        self._announced: set[str] = set()

    # --- orbctl ------------------------------------------------------------------------------

    def orbctl(self) -> tuple[str, str]:
        """(path, kind) of the orbctl in use (see :func:`resolve_orbctl`); may raise OrbctlNotFoundError."""
        return resolve_orbctl(self.settings)

    def client(self) -> Orbctl:
        """The orbctl client (``pytest_orbstack_make_client``), made once."""
        with self._lock:
            if self._client is None:
                self._client = self.config.hook.pytest_orbstack_make_client(config=self.config)
            return self._client

    def problem(self) -> Optional[str]:
        """Why machines cannot be made (one line naming the fix), or ``None``.  Checked once."""
        if self.reason_from_controller and self.lock_dir is not None:
            prepared, reason = availability.read_reason(self.lock_dir, self.run_id)
            if prepared:  # written before the controller handed out any test
                self.reason_from_controller = False
                self.unavailable = reason
        if self.unavailable is not None:
            return self.unavailable
        if self._checked:
            return self._problem
        try:
            client = self.client()
            status = _status(client)
        except OrbctlNotFoundError as exc:  # missing, or it cannot be executed
            self._problem = first_line(exc)  # names what was looked for and how to fix it
        else:
            deadline = time.monotonic() + STARTING_WAIT
            while status == "Starting" and time.monotonic() < deadline:  # it was just opened
                time.sleep(0.25)
                status = _status(client)
            if status == "Starting":
                self._problem = (
                    f"OrbStack is still starting after {STARTING_WAIT:g}s (orbctl status: Starting): "
                    "wait until the OrbStack app says it is running, then run the tests again"
                )
            elif status != "Running":
                self._problem = (
                    f"OrbStack is not running (orbctl status: {status}): open the OrbStack app "
                    "or run 'orbctl list' (which starts it), then run the tests again"
                )
        if self._problem is not None:
            self._problem = self.where + self._problem
        self._checked = True
        return self._problem

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
                    cast(Orbctl, self._client),  # made by start_once
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
                self._install_clone(self._provisioner)
                if settings.prefetch_limit:
                    self._provisioner.source = PrefetchSource(
                        self._provisioner.context, self._provisioner.source, limit=settings.prefetch_limit
                    )
            return self._provisioner

    def start_once(self) -> None:
        """Run :attr:`before_first_machine` unless it ran already (and succeeded)."""
        if not self._started:
            if self.before_first_machine is not None:
                self.before_first_machine()  # a failure here fails this test; the next one tries again
            self._started = True

    def prefetch(self, items: Sequence[pytest.Item]) -> None:
        """Start making the ``orb_vm_fresh`` machines of ``items`` (the tests coming next, in order).

        Does nothing when prefetch is off, before this process made its first
        machine (the provisioner, its lock directory and OrbStack's state come
        from a fixture's setup).  Skips items marked ``skip`` or ``skipif``
        and items whose ``orb`` marker is wrong (the test reports that itself).
        """
        with self._lock:
            provisioner = self._provisioner
        if provisioner is None or not isinstance(provisioner.source, PrefetchSource):
            return
        if provisioner.breaker.tripped:  # no more machines this run
            return
        wanted: collections.Counter[MachineSpec] = collections.Counter()
        for item in items:
            if sum(wanted.values()) >= provisioner.source.limit:
                break
            if "orb_vm_fresh" not in getattr(item, "fixturenames", ()):
                continue
            if any(item.iter_markers("skip")) or any(item.iter_markers("skipif")):
                continue  # may well be skipped: whether is only known at its setup
            try:
                wanted[spec_for(self.settings, marker_overrides(item))] += 1
            except MarkerError:
                continue
        for spec, count in wanted.items():  # the spec of the nearest test first (Counter keeps order)
            provisioner.source.prepare(spec, count)

    def close(self, *, wait: bool = True) -> None:
        """The session ends: the provisioner lets go of what it holds (unused prefetched machines).

        ``wait=False`` (after Ctrl-C): machines still being made are deleted once they exist,
        without waiting here.
        """
        with self._lock:
            provisioner = self._provisioner
        if provisioner is not None:
            provisioner.close(wait=wait)

    def _install_clone(self, provisioner: Provisioner) -> None:
        """Switch to the clone fast path (``--orb-clone``) when OrbStack has ``orbctl clone``."""
        settings = self.settings
        if settings.clone == Clone.NEVER:
            return
        try:
            version = cast(Orbctl, self._client).version()
        except (OrbstackError, AttributeError):
            version = None  # cannot tell: try clone; an old OrbStack then fails with one line
        hook = self.config.hook.pytest_orbstack_provision
        lock_dir = self.lock_dir or Path(self.config.rootpath)
        try:
            self.bases = bases.install(
                provisioner,
                clone=settings.clone,
                version=version,
                reuse=settings.reuse,
                lock_dir=lock_dir,
                sources=lambda: basekey.provision_sources(hook),
                state_dir=ownership.state_dir(),
                lock_timeout=bases.wait_seconds(
                    settings.create_timeout, settings.ready_timeout, settings.retries
                ),
            )
        except ValueError as exc:
            self._provisioner = None
            pytest.fail(f"--orb-clone always: {exc}", pytrace=False)

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
        if self.bases is not None or spec.image in self._announced:
            return  # the clone fast path says it builds a base instead
        self._announced.add(spec.image)
        try:
            kind = self.orbctl()[1]
        except OrbstackError:
            return
        if kind == "orbctl":
            self.stats.waiting(
                f"making the first {spec.describe()} machine: OrbStack downloads an image "
                "the first time it is used, which can take minutes"
            )

    def should_keep(self, machine: Machine) -> bool:
        keep = self.settings.keep
        return keep == Keep.ALWAYS or (keep == Keep.FAILED and machine.name in self.failed_machines)

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


#: How long machine fixtures wait for an OrbStack that ``orbctl status`` says is ``Starting``
#: (orbctl's own limit for starting OrbStack is 15 s).
STARTING_WAIT: Final = 15.0


def _status(client: Orbctl) -> str:
    try:
        return str(client.status()).strip() or "no answer"
    except OrbctlCommandError as exc:
        return (exc.stdout.strip() or first_line(exc)) or "no answer"


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


def new_runtime(
    config: pytest.Config, settings: Settings, run_id: str, worker_id: Optional[str]
) -> OrbRuntime:
    runtime = OrbRuntime(config, settings, run_id, naming.worker_tag(worker_id))
    config.stash[runtime_key] = runtime
    return runtime
