"""pytest entry point: options, ini values, markers, and the hooks pytest looks up by name.

Each hook is a thin call into the module that does the work: the run's guard
(guard.py: lease, watchdog, pin, host duties, purges), pytest-xdist's side
(xdist_hooks.py), the terminal (terminal.py) and the per-process runtime
(runtime.py).

Roles: without xdist the one process does everything.  With xdist the
controller makes the run id (handed to workers in ``workerinput``); once a
worker said its selected tests need machines, it prepares the backend and
starts the run's guard (lease, watchdog, start-up purge), before any test is
handed out; it purges this run's leftovers at the end and prints.  Workers
make, hand out and delete their own machines.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Generator
from typing import Any, Callable, Final, Optional

import pytest

from pytest_orbstack import (
    availability,
    hookspecs,
    hosts,
    lookahead,
    naming,
    ownership,
    signals,
    terminal,
    xdist_hooks,
)
from pytest_orbstack.client import OrbctlClient
from pytest_orbstack.errors import MarkerError, first_line
from pytest_orbstack.fixtures import machines_used_by, orb_client, orb_machines, orb_vm, orb_vm_fresh
from pytest_orbstack.guard import ControllerGuard, Guard, RemoteWorkerGuard, Steps, WorkerGuard
from pytest_orbstack.marker import MARKER_LINE, check_marker_use, marker_overrides
from pytest_orbstack.orbctl import Orbctl
from pytest_orbstack.report import header_line, machine_properties
from pytest_orbstack.runtime import OrbRuntime, get_runtime, new_runtime, runtime_key
from pytest_orbstack.settings import add_options, load_settings
from pytest_orbstack.timeout import TimeoutPause
from pytest_orbstack.xdist_hooks import WorkerCollection, XdistHooks

__all__ = ["orb_client", "orb_machines", "orb_vm", "orb_vm_fresh"]

#: the run's guard in this process (guard.py): lease, watchdog, pin, host duties
_guard_key: Final = pytest.StashKey[Guard]()
_next_item_key: Final = pytest.StashKey[Optional[pytest.Item]]()
_testinfra_key: Final = pytest.StashKey[Callable[[], Orbctl]]()
#: the name the controller's xdist hooks are registered under
_XDIST: Final = "orbstack-xdist"


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_LINE)
    settings = load_settings(config)
    state = ownership.state_dir().absolute()
    run_guard: Guard
    if _is_worker(config):
        workerinput: dict[str, Any] = config.workerinput  # type: ignore[attr-defined]
        worker_id = str(workerinput.get("workerid", ""))
        runtime = new_runtime(config, settings, xdist_hooks.run_id_of(workerinput), worker_id)
        if hosts.is_remote(workerinput):  # the run id and the pin come from this host's election
            runtime.where = f"on host {socket.gethostname()}: "
            run_guard = RemoteWorkerGuard(runtime, _steps(config, runtime), state)
        else:
            runtime.reason_from_controller = True
            run_guard = WorkerGuard(runtime, _steps(config, runtime), state)
    else:
        runtime = new_runtime(config, settings, naming.new_run_id(), None)
        controller = ControllerGuard(runtime, _steps(config, runtime), state)
        run_guard = controller
        config.pluginmanager.register(terminal.ProgressPrinter(config), "orbstack-progress")
        if config.pluginmanager.hasplugin("xdist"):
            prepare = functools.partial(_prepare, runtime, None)
            config.pluginmanager.register(XdistHooks(runtime, controller, prepare), _XDIST)
    config.stash[_guard_key] = run_guard
    runtime.before_first_machine = run_guard.start
    if _is_worker(config):
        config.pluginmanager.register(WorkerCollection(runtime), "orbstack-worker")
    runtime.stats.notify = functools.partial(terminal.say_now, config, runtime.worker)
    # pytest-timeout 2.1+ (its timer hooks)
    if hasattr(config.hook, "pytest_timeout_set_timer") and settings.timeout_setup == "exclude":
        pause = TimeoutPause()  # machine setup is not charged to pytest-timeout's timer
        config.pluginmanager.register(pause, "orbstack-timeout")
        runtime.timeout_pause = pause.paused
    signals.install_sigterm_handler()  # SIGTERM tears down like Ctrl-C (only if SIGTERM is unhandled)
    _register_testinfra(config, runtime)


def _steps(config: pytest.Config, runtime: OrbRuntime) -> Steps:
    """What the run's guard asks of the plugin, bound to this process's runtime."""
    return Steps(
        announce=functools.partial(_announce_version, runtime),
        check_clone=functools.partial(_check_clone_always, runtime),
        usable_client=runtime.usable_client,
        prepare=functools.partial(availability.prepare, config),
    )


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
    run_guard = config.stash.get(_guard_key, None)
    if run_guard is not None:  # what sessionfinish did not end: the watchdog purges after us
        run_guard.abort()
    signals.restore_sigterm_handler()
    previous = config.stash.get(_testinfra_key, None)
    if previous is not None:
        from pytest_orbstack import testinfra_backend  # noqa: PLC0415 - imported at configure already

        testinfra_backend.use_client(previous)


@pytest.hookimpl(trylast=True)
def pytest_orbstack_make_client(config: pytest.Config) -> OrbctlClient:
    runtime = get_runtime(config)
    path, _ = runtime.orbctl()
    return OrbctlClient(path, runtime.settings.timeouts(), output_limit=runtime.settings.output_limit)


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


def _prepare(runtime: OrbRuntime, items: Optional[list[pytest.Item]]) -> None:
    """The backend's one-time preparation (``pytest_orbstack_prepare``), where and when it is due."""
    if not availability.prepare_here(runtime.config, items):
        return
    located = runtime.backend.found()
    runtime.unavailable = availability.prepare(runtime.config, located.path if located else None)


# --- session: the run's guard ------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Selected tests use machines: start the run's guard now, so that no test's setup pays for it.

    Without such a test nothing starts; a machine fixture reached another way
    (``request.getfixturevalue``) starts it itself, before its machine.
    """
    config = session.config
    runtime = config.stash.get(runtime_key, None)
    if runtime is None or config.option.collectonly:
        return
    workerinput = getattr(config, "workerinput", {})
    runtime.demand = lookahead.demand(
        session.items,
        runtime.settings,
        int(workerinput.get("workercount", 1)),
        dist=str(workerinput.get(xdist_hooks.DIST_KEY, "no")),
    )
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


def _check_clone_always(runtime: OrbRuntime) -> None:
    """``--orb-clone always`` with an OrbStack that has no clone is a usage error (when we can tell)."""
    if runtime.usable_client() is None:
        return
    refused = runtime.plan().refused  # None too when OrbStack's version cannot be told
    if refused is not None:  # in the first machine fixture: the run stops here, before any machine
        pytest.exit(f"--orb-clone always: {refused}", returncode=pytest.ExitCode.USAGE_ERROR)


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
        xdist = config.pluginmanager.get_plugin(_XDIST)
        config.stash[_guard_key].finish(workers_idle=isinstance(xdist, XdistHooks) and xdist.all_idle())
        if _is_worker(config):
            xdist_hooks.send_output(config, runtime)


# --- prefetch: the next test's fresh machine is made while this test runs ---------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]) -> None:
    item.stash[_next_item_key] = nextitem
    runtime = item.config.stash.get(runtime_key, None)
    if runtime is not None:  # what the first machines of a spec are made beside (once its base exists)
        runtime.coming = lambda: [item, *lookahead.upcoming(item, nextitem, lookahead.WINDOW)]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """This test has its machines: start making those the coming tests take (``orb_vm_fresh``)."""
    nextitem = item.stash.get(_next_item_key, None)
    runtime = item.config.stash.get(runtime_key, None)
    if nextitem is None or runtime is None or not runtime.settings.prefetch_limit:
        return
    try:
        runtime.prefetch(functools.partial(lookahead.upcoming, item, nextitem, lookahead.WINDOW))
    except Exception as exc:  # never this test's problem: the next test makes its own machine
        failed = f"could not prefetch a machine for {nextitem.nodeid}: {first_line(exc)}"
        runtime.stats.event(failed, verbose=True)


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
    return [header_line(runtime.backend.found(), runtime.settings, runtime.run_id)]


def _announce_version(runtime: OrbRuntime) -> None:
    """Before the first machine: OrbStack's version (with ``-v``) and what it means for cloning."""
    try:
        found = runtime.backend.version()
        if found is None:  # the machine fixture reports what is wrong with OrbStack itself
            return
        note = runtime.plan().note  # None for --orb-clone always without clone: the guard stops the run
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
                terminal.add_machine_section(report, runtime, machine)
    terminal.attach_events(report, runtime)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    runtime = config.stash.get(runtime_key, None)
    if runtime is None or _is_worker(config):
        return
    xdist = config.pluginmanager.get_plugin(_XDIST)
    tallies = xdist.hosts.values() if isinstance(xdist, XdistHooks) else ()
    terminal.write_summary(terminalreporter, runtime, verbose=config.option.verbose > 0, tallies=tallies)
