"""pytest entry point: options, ini values, markers, hooks, xdist wiring, ownership and reporting.

Roles: without xdist the one process does everything.  With xdist the
controller makes the run id (handed to workers in ``workerinput``); once a
worker said its selected tests need machines, it prepares the backend, holds
the run's lease and watchdog and purges orphans, before any test is handed
out; it purges this run's leftovers at the end and prints.  Workers make,
hand out and delete their own machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import socket
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any, Callable, Final, Optional

import pytest

from pytest_orbstack import (
    availability,
    hookspecs,
    hosts,
    lookahead,
    naming,
    ownership,
    reaper,
    signals,
)
from pytest_orbstack.client import OrbctlClient, Timeouts
from pytest_orbstack.diagnostics import logs_tail
from pytest_orbstack.errors import MarkerError, OrbstackError, first_line
from pytest_orbstack.fixtures import (
    OrbRuntime,
    get_runtime,
    machines_used_by,
    new_runtime,
    orb_client,
    orb_machines,
    orb_vm,
    orb_vm_fresh,
    runtime_key,
)
from pytest_orbstack.machine import Machine
from pytest_orbstack.marker import MARKER_LINE, check_marker_use, marker_overrides
from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.report import (
    EVENTS_ATTR,
    WORKEROUTPUT_KEY,
    failure_section,
    machine_properties,
    summary_lines,
)
from pytest_orbstack.settings import Clone, add_options, load_settings
from pytest_orbstack.timeout import TimeoutPause

__all__ = ["orb_client", "orb_machines", "orb_vm", "orb_vm_fresh"]

#: ``workerinput`` key of the run id the controller hands to xdist workers.
RUN_ID_KEY: Final = "orbstack_run_id"
#: ``workeroutput`` key of the run-scoped base machines a worker built (clone fast path).
BASES_KEY: Final = "orbstack_bases"
#: ``workeroutput`` key: did the worker set out to make machines (then the controller purges at the end)?
ACTIVE_KEY: Final = "orbstack_active"
#: The flag file (in the run's lock directory) of the start-up purge, done once per run.
_PURGED_FLAG: Final = "orbstack-startup-purge.done"
_lease_key: Final = pytest.StashKey[Optional[ownership.RunLease]]()
_watchdog_key: Final = pytest.StashKey[Optional[reaper.Watchdog]]()
_pin_key: Final = pytest.StashKey[Optional[reaper.WorkerPin]]()
_next_item_key: Final = pytest.StashKey[Optional[pytest.Item]]()
_testinfra_key: Final = pytest.StashKey[Callable[[], Orbctl]]()
#: a worker on another host than its controller: its part of that host's duties (hosts.py)
_host_key: Final = pytest.StashKey[Optional[hosts.HostDuties]]()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


class XdistHooks:
    """Hooks that exist only with pytest-xdist: registered only when it is installed and active."""

    def __init__(self, runtime: OrbRuntime) -> None:
        self._runtime = runtime
        #: workers started, and those that ended saying they made no machine
        self.started: set[str] = set()
        self.idle: set[str] = set()
        #: the run's duties were started (a worker said it needs machines)
        self._begun = False
        #: machine counts per host, from the workers' reports (hosts.py)
        self.hosts: dict[tuple[str, str], hosts.HostTally] = {}
        self._identity = hosts.identity()

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[RUN_ID_KEY] = self._runtime.run_id
        node.workerinput[hosts.HOST_KEY] = self._identity
        self.started.add(str(node.gateway.id))

    def pytest_xdist_node_collection_finished(self, node: Any, ids: Any) -> None:
        """A worker collected: if its selected tests need machines, prepare and start the run's duties
        now, before xdist hands out the first test."""
        self._begin(at_collection=True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A machine fixture reached only through ``request.getfixturevalue``: its worker said so
        before its first machine; the lease and the watchdog start at its test's first report."""
        self._begin(at_collection=False)

    def _begin(self, *, at_collection: bool) -> None:
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
            _start_duties(config, runtime, purge=False)
            return
        _prepare(runtime, None)
        availability.write_reason(lock_dir, runtime.run_id, runtime.unavailable)
        if runtime.problem() is None:  # else every machine test errors with the problem, once each
            runtime.start_once()  # lease, watchdog, start-up purge: the workers do not purge again
            (lock_dir / _PURGED_FLAG).touch()

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
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
        """True when every worker ended and said it made no machine (Ctrl-C may end some unheard)."""
        return self.started <= self.idle


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_LINE)
    settings = load_settings(config)
    if _is_worker(config):
        workerinput: dict[str, Any] = config.workerinput  # type: ignore[attr-defined]
        run_id = str(workerinput.get(RUN_ID_KEY) or naming.new_run_id())
        runtime = new_runtime(config, settings, run_id, str(workerinput.get("workerid", "")))
        config.stash[_host_key] = None
        config.stash[_pin_key] = None  # taken before this worker's first machine (_hold_pin, _join_host)
        if hosts.is_remote(workerinput):  # the run id and the pin come from this host's election
            runtime.where = f"on host {socket.gethostname()}: "
        else:
            runtime.reason_from_controller = True
        runtime.before_first_machine = lambda: _before_first_machine(config, runtime)
    else:
        runtime = new_runtime(config, settings, naming.new_run_id(), None)
        runtime.before_first_machine = lambda: _before_first_machine(config, runtime)
        config.pluginmanager.register(ProgressPrinter(config), "orbstack-progress")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistHooks(runtime), "orbstack-xdist")
    if _is_worker(config):
        config.pluginmanager.register(WorkerCollection(runtime), "orbstack-worker")
    runtime.stats.notify = functools.partial(_say_now, config, runtime.worker)
    # pytest-timeout 2.1+ (its timer hooks)
    if hasattr(config.hook, "pytest_timeout_set_timer") and settings.timeout_setup == "exclude":
        pause = TimeoutPause()  # machine setup is not charged to pytest-timeout's timer
        config.pluginmanager.register(pause, "orbstack-timeout")
        runtime.timeout_pause = pause.paused
    config.stash[_lease_key] = None
    signals.install_sigterm_handler()  # SIGTERM tears down like Ctrl-C (only if SIGTERM is unhandled)
    _register_testinfra(config, runtime)


def _register_testinfra(config: pytest.Config, runtime: OrbRuntime) -> None:
    """With pytest-testinfra installed: ``orb://`` hosts exist and use this run's orbctl client."""
    try:
        from pytest_orbstack import testinfra_backend  # noqa: PLC0415 - testinfra is an optional extra
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "testinfra":
            raise
        return
    config.stash[_testinfra_key] = testinfra_backend.use_client(runtime.client)


def pytest_unconfigure(config: pytest.Config) -> None:
    watchdog = config.stash.get(_watchdog_key, None)
    if watchdog is not None:  # sessionfinish did not finish the run: the watchdog purges after us
        watchdog.handover()
        config.stash[_watchdog_key] = None
    lease = config.stash.get(_lease_key, None)
    if lease is not None:
        lease.release()
        config.stash[_lease_key] = None
    pin = config.stash.get(_pin_key, None)
    if pin is not None:
        pin.release()
    signals.restore_sigterm_handler()
    previous = config.stash.get(_testinfra_key, None)
    if previous is not None:
        from pytest_orbstack import testinfra_backend  # noqa: PLC0415 - imported at configure already

        testinfra_backend.use_client(previous)


@pytest.hookimpl(trylast=True)
def pytest_orbstack_make_client(config: pytest.Config) -> OrbctlClient:
    runtime = get_runtime(config)
    path, _ = runtime.orbctl()
    timeouts = Timeouts()
    if runtime.settings.create_timeout is not None:
        timeouts = dataclasses.replace(timeouts, create=runtime.settings.create_timeout)
    if runtime.settings.clone_timeout is not None:
        timeouts = dataclasses.replace(timeouts, clone=runtime.settings.clone_timeout)
    return OrbctlClient(path, timeouts, output_limit=runtime.settings.output_limit)


# --- collection: the marker --------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> Generator[None, Any, None]:
    outcome = yield
    if outcome.excinfo is not None:
        return
    result = outcome.get_result()
    for item in result if isinstance(result, list) else [result]:
        if isinstance(item, pytest.Item):
            try:
                marker_overrides(item)
                check_marker_use(item)
            except MarkerError as exc:
                error = collector.CollectError(str(exc))
                if hasattr(outcome, "force_exception"):
                    outcome.force_exception(error)
                    return
                raise error from None


@pytest.hookimpl(tryfirst=True)  # before -m deselects: -m "not orb" deselects every machine test
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    availability.mark_machine_tests(items)


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


def _prepare(runtime: OrbRuntime, items: Optional[list[pytest.Item]]) -> None:
    """The backend's one-time preparation (``pytest_orbstack_prepare``), where and when it is due."""
    if not availability.prepare_here(runtime.config, items):
        return
    located = runtime.backend.found()
    runtime.unavailable = availability.prepare(runtime.config, located.path if located else None)


# --- session: lease and purge on the controller ------------------------------------------------


def _usable_client(runtime: OrbRuntime) -> Optional[Any]:
    """The client if OrbStack can be used right now, else ``None`` (never starts OrbStack)."""
    return runtime.usable_client()


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Selected tests use machines: start the run's duties now, so that no test's setup pays for them.

    Without such a test nothing starts; a machine fixture reached another way
    (``request.getfixturevalue``) starts them itself, before its machine.
    """
    config = session.config
    runtime = config.stash.get(runtime_key, None)
    if runtime is None or config.option.collectonly:
        return
    if _is_worker(config):
        # On the controller's host the controller prepares and starts the duties (XdistHooks),
        # before any test; on another host this worker joins (or is elected for) that host's now.
        if (
            hosts.is_remote(config.workerinput)  # type: ignore[attr-defined]
            and any(availability.uses_machine(item) for item in session.items)
            and runtime.problem() is None
        ):
            runtime.start_once()
        return
    _prepare(runtime, session.items)  # without xdist: once the selected tests are known
    if not any(availability.uses_machine(item) for item in session.items):
        return
    if runtime.problem() is None:  # else every machine test errors with the problem, once each
        runtime.start_once()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Nothing starts here: only once the selected tests are known (see :func:`_start_duties`)."""
    config = session.config
    config.stash[_lease_key] = None
    config.stash[_watchdog_key] = None


def _start_duties(config: pytest.Config, runtime: OrbRuntime, *, purge: bool) -> None:
    """The run's lease, watchdog and start-up purge: once, before the first machine of the run.

    Called at the end of collection when a selected test uses a machine
    fixture (``orb_vm``, ``orb_vm_fresh``, ``orb_machines``, ``orb_client``),
    else by the first machine fixture reached another way; so a run that
    selects no test needing a machine (``--collect-only``, ``-k unit``,
    ``-m "not orb"``) calls no orbctl and starts no watchdog.  Under xdist the
    controller calls it when a worker said its tests need machines
    (:class:`XdistHooks`).  ``purge=False``: the xdist controller once a
    worker makes machines already (lease and watchdog only, no orbctl call).
    A failure stops the run with one line.
    """
    if config.stash.get(_lease_key, None) is not None:
        return
    runtime.machines_wanted = runtime.machines_wanted or purge  # the controller learns it from workers
    try:
        orbctl = runtime.orbctl()[0]
    except OrbstackError:
        orbctl = ""
    try:
        reaper.check_state_dir(ownership.state_dir())
        lease = ownership.RunLease.acquire(runtime.run_id, runtime.settings.prefix, orbctl)
    except (OSError, reaper.InsecureStateDirError) as exc:
        message = str(exc)
        if isinstance(exc, OSError):
            message = (
                f"cannot write the run's lease in {ownership.runs_dir()}: {exc.strerror or exc}; "
                f"make it writable or point {ownership.STATE_DIR_ENV} at a writable directory"
            )
        pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)  # the run stops before any machine
    config.stash[_lease_key] = lease
    if orbctl:
        # deletes the run's machines if this process dies without finishing (docs/cleanup.md)
        try:
            config.stash[_watchdog_key] = reaper.Watchdog.start(
                runtime.run_id, runtime.settings.prefix, orbctl
            )
        except reaper.WatchdogError as exc:
            runtime.stats.event(str(exc))
    if purge and runtime.settings.clone == Clone.ALWAYS:  # the xdist controller calls no orbctl
        _check_clone_always(runtime)
    if purge and not runtime.settings.no_purge:
        client = _usable_client(runtime)
        if client is not None:
            _purge(runtime, client, own=False)


def _before_first_machine(config: pytest.Config, runtime: OrbRuntime) -> None:
    """What this process starts before its first machine (see :func:`_start_duties`)."""
    if _is_worker(config) and hosts.is_remote(config.workerinput):  # type: ignore[attr-defined]
        _join_host(config, runtime)
    elif _is_worker(config):
        if runtime.lock_dir is not None:  # the controller starts the lease and the watchdog
            availability.note_wanted(runtime.lock_dir, runtime.run_id)
        _hold_pin(config, runtime)
        _startup_purge_once(runtime)
    else:
        _announce_version(runtime)
        _start_duties(config, runtime, purge=True)


def _hold_pin(config: pytest.Config, runtime: OrbRuntime) -> None:
    """An xdist worker takes its pin (see :class:`reaper.WorkerPin`) before its first machine and holds
    it until its machines are torn down; a worker whose controller has already ended makes none."""
    if config.stash.get(_pin_key, None) is not None:
        return
    try:
        reaper.check_state_dir(ownership.state_dir())
        config.stash[_pin_key] = reaper.WorkerPin.hold(runtime.run_id)
    except (OSError, reaper.InsecureStateDirError) as exc:
        pytest.fail(str(exc), pytrace=False)  # the controller stops the run for the same reason
    if not ownership.run_is_live(runtime.run_id):  # pinned first: a watchdog purging now sees the pin
        pytest.exit(
            "the run's controller has ended: no machine is made", returncode=pytest.ExitCode.INTERRUPTED
        )


def _join_host(config: pytest.Config, runtime: OrbRuntime) -> None:
    """A worker on another host than the controller: join that host's duties, or take them (hosts.py)."""
    runtime.machines_wanted = True
    duties = config.stash.get(_host_key, None)
    if duties is None:
        controller_run_id = runtime.run_id

        def start(host_run_id: str) -> Optional[str]:
            runtime.run_id = host_run_id
            try:
                orbctl: Optional[str] = runtime.orbctl()[0]
            except OrbstackError:
                orbctl = None
            reason = availability.prepare(config, orbctl)  # this host's backend, once
            if reason is None:
                _announce_version(runtime)
                _start_duties(config, runtime, purge=True)
            return reason

        try:
            duties = hosts.elect(controller_run_id, start)
        except (OSError, reaper.InsecureStateDirError) as exc:
            message = str(exc) if isinstance(exc, reaper.InsecureStateDirError) else first_line(exc)
            message = f"cannot join the run's duties on this host: {message}"
            pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)
        config.stash[_host_key] = duties
        runtime.run_id = duties.run_id
    if duties.unavailable is not None:  # every machine test errors (or skips) with it
        runtime.unavailable = runtime.where + duties.unavailable


def _startup_purge_once(runtime: OrbRuntime) -> None:
    """An xdist worker's share of :func:`_start_duties`: OrbStack's version and the start-up purge,
    once for the whole run (by the first worker that gets there)."""
    runtime.machines_wanted = True
    if runtime.lock_dir is None:
        return
    import filelock  # noqa: PLC0415 (only workers that make machines need it)

    flag = runtime.lock_dir / _PURGED_FLAG
    with filelock.FileLock(str(flag) + ".lock"):
        if flag.exists():
            return
        _announce_version(runtime)
        client = _usable_client(runtime) if not runtime.settings.no_purge else None
        if client is not None:
            _purge(runtime, client, own=False)
        flag.touch()


def _check_clone_always(runtime: OrbRuntime) -> None:
    """``--orb-clone always`` with an OrbStack that has no clone is a usage error (when we can tell)."""
    if runtime.usable_client() is None:
        return
    refused = runtime.plan().refused  # None too when OrbStack's version cannot be told
    if refused is not None:  # in the first machine fixture: the run stops here, before any machine
        pytest.exit(f"--orb-clone always: {refused}", returncode=pytest.ExitCode.USAGE_ERROR)


def _purge(runtime: OrbRuntime, client: Any, *, own: bool) -> None:
    prefix = runtime.settings.prefix
    try:
        result = ownership.purge(
            client,
            prefix,
            own_run_id=runtime.run_id if own else None,
            others=not runtime.settings.no_purge,
        )
    except OrbstackError as exc:  # orbctl failed, or answered what we cannot read (OrbctlParseError)
        runtime.stats.event(f"purge failed: {first_line(exc)}")
        if own:  # the run's bases are left too: the "delete by hand" line names them
            for name in sorted(runtime.run_bases()):
                runtime.stats.record_failed_delete(name, first_line(exc))
        return
    run_bases = runtime.run_bases() if own else set()
    deleted = [name for name in result.deleted if name not in run_bases]
    runtime.stats.record_purged(deleted)
    if deleted:
        whose = "left by this run" if own else "of dead runs"
        runtime.stats.event(f"purged {len(deleted)} machine(s) {whose}: {', '.join(deleted)}")
    done = sorted(run_bases.intersection(result.deleted))
    if done:  # the clone fast path's bases end with the run, as planned: not leftovers
        runtime.stats.event(f"deleted base machine(s) {', '.join(done)}", verbose=True)
    for name in result.failed:
        runtime.stats.record_failed_delete(name, result.error or "delete failed")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    runtime = config.stash.get(runtime_key, None)
    if runtime is None:
        return
    # Before the stats leave and before the purge.  After Ctrl-C, machines still being made
    # ahead are not waited for: each is deleted as soon as it exists (the process exits after).
    interrupted = session.exitstatus == pytest.ExitCode.INTERRUPTED
    try:
        runtime.close(wait=not interrupted)
    except Exception as exc:
        runtime.stats.event(f"ending the session's machine sources failed: {first_line(exc)}")
    finally:  # a second Ctrl-C while waiting still lets the run release and purge
        _finish_session(config, runtime)


def _finish_session(config: pytest.Config, runtime: OrbRuntime) -> None:
    duties = config.stash.get(_host_key, None) if _is_worker(config) else None
    if duties is not None and duties.elected:  # this host's duties end once its workers are done
        runtime.worker_bases.update(duties.wait_for_peers()[1])
        _finish_run(config, runtime)
        duties.forget()
    if _is_worker(config):
        data = runtime.stats.to_dict()
        tag = f"[{runtime.worker}] "  # progress lines no test report carries any more
        data["events"] = [[verbose, f"{tag}{line}"] for verbose, line in runtime.stats.take_events()]
        config.workeroutput[WORKEROUTPUT_KEY] = data  # type: ignore[attr-defined]
        config.workeroutput[BASES_KEY] = sorted(runtime.run_bases())  # type: ignore[attr-defined]
        config.workeroutput[ACTIVE_KEY] = runtime.machines_wanted  # type: ignore[attr-defined]
        config.workeroutput[hosts.HOST_OUTPUT_KEY] = hosts.worker_host(  # type: ignore[attr-defined]
            hosts.is_remote(config.workerinput)  # type: ignore[attr-defined]
        )
        pin = config.stash.get(_pin_key, None)
        if pin is not None:
            pin.release()  # after this worker's machines were torn down
        if duties is not None and not duties.elected:
            duties.leave(runtime.run_bases())
        return
    _finish_run(config, runtime)


def _finish_run(config: pytest.Config, runtime: OrbRuntime) -> None:
    """The end of the run's duties on this host: the final purge, the watchdog, the lease."""
    lease = config.stash.get(_lease_key, None)
    if lease is None:
        return
    try:
        if runtime.stats.kept:
            lease.keep(runtime.stats.kept)
        xdist_hooks = config.pluginmanager.get_plugin("orbstack-xdist")
        idle = isinstance(xdist_hooks, XdistHooks) and xdist_hooks.all_idle()
        client = _usable_client(runtime) if runtime.machines_wanted or not idle else None
        if client is not None:
            _purge(runtime, client, own=True)
        watchdog = config.stash.get(_watchdog_key, None)
        if watchdog is not None:
            config.stash[_watchdog_key] = None
            if runtime.stats.failed_deletes:
                watchdog.handover()  # it retries the purge once pytest has exited
            else:
                watchdog.finish()
    finally:
        lease.release()
        config.stash[_lease_key] = None


# --- prefetch: the next test's fresh machine is made while this test runs ---------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]) -> None:
    item.stash[_next_item_key] = nextitem


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """This test has its machines: start making those the coming tests take (``orb_vm_fresh``)."""
    nextitem = item.stash.get(_next_item_key, None)
    runtime = item.config.stash.get(runtime_key, None)
    if nextitem is None or runtime is None or not runtime.settings.prefetch_limit:
        return
    try:
        runtime.prefetch(lookahead.upcoming(item, nextitem, lookahead.WINDOW))
    except Exception as exc:  # never this test's problem: the next test makes its own machine
        runtime.stats.event(
            f"could not prefetch a machine for {nextitem.nodeid}: {first_line(exc)}", verbose=True
        )


# --- the shared machine between tests: replaced when it died --------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> None:
    """Keep how to end ``orb_vm`` early, so that a dead shared machine can be replaced."""
    if fixturedef.argname != "orb_vm":
        return
    runtime = request.config.stash.get(runtime_key, None)
    if runtime is not None:
        runtime.shared.bind(functools.partial(fixturedef.finish, request))  # type: ignore[arg-type]  # a SubRequest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a test that uses ``orb_vm``: replace or re-announce it if the last one hurt it."""
    runtime = item.config.stash.get(runtime_key, None)
    if runtime is None or runtime.shared.machine is None or "orb_vm" not in getattr(item, "fixturenames", ()):
        return
    with runtime.timeout_pause():  # a restart or replacement is machine setup (--orb-timeout-setup)
        runtime.shared.before_test(runtime.provisioner())


# --- reporting ---------------------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> Optional[list[str]]:
    """Which orbctl, image, prefix and run id; no orbctl call (a run may need no machine at all)."""
    runtime = config.stash.get(runtime_key, None)
    if runtime is None:
        return None
    settings = runtime.settings
    where = f"image {settings.image}, prefix {settings.prefix}, run id {runtime.run_id}"
    located = runtime.backend.found()
    if located is None:
        return [f"orbstack: orbctl not found (tests that need a machine will error), {where}"]
    path, kind = located
    if kind == "orbsim-fallback":
        kind_text = "orbsim (OrbStack double, used because no orbctl was found)"
        return [f"orbstack: {kind_text} {path}, {where}"]
    if kind == "orbsim":
        return [f"orbstack: orbsim (OrbStack double) {path}, {where}"]
    return [f"orbstack: orbctl {path}, {where}"]


def _announce_version(runtime: OrbRuntime) -> None:
    """Before the first machine: OrbStack's version (with ``-v``) and what it means for cloning."""
    try:
        found = runtime.backend.version()
        if found is None:  # the machine fixture reports what is wrong with OrbStack itself
            return
        note = runtime.plan().note  # None for --orb-clone always without clone: _start_duties stops the run
    except Exception:
        return
    runtime.stats.event(f"OrbStack version {found}", verbose=True)
    if note is not None:
        runtime.stats.event(note)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    runtime = item.config.stash.get(runtime_key, None)
    if runtime is not None and call.when == "call":  # before the report copies them
        item.user_properties.extend(machine_properties(machines_used_by(item)))
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if runtime is None:
        return
    if "orb_vm" in getattr(item, "funcargs", {}):
        runtime.shared.used_by(item, failed=report.failed)
    if report.failed:
        for machine in machines_used_by(item):
            runtime.failed_machines.add(machine.name)
            if not machine.deleted:
                _add_section(report, f"orbstack machine {machine.name}", _machine_section(runtime, machine))
    events = runtime.stats.take_events()
    if events:
        tag = "" if runtime.worker == "main" else f"[{runtime.worker}] "
        setattr(report, EVENTS_ATTR, [[verbose, f"{tag}{line}"] for verbose, line in events])


def _machine_section(runtime: OrbRuntime, machine: Machine) -> str:
    """The failure section of one machine: ``info``, the tail of ``orbctl logs``, the last commands."""
    info, error = None, None
    try:
        info = machine.info()
    except OrbstackError as exc:
        error = first_line(exc)
    return failure_section(info, error, machine.history, logs_tail(runtime.client(), machine.name))


def _add_section(report: pytest.TestReport, title: str, text: str) -> None:
    """Add a section to the failure's text (what ``--junitxml`` and pytest-html show), else to the report."""
    addsection = getattr(report.longrepr, "addsection", None)
    if callable(addsection):
        addsection(title, text)
    else:
        report.sections.append((title, text))


def _write_line(reporter: Any, line: str) -> None:
    """Write ``line`` on a line of its own, after pytest's progress row if one is open.

    A row of progress letters then goes on under its file name, as pytest
    starts a row.
    """
    row = getattr(reporter, "currentfspath", None)
    reporter.ensure_newline()
    if getattr(reporter._tw, "width_of_current_line", 0):  # xdist's progress letters
        reporter._tw.line()
    reporter.write_line(line)
    if isinstance(row, Path):  # default verbosity (with -v, pytest writes the test's line again)
        reporter._tw.write(os.path.relpath(row, reporter.config.invocation_params.dir) + " ")
        reporter.currentfspath = row


def _say_now(config: pytest.Config, worker: str, line: str) -> None:
    """Write a line to the terminal at once, even during a fixture's setup (``Stats.notify``).

    An xdist worker's stderr is the controller's, so a worker writes there,
    on a line of its own.  Nothing with ``-q``.
    """
    if config.option.verbose < 0:  # -q
        return
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
        if worker != "main":
            sys.stderr.write(f"\norbstack: [{worker}] {line}\n")
            sys.stderr.flush()
            return
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            _write_line(reporter, f"orbstack: {line}")
            reporter.flush()


class ProgressPrinter:
    """Prints progress lines carried by test reports (registered on the controller / only process)."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        events = getattr(report, EVENTS_ATTR, None)
        if not events:
            return
        reporter = self._config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        show_verbose = self._config.option.verbose > 0
        for verbose, line in events:
            if verbose and not show_verbose:
                continue
            _write_line(reporter, f"orbstack: {line}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    runtime = config.stash.get(runtime_key, None)
    if runtime is None or _is_worker(config):
        return
    for verbose, line in runtime.stats.take_events():
        if not verbose or config.option.verbose > 0:
            terminalreporter.write_line(f"orbstack: {line}")
    if not runtime.stats.anything:
        return
    try:
        orbctl = runtime.orbctl()[0]
    except OrbstackError:
        orbctl = "orbctl"
    terminalreporter.section("orbstack")
    for line in summary_lines(runtime.stats, orbctl):
        terminalreporter.line(line)
    xdist_hooks = config.pluginmanager.get_plugin("orbstack-xdist")
    if isinstance(xdist_hooks, XdistHooks):
        for line in hosts.host_lines(xdist_hooks.hosts.values()):
            terminalreporter.line(line)
