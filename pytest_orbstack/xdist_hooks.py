"""pytest-xdist's side: what the controller and its workers tell each other.

The controller hands each worker the run id and its own host in
``workerinput`` (:meth:`XdistHooks.pytest_configure_node`); a worker whose
selected tests need machines says so before it reports its collection
(:class:`WorkerCollection`), and the controller then prepares the backend and
starts the run's guard, before any test is handed out.  At its end a worker
sends its counters, progress lines, the bases it built, whether it set out to
make machines and its host in ``workeroutput`` (:func:`send_output`); the
controller merges them (:meth:`XdistHooks.pytest_testnodedown`).  These
plugins are registered only when pytest-xdist is active.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Optional

import pytest

from pytest_orbstack import availability, guard, hosts, naming
from pytest_orbstack.errors import first_line
from pytest_orbstack.report import WORKEROUTPUT_KEY

if TYPE_CHECKING:
    from pytest_orbstack.runtime import OrbRuntime

__all__ = [
    "ACTIVE_KEY",
    "BASES_KEY",
    "DIST_KEY",
    "RUN_ID_KEY",
    "WorkerCollection",
    "XdistHooks",
    "run_id_of",
    "send_output",
]

#: ``workerinput`` key of the run id the controller hands to xdist workers.
RUN_ID_KEY: Final = "orbstack_run_id"
#: ``workerinput`` key: the controller's ``--dist`` mode (a worker's own reads ``no``; lookahead.demand)
DIST_KEY: Final = "orbstack_dist"
#: ``workeroutput`` key of the run-scoped base machines a worker built (clone fast path).
BASES_KEY: Final = "orbstack_bases"
#: Seconds between two looks for a worker's "wanted" file once every worker collected and none
#: wanted machines then (a machine fixture reached through ``request.getfixturevalue``).
WANTED_LOOK_INTERVAL: Final = 0.25
#: ``workeroutput`` key: did the worker set out to make machines (then the controller purges at the end)?
ACTIVE_KEY: Final = "orbstack_active"


def run_id_of(workerinput: Mapping[str, Any]) -> str:
    """The run id a worker's machines carry: its controller's (a new one if it said none)."""
    return str(workerinput.get(RUN_ID_KEY) or naming.new_run_id())


class XdistHooks:
    """The controller's hooks that exist only with pytest-xdist."""

    def __init__(
        self, runtime: OrbRuntime, run_guard: guard.ControllerGuard, prepare: Callable[[], None]
    ) -> None:
        self._runtime = runtime
        self._guard = run_guard
        #: the backend's one-time preparation, where and when it is due
        self._prepare = prepare
        #: workers started, and those that ended saying they made no machine
        self.started: set[str] = set()
        self.idle: set[str] = set()
        #: the run's duties were started (a worker said it needs machines); under ``_lock``
        self._begun = False
        self._lock = threading.Lock()
        #: workers started whose collection was not reported yet (a worker that died is not awaited)
        self._awaited: set[str] = set()
        #: looks for a "wanted" file once every worker collected and none wanted machines then
        self._watcher: Optional[threading.Thread] = None
        self._stop = threading.Event()
        #: what stopped the run in the watcher's thread (``pytest.exit``), raised on the main thread
        self._failure: Optional[BaseException] = None
        #: machine counts per host, from the workers' reports (hosts.py)
        self.hosts: dict[tuple[str, str], hosts.HostTally] = {}
        self._identity = hosts.identity()

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[RUN_ID_KEY] = self._runtime.run_id
        node.workerinput[hosts.HOST_KEY] = self._identity
        # a worker's own --dist reads "no": how the tests are spread over the workers (lookahead.demand)
        node.workerinput[DIST_KEY] = str(node.config.getoption("dist", "no"))
        self.started.add(str(node.gateway.id))
        self._awaited.add(str(node.gateway.id))

    def pytest_xdist_node_collection_finished(self, node: Any, ids: Any) -> None:
        """A worker collected: if its selected tests need machines, prepare and start the run's duties
        now, before xdist hands out the first test."""
        self._begin(at_collection=True)
        self._awaited.discard(str(node.gateway.id))
        self._watch()

    def _watch(self) -> None:
        """Every worker collected (or died) and none needs a machine: a test may still reach a machine
        fixture through ``request.getfixturevalue``, and its worker then leaves the "wanted" file
        before its first machine.  A thread looks for that file every ``WANTED_LOOK_INTERVAL`` seconds
        and takes the lease and starts the watchdog when it is there, while that test runs."""
        if self._awaited or self._begun or self._watcher is not None:
            return
        if self._runtime.config.option.collectonly:
            return
        self._watcher = threading.Thread(target=self._look_until_wanted, name="orbstack-wanted", daemon=True)
        self._watcher.start()

    def _look_until_wanted(self) -> None:
        while not self._begun and not self._stop.wait(WANTED_LOOK_INTERVAL):
            if not self._look(stopping=False):
                return

    def _look(self, *, stopping: bool) -> bool:
        """One look for the "wanted" file (lease and watchdog if it is there); False: stop looking."""
        try:
            self._begin(at_collection=False)
        except pytest.exit.Exception as exc:  # the lease cannot be written: the run stops, as always
            if stopping:
                self._runtime.stats.event(f"could not take the run's lease: {first_line(exc)}")
            else:
                self._failure = exc  # raised by the next test report, on pytest's own thread
            return False
        except Exception as exc:
            self._runtime.stats.event(f"could not look for machines a worker makes: {first_line(exc)}")
            return False
        return True

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    @pytest.hookimpl(tryfirst=True)  # before the plugin's sessionfinish ends the run's duties
    def pytest_sessionfinish(self) -> None:
        """Stop looking, after a last look: a machine made just before the end still gets its run's
        final purge."""
        self._stop.set()
        watcher = self._watcher
        if watcher is not None:
            watcher.join(timeout=30)
            self._look(stopping=True)

    def _begin(self, *, at_collection: bool) -> None:
        with self._lock:
            self._begin_locked(at_collection=at_collection)

    def _begin_locked(self, *, at_collection: bool) -> None:
        runtime = self._runtime
        config = runtime.config
        if self._begun or config.option.collectonly:
            return
        factory = getattr(config, "_tmp_path_factory", None)  # the workers' basetemp is under it
        if factory is None:
            return
        lock_dir = factory.getbasetemp()
        if not availability.is_wanted(lock_dir, runtime.run_id):
            return
        self._begun = True
        runtime.lock_dir = lock_dir
        if not at_collection:  # a worker makes its machines already: lease and watchdog only
            self._guard.hold()
            return
        self._prepare()
        availability.write_reason(lock_dir, runtime.run_id, runtime.unavailable)
        if runtime.problem() is None:  # else every machine test errors with the problem, once each
            runtime.start_once()  # lease, watchdog, start-up purge: the workers do not purge again
            guard.mark_purged(lock_dir)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        self._awaited.discard(str(node.gateway.id))  # died before its collection: not waited for
        self._watch()
        data = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY)
        if data:
            self._runtime.stats.merge(data)
        output = getattr(node, "workeroutput", {})
        self._runtime.worker_bases.update(output.get(BASES_KEY, ()))
        host = output.get(hosts.HOST_OUTPUT_KEY)
        if host:
            key = (str(host["hostname"]), str(host["state_dir"]))
            tally = self.hosts.setdefault(key, hosts.HostTally(*key, remote=bool(host["remote"])))
            tally.add(str(node.gateway.id), data or {})
        if host["remote"] if host else error is not None and hosts.elsewhere_by_spec(node.gateway.spec):
            self.idle.add(str(node.gateway.id))  # its host purged its machines: nothing for us to do
        elif error is not None or output.get(ACTIVE_KEY, WORKEROUTPUT_KEY not in output):
            self._runtime.machines_wanted = True  # a worker that died says nothing: assume it made some
        else:
            self.idle.add(str(node.gateway.id))

    def all_idle(self) -> bool:
        """True when there were workers and every one ended saying it made no machine (Ctrl-C may end
        some unheard).  Without workers (``-n 0``) this process runs the tests itself: False."""
        return bool(self.started) and self.started <= self.idle


class WorkerCollection:
    """On an xdist worker: before xdist reports the collection, say that machines are needed."""

    def __init__(self, runtime: OrbRuntime) -> None:
        self._runtime = runtime

    @pytest.hookimpl(tryfirst=True)  # before xdist's own hook sends the collection to the controller
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        config = session.config
        if config.option.collectonly or not any(availability.uses_machine(i) for i in session.items):
            return
        factory = getattr(config, "_tmp_path_factory", None)
        if factory is not None:
            self._runtime.lock_dir = factory.getbasetemp().parent
            if not hosts.is_remote(config.workerinput):  # type: ignore[attr-defined]
                # the controller's duties are its own host's; another host elects its own (hosts.py)
                availability.note_wanted(self._runtime.lock_dir, self._runtime.run_id)


def send_output(config: pytest.Config, runtime: OrbRuntime) -> None:
    """A worker ends: what its controller merges (:meth:`XdistHooks.pytest_testnodedown`)."""
    data = runtime.stats.to_dict()
    tag = f"[{runtime.worker}] "  # progress lines no test report carries any more
    data["events"] = [[verbose, f"{tag}{line}"] for verbose, line in runtime.stats.take_events()]
    output: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
    output[WORKEROUTPUT_KEY] = data
    output[BASES_KEY] = sorted(runtime.run_bases())
    output[ACTIVE_KEY] = runtime.machines_wanted
    output[hosts.HOST_OUTPUT_KEY] = hosts.worker_host(hosts.is_remote(config.workerinput))  # type: ignore[attr-defined]
