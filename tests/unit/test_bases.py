"""bases.py against an in-memory fake orbctl: keys, one build per key, clones, records, reuse."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest
from fakes import RUN, SPEC, FakeOrb, Hooks, built, err, make, worker

from pytest_orbstack.basekey import base_key, hook_sources, provision_sources, reused_base_name
from pytest_orbstack.bases import BaseManager, clone_decision, install
from pytest_orbstack.basestore import BaseBuildError
from pytest_orbstack.clonesource import CloneSource
from pytest_orbstack.errors import TransientOrbctlError
from pytest_orbstack.machine import Machine
from pytest_orbstack.models import MachineSpec, OrbVersion
from pytest_orbstack.naming import reuse_conflict


def test_key_is_stable_and_covers_every_part_of_the_spec(tmp_path: Path) -> None:
    data = tmp_path / "cloud.yaml"
    data.write_text("#cloud-config\n")
    key = base_key(SPEC, ["a"])
    assert key == base_key(MachineSpec("ubuntu:22.04"), ["a"])
    assert len(key) == 16
    others = {
        base_key(MachineSpec("debian:12"), ["a"]),
        base_key(MachineSpec("ubuntu:22.04", arch="arm64"), ["a"]),
        base_key(MachineSpec("ubuntu:22.04", user="builder"), ["a"]),
        base_key(MachineSpec("ubuntu:22.04", user_data=str(data)), ["a"]),
        base_key(SPEC, ["b"]),
        base_key(SPEC, []),
        base_key(SPEC, ["a", "b"]),
    }
    assert key not in others
    assert len(others) == 7


def test_key_follows_the_user_data_content_not_its_path(tmp_path: Path) -> None:
    data = tmp_path / "cloud.yaml"
    data.write_text("#cloud-config\npackages: [curl]\n")
    spec = MachineSpec("ubuntu:22.04", user_data=str(data))
    before = base_key(spec, [])
    data.write_text("#cloud-config\npackages: [git]\n")
    assert base_key(spec, []) != before


def _impl_one(machine: Any, config: Any) -> None:
    machine.run("true")


def _impl_two(machine: Any, config: Any) -> None:
    machine.run("false")


def test_hook_sources_hold_the_location_and_the_source_code() -> None:
    texts = hook_sources([SimpleNamespace(function=_impl_one), SimpleNamespace(function=_impl_two)])
    assert texts[0].startswith(f"{__name__}._impl_one\n")
    assert 'machine.run("true")' in texts[0]
    assert 'machine.run("false")' in texts[1]
    # a function without source (made by exec) still gets a text from its code
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec("def made(machine, config):\n    return 1\n", namespace)
    made = namespace["made"]
    (text,) = hook_sources([SimpleNamespace(function=made)])
    assert text == f"generated.made\n{made.__code__.co_code.hex()}"


# --- decisions -------------------------------------------------------------------------------------


def test_clone_decision() -> None:
    v1, v2 = OrbVersion(1, 9, 2), OrbVersion(2, 0, 4)
    assert clone_decision("never", v2) == (False, None)
    assert clone_decision("auto", v2) == (True, None)
    assert clone_decision("always", v2) == (True, None)
    assert clone_decision("auto", None) == (True, None)
    on, note = clone_decision("auto", v1)
    assert not on
    assert note is not None
    assert "1.9.2 has no 'orbctl clone'" in note
    with pytest.raises(ValueError, match=r"OrbStack 1\.9\.2 has no 'orbctl clone'.*--orb-clone auto"):
        clone_decision("always", v1)


def test_reuse_conflicts_with_prefixes_that_cover_base_names() -> None:
    assert reuse_conflict("pytest-test-") is None
    assert reuse_conflict("ci-") is None
    for prefix in ("pytest-", "pytest-b", "pytest-base-", "pytest-base-x"):
        assert reuse_conflict(prefix) is not None, prefix


# --- building once, cloning many -------------------------------------------------------------------


def test_one_base_then_clones(tmp_path: Path) -> None:
    orb, hooks = FakeOrb(), Hooks()
    p = worker(orb, tmp_path, hooks=hooks)
    machines = [p.obtain(SPEC) for _ in range(3)]
    (base,) = orb.ops("create")
    assert base.startswith(f"pytest-test-{RUN}-gw0-")
    assert orb.ops("clone") == [m.name for m in machines]
    assert orb.machines[base] == "stopped"
    assert orb.ops("stop") == [base]
    # provision ran once, on the base; ready on every clone
    assert hooks.events == [("provision", base)] + [("ready", m.name) for m in machines]
    for m in machines:
        assert orb.machines[m.name] == "running"
    assert built(p) == [base]
    assert p.stats.created == 3  # clones count as machines; the base does not


def test_threads_of_one_process_wait_for_one_build(tmp_path: Path) -> None:
    orb = FakeOrb()
    p = worker(orb, tmp_path)
    results: list[Machine] = []
    threads = [threading.Thread(target=lambda: results.append(p.obtain(SPEC))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    assert len(orb.ops("create")) == 1
    assert len(orb.ops("clone")) == 6


def test_workers_share_the_base_through_the_record(tmp_path: Path) -> None:
    orb = FakeOrb()
    gw0, gw1 = worker(orb, tmp_path, name="gw0"), worker(orb, tmp_path, name="gw1")
    a = gw0.obtain(SPEC)
    b = gw1.obtain(SPEC)
    assert len(orb.ops("create")) == 1
    assert a.name.startswith(f"pytest-test-{RUN}-gw0-")
    assert b.name.startswith(f"pytest-test-{RUN}-gw1-")
    assert len(orb.ops("clone")) == 2


def test_each_spec_gets_its_own_base(tmp_path: Path) -> None:
    orb = FakeOrb()
    p = worker(orb, tmp_path)
    p.obtain(SPEC)
    p.obtain(MachineSpec("debian:12"))
    p.obtain(SPEC)
    assert len(orb.ops("create")) == 2
    assert built(p) == orb.ops("create")


def test_a_record_of_another_run_is_ignored(tmp_path: Path) -> None:
    orb = FakeOrb()
    old = worker(orb, tmp_path, run_id="zzzz9999")
    old.obtain(SPEC)
    new = worker(orb, tmp_path)
    new.obtain(SPEC)
    assert len(orb.ops("create")) == 2
    assert built(old) != built(new)


def test_a_failed_provision_deletes_the_base_and_other_workers_fail_fast(tmp_path: Path) -> None:
    orb = FakeOrb()
    gw0 = worker(orb, tmp_path, name="gw0", hooks=Hooks(fail_provision=True))
    with pytest.raises(BaseBuildError, match=r"could not be built: RuntimeError: provisioning failed"):
        gw0.obtain(SPEC)
    assert orb.machines == {}
    gw1 = worker(orb, tmp_path, name="gw1")
    with pytest.raises(BaseBuildError, match=r"could not be built by gw0: RuntimeError"):
        gw1.obtain(SPEC)
    assert len(orb.ops("create")) == 1
    assert built(gw0) == []
    assert built(gw1) == []


def test_a_clone_that_fails_to_start_is_deleted(tmp_path: Path) -> None:
    orb = FakeOrb()
    p = worker(orb, tmp_path)
    run = orb.run

    def run_that_cannot_start(machine: str, command: list[str], **kwargs: Any) -> Any:
        if orb.machines.get(machine) == "stopped":  # the clone's first command starts it: fails
            raise RuntimeError("boom")
        return run(machine, command, **kwargs)

    orb.run = run_that_cannot_start  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="boom"):
        p.obtain(SPEC)
    (base,) = orb.ops("create")
    assert list(orb.machines) == [base]


def test_transient_clone_failures_are_retried(tmp_path: Path) -> None:
    orb = FakeOrb()
    orb.clone_faults = [err(TransientOrbctlError, "clone", "x", "cannot transition from stopped to cloning")]
    p = worker(orb, tmp_path)
    machine = p.obtain(SPEC)
    assert len(orb.ops("clone")) == 2
    assert orb.machines[machine.name] == "running"
    assert any("retrying clone" in line for _, line in p.stats.take_events())


def test_a_vanished_base_is_named_in_the_error(tmp_path: Path) -> None:
    orb = FakeOrb()
    p = worker(orb, tmp_path)
    first = p.obtain(SPEC)
    (base,) = orb.ops("create")
    del orb.machines[base]
    with pytest.raises(BaseBuildError, match="vanished"):
        p.obtain(SPEC)
    assert list(orb.machines) == [first.name]


# --- reuse across runs -----------------------------------------------------------------------------


def test_reuse_keeps_the_base_and_the_next_run_skips_create(tmp_path: Path) -> None:
    orb = FakeOrb()
    first = worker(orb, tmp_path, reuse="on")
    first.obtain(SPEC)
    (building,) = orb.ops("create")
    assert building.startswith("pytest-test-abcd1234-")  # purged if the run dies mid-build
    (base,) = orb.ops("rename")
    assert base == reused_base_name(base_key(SPEC, ["def hook(): pass"]))
    assert base.startswith("pytest-base-")
    assert built(first) == []  # reused bases are not the run's to delete
    second = worker(orb, tmp_path, reuse="on", run_id="efgh5678")
    second.obtain(SPEC)
    assert orb.ops("create") == [building]
    assert orb.ops("rename") == [base]
    assert any("reusing base" in line for _, line in second.stats.take_events())


def test_reuse_refresh_rebuilds_once_per_run(tmp_path: Path) -> None:
    orb = FakeOrb()
    first = worker(orb, tmp_path, reuse="on")
    first.obtain(SPEC)
    first.close()  # that run has ended
    gw0 = worker(orb, tmp_path, reuse="refresh", run_id="efgh5678", name="gw0")
    gw1 = worker(orb, tmp_path, reuse="refresh", run_id="efgh5678", name="gw1")
    gw0.obtain(SPEC)
    gw1.obtain(SPEC)
    (base,) = set(orb.ops("rename"))
    assert len(orb.ops("create")) == 2
    assert len(orb.ops("rename")) == 2
    assert orb.ops("delete") == [base]


def test_refresh_never_deletes_a_base_another_live_run_clones_from(tmp_path: Path) -> None:
    orb = FakeOrb()
    live = worker(orb, tmp_path, reuse="on")
    live.obtain(SPEC)
    (base,) = orb.ops("rename")
    with pytest.raises(BaseBuildError, match="another live run clones machines from it") as excinfo:
        worker(orb, tmp_path, reuse="refresh", run_id="efgh5678").obtain(SPEC)
    assert "--orb-reuse=refresh once that run has ended" in str(excinfo.value)
    assert orb.ops("delete") == []
    assert orb.machines[base] == "stopped"
    live.obtain(SPEC)  # the live run goes on cloning from it
    # a second worker of the live run shares it through the run's record, and holds it too
    live_gw1 = worker(orb, tmp_path, reuse="on", name="gw1")
    live_gw1.obtain(SPEC)
    live.close()
    with pytest.raises(BaseBuildError, match="another live run"):
        worker(orb, tmp_path, reuse="refresh", run_id="ijkl9012").obtain(SPEC)
    live_gw1.close()
    later = worker(orb, tmp_path, reuse="refresh", run_id="mnop3456")
    later.obtain(SPEC)
    assert orb.ops("delete") == [base]
    assert orb.ops("rename") == [base, base]
    with pytest.raises(BaseBuildError, match="another live run"):  # the refreshing run uses it now
        worker(orb, tmp_path, reuse="refresh", run_id="qrst7890").obtain(SPEC)
    later.close()


def test_a_changed_hook_source_makes_a_new_reused_base(tmp_path: Path) -> None:
    orb = FakeOrb()
    worker(orb, tmp_path, reuse="on", sources=("v1",)).obtain(SPEC)
    worker(orb, tmp_path, reuse="on", sources=("v2",), run_id="efgh5678").obtain(SPEC)
    bases = orb.ops("rename")
    assert len(orb.ops("create")) == 2
    assert len(bases) == 2
    assert bases[0] != bases[1]
    assert all(name.startswith("pytest-base-") for name in bases)


def test_a_reused_base_stuck_creating_is_rebuilt(tmp_path: Path) -> None:
    orb = FakeOrb()
    name = reused_base_name(base_key(SPEC, ["def hook(): pass"]))
    orb.machines[name] = "creating"
    worker(orb, tmp_path, reuse="on").obtain(SPEC)
    assert orb.ops("delete") == [name]
    assert orb.ops("rename") == [name]
    assert orb.machines[name] == "stopped"


def test_a_reused_base_left_running_is_not_trusted(tmp_path: Path) -> None:
    orb = FakeOrb()
    name = reused_base_name(base_key(SPEC, ["def hook(): pass"]))
    orb.machines[name] = "running"  # e.g. started by hand, or a half-provisioned leftover
    worker(orb, tmp_path, reuse="on").obtain(SPEC)
    assert orb.ops("delete") == [name]
    assert orb.ops("rename") == [name]
    assert orb.machines[name] == "stopped"


def test_bad_reuse_value() -> None:
    with pytest.raises(ValueError, match="reuse must be one of"):
        BaseManager(
            None,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            manager=None,  # type: ignore[arg-type]
            provision=lambda machine: None,
            sources=lambda: (),
            reuse="sometimes",
        )


def test_install_follows_the_clone_decision(tmp_path: Path) -> None:
    orb = FakeOrb()
    p = worker(orb, tmp_path)
    plain = make(orb, worker="main")
    before = plain.source
    kwargs: dict[str, Any] = {"reuse": "off", "lock_dir": tmp_path, "sources": lambda: ()}
    assert install(plain, clone="never", version=OrbVersion(2, 0, 4), **kwargs) is None
    assert install(plain, clone="auto", version=OrbVersion(1, 9, 2), **kwargs) is None
    assert plain.source is before
    with pytest.raises(ValueError, match="has no 'orbctl clone'"):
        install(plain, clone="always", version=OrbVersion(1, 9, 2), **kwargs)
    assert isinstance(p.source, CloneSource)


def test_provision_sources_reads_the_hook_caller() -> None:
    caller = SimpleNamespace(get_hookimpls=lambda: [SimpleNamespace(function=_impl_one)])
    assert provision_sources(caller) == hook_sources([SimpleNamespace(function=_impl_one)])


def test_a_clone_is_started_by_its_first_command(tmp_path: Path) -> None:
    orb = FakeOrb()
    p = worker(orb, tmp_path)
    machine = p.obtain(SPEC)
    assert orb.ops("run-start") == [machine.name]  # `orbctl run` started it: no separate `start`
    assert orb.ops("start") == []
    assert orb.machines[machine.name] == "running"
    assert machine.home == "/home/tester"  # printed by that first command, the readiness probe


class _StopsBadly(FakeOrb):
    """``stop`` returns but the base ends ``after_stop`` (None: deleted, as OrbStack 1.8 did)."""

    def __init__(self, after_stop: Optional[str]) -> None:
        super().__init__()
        self.after_stop = after_stop

    def stop(self, name: str, force: bool = False) -> None:
        self.record("stop", name)
        if self.after_stop is None:
            del self.machines[name]
        else:
            self.machines[name] = self.after_stop


def test_a_base_that_vanished_on_stop_is_an_error_not_cloned(tmp_path: Path) -> None:
    orb = _StopsBadly(None)
    p = worker(orb, tmp_path)
    with pytest.raises(BaseBuildError, match="vanished when it was stopped"):
        p.obtain(SPEC)
    assert orb.ops("clone") == []
    assert orb.machines == {}


def test_a_base_that_does_not_stop_is_deleted_and_an_error(tmp_path: Path) -> None:
    orb = _StopsBadly("stopping")
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    p = worker(orb, tmp_path, clock=lambda: now[0], sleep=sleep)  # 30 s pass without waiting
    with pytest.raises(BaseBuildError, match="it is stopping, not stopped"):
        p.obtain(SPEC)
    assert orb.ops("clone") == []
    assert orb.machines == {}
