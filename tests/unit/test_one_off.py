"""A spec the run needs once is created directly (no base); a base's record is read without its lock.

The count (``lookahead.demand``), the choice (``plan.decide``: ``one_off``), the
source that acts on it (``bases.OneOffSource``) and the lock-free read of a
finished base's record (``BaseStore.recorded``).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import filelock
import pytest
from fakes import RUN, SPEC, FakeOrb, Hooks, collected, make, worker

from pytest_orbstack.basebuild import VolatileProvisionWarning
from pytest_orbstack.basekey import base_key, reused_base_name
from pytest_orbstack.bases import BaseManager, OneOffSource, install
from pytest_orbstack.basestore import BaseBuildError, BaseStore
from pytest_orbstack.clonesource import CloneSource
from pytest_orbstack.lookahead import demand
from pytest_orbstack.models import MachineSpec, OrbVersion
from pytest_orbstack.plan import Demand, decide
from pytest_orbstack.settings import Settings

DEBIAN = MachineSpec("debian:12")
#: the provision hooks' sources ``fakes.worker`` gives its base manager
SOURCES = ("def hook(): pass",)


SETTINGS = Settings()  # the options' spec: ubuntu:22.04


# --- the count ------------------------------------------------------------------------------------


def test_one_fresh_test_needs_one_machine_of_its_spec() -> None:
    found = demand([collected("orb_vm_fresh"), collected("tmp_path")], SETTINGS, 1)
    assert found.single(SETTINGS.spec)
    assert not found.single(DEBIAN)  # not counted: a machine of it would be a surprise, so a clone


def test_each_fresh_test_is_a_machine_and_orb_vm_one_per_process() -> None:
    assert not demand([collected("orb_vm_fresh"), collected("orb_vm_fresh")], SETTINGS, 1).single(
        SETTINGS.spec
    )
    three_shared = [collected("orb_vm"), collected("orb_vm"), collected("orb_vm")]
    assert demand(three_shared, SETTINGS, 1).single(SETTINGS.spec)  # one process: one orb_vm
    assert not demand(three_shared, SETTINGS, 4).single(SETTINGS.spec)  # xdist: one per worker
    assert demand(three_shared[:1], SETTINGS, 4).single(SETTINGS.spec)
    assert not demand([collected("orb_vm"), collected("orb_vm_fresh")], SETTINGS, 1).single(SETTINGS.spec)
    assert not demand([collected("orb_vm", "orb_vm_fresh")], SETTINGS, 1).single(SETTINGS.spec)


def test_with_dist_each_every_worker_runs_every_test() -> None:
    found = demand([collected("orb_vm_fresh")], SETTINGS, 2, dist="each")
    assert not found.single(SETTINGS.spec)
    assert dict(found.counts) == {SETTINGS.spec: 2}
    assert dict(demand([collected("orb_vm")], SETTINGS, 3, dist="each").counts) == {SETTINGS.spec: 3}
    assert demand([collected("orb_vm")], SETTINGS, 1, dist="each").single(SETTINGS.spec)


def test_whether_every_process_can_count_on_running_an_orb_vm_test() -> None:
    """Then its shared machine is made as soon as the base exists (runtime.prefetch)."""
    one = [collected("orb_vm"), collected("orb_vm_fresh")]
    four = [collected("orb_vm")] * 4 + [collected("orb_vm_fresh")]
    assert demand(one, SETTINGS, 1).shared_everywhere  # one process runs every test
    assert demand(one, SETTINGS, 1, dist="loadfile").shared_everywhere  # -n 1: the same
    assert demand(one, SETTINGS, 4, dist="each").shared_everywhere
    assert not demand(one, SETTINGS, 4, dist="load").shared_everywhere  # fewer than the workers
    assert demand(four, SETTINGS, 4, dist="load").shared_everywhere
    assert demand(four, SETTINGS, 4, dist="worksteal").shared_everywhere
    for grouped in ("loadfile", "loadscope", "loadgroup"):  # a worker may get only fresh tests' files
        assert not demand(four, SETTINGS, 4, dist=grouped).shared_everywhere
    assert not demand([collected("orb_vm_fresh")], SETTINGS, 1).shared_everywhere
    assert not demand([collected("orb_vm", skip=True)], SETTINGS, 1).shared_everywhere
    assert not demand([collected("orb_vm", skipif=True)], SETTINGS, 1).shared_everywhere  # may not run
    maybe = [collected("orb_vm", skipif=True)] * 4 + [collected("orb_vm_fresh")]
    assert not demand(maybe, SETTINGS, 4, dist="load").shared_everywhere
    few = [collected("orb_vm")] * 4 + [collected("tmp_path")] * 5  # most tests use no orb_vm
    assert not demand(few, SETTINGS, 4, dist="load").shared_everywhere
    assert demand(few, SETTINGS, 4, dist="each").shared_everywhere
    assert not demand([*four, collected("orb_machines")], SETTINGS, 4, dist="load").shared_everywhere
    assert not Demand().shared_everywhere  # not counted


def test_the_marker_gives_a_fresh_machine_its_own_spec() -> None:
    found = demand([collected("orb_vm_fresh", image="debian:12"), collected("orb_vm")], SETTINGS, 2)
    assert found.single(DEBIAN)
    assert found.single(SETTINGS.spec)  # orb_vm takes the options' spec, markers do not apply
    assert dict(found.counts) == {DEBIAN: 1, SETTINGS.spec: 1}


def test_skipped_tests_need_nothing_and_orb_machines_any_number() -> None:
    found = demand([collected("orb_vm_fresh"), collected("orb_vm_fresh", skip=True)], SETTINGS, 1)
    assert found.single(SETTINGS.spec)
    open_ended = demand([collected("orb_vm_fresh"), collected("orb_machines")], SETTINGS, 1)
    assert open_ended.open_ended
    assert not open_ended.single(SETTINGS.spec)
    assert not Demand().single(SETTINGS.spec)  # not counted (no collection): every spec may be many


# --- the choice -----------------------------------------------------------------------------------


def test_only_auto_without_reuse_creates_a_lone_machine_directly() -> None:
    v2 = OrbVersion(2, 0, 4)
    assert decide(SETTINGS, v2).one_off
    assert decide(SETTINGS, None).one_off  # version unknown: clone is tried, the count still applies
    assert not decide(replace(SETTINGS, reuse="on"), v2).one_off  # a reused base serves later runs
    assert not decide(replace(SETTINGS, reuse="refresh"), v2).one_off
    assert not decide(replace(SETTINGS, clone="always"), v2).one_off  # asks for a base
    assert not decide(replace(SETTINGS, clone="never"), v2).one_off  # every machine is created anyway
    assert not decide(SETTINGS, OrbVersion(1, 9, 2)).one_off  # no clone at all


# --- the source -----------------------------------------------------------------------------------


def _one_off(orb: FakeOrb, tmp_path: Path, single: Any, hooks: Hooks | None = None) -> Any:
    p = make(orb, hooks)
    install(
        p,
        clone="auto",
        version=OrbVersion(2, 0, 4),
        reuse="off",
        lock_dir=tmp_path,
        sources=lambda: SOURCES,
        single=single,
    )
    assert isinstance(p.source, OneOffSource)
    return p


def test_the_lone_machine_is_created_and_provisioned_no_base(tmp_path: Path) -> None:
    orb, hooks = FakeOrb(), Hooks()
    p = _one_off(orb, tmp_path, lambda spec: spec == SPEC, hooks)
    machine = p.obtain(SPEC)
    assert orb.ops("create") == [machine.name]
    assert orb.count("stop") == 0
    assert orb.count("clone") == 0
    assert ("provision", machine.name) in hooks.events  # provisioned at hand-out, as a created machine
    assert ("ready", machine.name) in hooks.events
    assert orb.machines == {machine.name: "running"}
    clone = p.source.clone
    assert isinstance(clone, CloneSource)
    assert isinstance(clone.bases, BaseManager)
    assert clone.bases.built == []


def test_a_second_machine_of_that_spec_is_a_clone_after_all(tmp_path: Path) -> None:
    orb, hooks = FakeOrb(), Hooks()
    p = _one_off(orb, tmp_path, lambda spec: True, hooks)
    first = p.obtain(SPEC)
    second = p.obtain(SPEC)  # the count said one (a fixture reached by getfixturevalue, say)
    (base,) = p.source.clone.bases.built
    assert orb.ops("create") == [first.name, base]
    assert orb.ops("clone") == [second.name]
    assert ("provision", base) in hooks.events
    assert ("provision", second.name) not in hooks.events  # the base was provisioned


def test_a_spec_needed_more_than_once_gets_a_base(tmp_path: Path) -> None:
    orb = FakeOrb()
    p = _one_off(orb, tmp_path, lambda spec: spec == DEBIAN)
    machine = p.obtain(SPEC)
    (base,) = p.source.clone.bases.built
    assert orb.ops("create") == [base]
    assert orb.ops("clone") == [machine.name]


# --- the base's record, read without the build lock --------------------------------------------------


def _join(p: Any, tmp_path: Path, *, reuse: str) -> None:
    """``p`` clones the run's bases as another worker would (a short wait for the build lock)."""
    install(
        p,
        clone="auto",
        version=OrbVersion(2, 0, 4),
        reuse=reuse,
        lock_dir=tmp_path,
        sources=lambda: SOURCES,
        state_dir=tmp_path / "state",
        lock_timeout=0.2,
    )


def test_a_finished_base_is_read_without_waiting_for_the_build_lock(tmp_path: Path) -> None:
    orb = FakeOrb()
    builder = worker(orb, tmp_path, name="gw0")
    builder.obtain(SPEC)
    (base,) = orb.ops("stop")
    other = make(orb, worker="gw1")
    _join(other, tmp_path, reuse="off")
    (lock_path,) = tmp_path.glob(f"orbstack-base-*-{RUN}.lock")
    held = filelock.FileLock(str(lock_path), timeout=0)
    with held:  # as if another process held it (e.g. still leaving): no reason to wait for it
        machine = other.obtain(SPEC)
    assert orb.ops("clone")[-1] == machine.name
    assert orb.count("create") == 1
    record = BaseStore(lock_dir=tmp_path, run_id=RUN, worker="gw1").recorded(base_key(SPEC, SOURCES))
    assert record is not None
    assert (record.name, record.worker) == (base, "gw0")


def test_a_record_of_another_run_is_not_read(tmp_path: Path) -> None:
    orb = FakeOrb()
    worker(orb, tmp_path, name="gw0", run_id="otherrun0001").obtain(SPEC)
    assert BaseStore(lock_dir=tmp_path, run_id=RUN, worker="gw0").recorded(base_key(SPEC, SOURCES)) is None
    worker(orb, tmp_path, name="gw0").obtain(SPEC)
    assert orb.count("create") == 2  # this run built its own base


def test_a_reused_base_read_from_its_record_is_held_as_in_use(tmp_path: Path) -> None:
    orb = FakeOrb()
    builder = worker(orb, tmp_path, name="gw0", reuse="on")
    builder.obtain(SPEC)
    builder.close()  # gw0 lets go of the base: gw1 alone will hold it
    other = make(orb, worker="gw1")
    _join(other, tmp_path, reuse="on")
    (lock_path,) = tmp_path.glob(f"orbstack-base-*-{RUN}.lock")
    with filelock.FileLock(str(lock_path), timeout=0):
        other.obtain(SPEC)  # from the record, without the run's build lock
    assert orb.count("create") == 1
    # gw1 is now a user of the reused base: a refresh elsewhere may not take it over
    refresher = BaseStore(lock_dir=tmp_path, run_id="another0001", worker="gw0", state_dir=tmp_path / "state")
    key = base_key(SPEC, SOURCES)
    taking = refresher.taken_over(SPEC, key, reused_base_name(key))
    with pytest.raises(BaseBuildError, match="another live run clones machines from it"), taking:
        pass
    other.close()
    with refresher.taken_over(SPEC, key, reused_base_name(key)):  # nobody uses it any more
        pass
    refresher.close()


class _WritesTmp(Hooks):
    def provision(self, machine: Any) -> None:
        super().provision(machine)
        machine.run("echo seed > /tmp/seed")


def test_the_lone_machine_warns_as_a_base_would_of_hooks_that_name_tmp(tmp_path: Path) -> None:
    """Run alone the test gets the created machine; in the whole suite a clone, which starts with an
    empty /tmp: the warning says so in both cases, once."""
    orb = FakeOrb()
    p = _one_off(orb, tmp_path, lambda spec: spec == SPEC, _WritesTmp())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        first = p.obtain(SPEC)
        p.obtain(SPEC)  # the second is a clone of a base built now: no second warning
    assert [type(w.message) for w in record] == [VolatileProvisionWarning]
    assert "/tmp and /run start empty" in str(record[0].message)
    assert orb.ops("create")[0] == first.name
