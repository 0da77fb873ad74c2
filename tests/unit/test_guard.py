"""The run's guard in each role: lease, pin, host duties and purges, in a real state directory.

No watchdog is started here (no orbctl is found, as in a run without OrbStack); the
watchdog's own mechanics are in test_reaper.py, the roles end to end in
tests/plugin and tests/reliability.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest
from fakes import FakeOrb

from pytest_orbstack import availability, guard, naming, ownership, reaper
from pytest_orbstack.errors import OrbctlNotFoundError
from pytest_orbstack.guard import ControllerGuard, RemoteWorkerGuard, Steps, WorkerGuard
from pytest_orbstack.report import Stats
from pytest_orbstack.settings import Clone
from pytest_orbstack.xdist_hooks import XdistHooks

PREFIX = "pytest-test-"


class Runtime:
    """What a guard reads and sets of its process's runtime (``runtime.OrbRuntime``)."""

    def __init__(self, run_id: str, lock_dir: Optional[Path] = None, clone: Clone = Clone.AUTO) -> None:
        self.run_id = run_id
        self.settings = SimpleNamespace(prefix=PREFIX, no_purge=False, clone=clone)
        self.stats = Stats()
        self.machines_wanted = False
        self.lock_dir = lock_dir
        self.unavailable: Optional[str] = None
        self.where = ""
        self.worker_bases: set[str] = set()
        self.built: set[str] = set()

    def orbctl(self) -> tuple[str, str]:
        raise OrbctlNotFoundError("orbctl not found")

    def run_bases(self) -> set[str]:
        return self.built | self.worker_bases


class Plugin:
    """The plugin's side of :class:`Steps`: what the guard asked, in order."""

    def __init__(self, client: FakeOrb, reason: Optional[str] = None) -> None:
        self.client = client
        self.reason = reason
        self.asked: list[str] = []

    def steps(self) -> Steps:
        def usable_client() -> Any:
            self.asked.append("client")
            return self.client

        def prepare(orbctl: Optional[str]) -> Optional[str]:
            self.asked.append(f"prepare {orbctl}")
            return self.reason

        return Steps(
            announce=lambda: self.asked.append("announce"),
            check_clone=lambda: self.asked.append("check clone"),
            usable_client=usable_client,
            prepare=prepare,
        )


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv(ownership.STATE_DIR_ENV, str(directory))  # hosts.py reads it
    return directory


def dead_run_id() -> str:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return naming.new_run_id(gone.pid, "0")


def leases(state: Path) -> list[str]:
    runs = ownership.runs_dir(state)
    return sorted(p.stem for p in runs.glob("*.json")) if runs.exists() else []


# --- the controller (or the only process) ----------------------------------------------------------


def test_the_controller_takes_the_lease_purges_dead_runs_then_its_own_leftovers(state: Path) -> None:
    run_id, other_live_run = naming.new_run_id(), naming.new_run_id()
    orb = FakeOrb()
    dead = naming.machine_name(PREFIX, dead_run_id(), "main")
    own = naming.machine_name(PREFIX, run_id, "main")
    other = naming.machine_name(PREFIX, other_live_run, "main")
    orb.machines = {dead: "running", own: "running", other: "running"}
    runtime, plugin = Runtime(run_id), Plugin(orb)
    run_guard = ControllerGuard(runtime, plugin.steps(), state)  # type: ignore[arg-type]

    run_guard.start()
    assert leases(state) == [run_id]
    assert ownership.run_is_live(run_id, state)
    assert plugin.asked == ["announce", "client"]
    assert sorted(orb.machines) == sorted([own, other])  # the dead run's machine only
    assert runtime.machines_wanted
    run_guard.start()  # once per run
    assert plugin.asked == ["announce", "client", "announce"]  # the lease is held: no purge again
    assert orb.count("list") == 1

    run_guard.finish()
    assert sorted(orb.machines) == [other]  # another live run's machine stays
    assert leases(state) == []
    lines = [line for _, line in runtime.stats.take_events()]
    assert f"purged 1 machine(s) of dead runs: {dead}" in lines
    assert f"purged 1 machine(s) left by this run: {own}" in lines
    run_guard.abort()  # nothing left to let go of
    assert leases(state) == []


def test_hold_takes_the_lease_and_the_watchdog_only_and_calls_no_orbctl(state: Path) -> None:
    run_id = naming.new_run_id()
    orb = FakeOrb()
    orb.machines = {naming.machine_name(PREFIX, dead_run_id(), "gw0"): "running"}
    runtime, plugin = Runtime(run_id, clone=Clone.ALWAYS), Plugin(orb)
    run_guard = ControllerGuard(runtime, plugin.steps(), state)  # type: ignore[arg-type]
    run_guard.hold()
    assert leases(state) == [run_id]
    assert plugin.asked == []
    assert not runtime.machines_wanted
    run_guard.finish(workers_idle=True)  # every worker said it made no machine: no final purge
    assert plugin.asked == []
    assert leases(state) == []
    assert len(orb.machines) == 1


def test_the_final_purge_runs_when_a_worker_made_machines(state: Path) -> None:
    run_id = naming.new_run_id()
    orb = FakeOrb()
    orb.machines = {naming.machine_name(PREFIX, run_id, "gw1"): "running"}
    runtime, plugin = Runtime(run_id), Plugin(orb)
    run_guard = ControllerGuard(runtime, plugin.steps(), state)  # type: ignore[arg-type]
    run_guard.hold()
    run_guard.finish(workers_idle=False)  # a worker that died says nothing: it may have made some
    assert plugin.asked == ["client"]
    assert orb.machines == {}


def test_no_final_purge_when_the_duties_started_but_every_worker_made_no_machine(state: Path) -> None:
    run_id = naming.new_run_id()
    orb = FakeOrb()
    runtime, plugin = Runtime(run_id), Plugin(orb)
    run_guard = ControllerGuard(runtime, plugin.steps(), state)  # type: ignore[arg-type]
    run_guard.start()  # the workers' collection wanted machines: the start-up purge ran
    assert orb.count("list") == 1
    run_guard.finish(workers_idle=True)  # then every worker ended saying it made none
    assert orb.count("list") == 1
    assert leases(state) == []


def test_without_workers_the_controller_is_never_idle() -> None:
    """With xdist installed but ``-n 0`` the controller runs the tests itself: its purge must run."""
    hooks = XdistHooks(Runtime(naming.new_run_id()), None, lambda: None)  # type: ignore[arg-type]
    assert not hooks.all_idle()
    options = SimpleNamespace(getoption=lambda name, default=None: "load")  # the controller's --dist
    hooks.pytest_configure_node(
        SimpleNamespace(workerinput={}, gateway=SimpleNamespace(id="gw0"), config=options)
    )
    assert not hooks.all_idle()
    hooks.idle.add("gw0")
    assert hooks.all_idle()


def test_clone_always_is_checked_before_the_start_up_purge(state: Path) -> None:
    runtime, plugin = Runtime(naming.new_run_id(), clone=Clone.ALWAYS), Plugin(FakeOrb())
    run_guard = ControllerGuard(runtime, plugin.steps(), state)  # type: ignore[arg-type]
    run_guard.start()
    assert plugin.asked == ["announce", "check clone", "client"]
    run_guard.abort()


def test_abort_lets_go_of_the_lease_and_kept_machines_stay_in_it(state: Path) -> None:
    run_id = naming.new_run_id()
    runtime, plugin = Runtime(run_id), Plugin(FakeOrb())
    run_guard = ControllerGuard(runtime, plugin.steps(), state)  # type: ignore[arg-type]
    run_guard.start()
    run_guard.abort()  # the session did not finish
    assert leases(state) == []

    kept = naming.kept_name(naming.machine_name(PREFIX, run_id, "main"))
    runtime.stats.record_kept(kept)
    run_guard.start()
    run_guard.finish()
    assert leases(state) == [run_id]  # the lease records the kept machine (for reference)
    record = json.loads(ownership.lease_path(run_id, state).read_text())
    assert record["kept"] == [kept]


def test_a_state_dir_that_cannot_hold_the_lease_stops_the_run(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    runtime, plugin = Runtime(naming.new_run_id()), Plugin(FakeOrb())
    run_guard = ControllerGuard(runtime, plugin.steps(), tmp_path / "file" / "state")  # type: ignore[arg-type]
    with pytest.raises(pytest.exit.Exception, match=r"cannot write the run's lease in .*: ") as stop:
        run_guard.start()
    assert stop.value.returncode == pytest.ExitCode.USAGE_ERROR
    assert plugin.asked == ["announce"]  # no purge: the run stops before any machine


def test_a_state_dir_others_can_write_stops_the_run(state: Path) -> None:
    state.mkdir()
    state.chmod(0o777)
    runtime, plugin = Runtime(naming.new_run_id()), Plugin(FakeOrb())
    run_guard = ControllerGuard(runtime, plugin.steps(), state)  # type: ignore[arg-type]
    with pytest.raises(pytest.exit.Exception, match="is writable by group or others"):
        run_guard.start()
    assert leases(state) == []


# --- workers on the controller's host ----------------------------------------------------------


def test_workers_say_they_make_machines_pin_the_run_and_purge_once(state: Path, tmp_path: Path) -> None:
    run_id = naming.new_run_id()  # the controller's: alive
    lock_dir = tmp_path / "lock"
    lock_dir.mkdir()
    orb = FakeOrb()
    dead = naming.machine_name(PREFIX, dead_run_id(), "gw3")
    orb.machines = {dead: "running"}
    pins = reaper.pins_path(state, run_id)
    guards, plugins = [], []
    for _ in range(2):
        plugins.append(Plugin(orb))
        guards.append(WorkerGuard(Runtime(run_id, lock_dir), plugins[-1].steps(), state))  # type: ignore[arg-type]

    guards[0].start()
    assert availability.is_wanted(lock_dir, run_id)
    assert not reaper.workers_gone(pins)
    assert plugins[0].asked == ["announce", "client"]
    assert orb.machines == {}
    guards[1].start()
    assert plugins[1].asked == []  # the run's start-up purge is done
    assert leases(state) == []  # the controller holds the lease, not a worker

    guards[0].finish()
    assert not reaper.workers_gone(pins)  # the other worker still tears down
    guards[1].finish()
    assert reaper.workers_gone(pins)


def test_a_worker_does_not_purge_when_the_controller_did(state: Path, tmp_path: Path) -> None:
    run_id = naming.new_run_id()
    guard.mark_purged(tmp_path)
    plugin = Plugin(FakeOrb())
    run_guard = WorkerGuard(Runtime(run_id, tmp_path), plugin.steps(), state)  # type: ignore[arg-type]
    run_guard.start()
    assert plugin.asked == []
    run_guard.abort()
    assert reaper.workers_gone(reaper.pins_path(state, run_id))


def test_a_worker_whose_controller_ended_makes_no_machine(state: Path, tmp_path: Path) -> None:
    run_id = dead_run_id()
    plugin = Plugin(FakeOrb())
    run_guard = WorkerGuard(Runtime(run_id, tmp_path), plugin.steps(), state)  # type: ignore[arg-type]
    with pytest.raises(pytest.exit.Exception, match="the run's controller has ended") as stop:
        run_guard.start()
    assert stop.value.returncode == pytest.ExitCode.INTERRUPTED
    pins = reaper.pins_path(state, run_id)
    assert not reaper.workers_gone(pins)  # pinned before the check: a purging watchdog waits
    run_guard.abort()
    assert reaper.workers_gone(pins)


# --- workers on another host ----------------------------------------------------------------------


def test_the_first_worker_on_a_host_holds_its_run_and_ends_it_after_its_peers(state: Path) -> None:
    controller_run = naming.new_run_id()
    orb = FakeOrb()
    first, second = Runtime(controller_run), Runtime(controller_run)
    first_plugin, second_plugin = Plugin(orb), Plugin(orb)
    elected = RemoteWorkerGuard(first, first_plugin.steps(), state)  # type: ignore[arg-type]
    peer = RemoteWorkerGuard(second, second_plugin.steps(), state)  # type: ignore[arg-type]

    elected.start()
    host_run = first.run_id
    assert host_run != controller_run
    assert naming.owner_of(host_run) == naming.owner_of(naming.new_run_id())  # owned by this process
    assert first_plugin.asked == ["prepare None", "announce", "client"]
    assert leases(state) == [host_run]
    peer.start()
    assert second.run_id == host_run
    assert second_plugin.asked == []  # the host's duties started once
    assert first.machines_wanted
    assert second.machines_wanted

    base = naming.machine_name(PREFIX, host_run, "gw5")
    second.built = {base}
    orb.machines = {base: "stopped", naming.machine_name(PREFIX, host_run, "gw5"): "running"}
    peer.finish()
    elected.finish()
    assert first.worker_bases == {base}  # the peer's base is the run's, not a leftover
    assert orb.machines == {}
    assert leases(state) == []
    assert [p.name for p in ownership.runs_dir(state).iterdir() if controller_run in p.name] == []
    assert reaper.workers_gone(reaper.pins_path(state, host_run))


def test_a_host_that_cannot_make_machines_says_so_in_each_of_its_workers(state: Path) -> None:
    controller_run = naming.new_run_id()
    runtimes = [Runtime(controller_run), Runtime(controller_run)]
    plugins = [Plugin(FakeOrb(), reason="orbsim: no machine image"), Plugin(FakeOrb())]
    guards = [RemoteWorkerGuard(r, p.steps(), state) for r, p in zip(runtimes, plugins)]  # type: ignore[arg-type]
    for runtime in runtimes:
        runtime.where = "on host mac2: "
    for run_guard in guards:
        run_guard.start()
    assert [r.unavailable for r in runtimes] == ["on host mac2: orbsim: no machine image"] * 2
    assert plugins[0].asked == ["prepare None"]  # no lease, no purge
    assert plugins[1].asked == []
    assert leases(state) == []
    for run_guard in reversed(guards):
        run_guard.finish()
    assert [p.name for p in ownership.runs_dir(state).iterdir() if controller_run in p.name] == []
