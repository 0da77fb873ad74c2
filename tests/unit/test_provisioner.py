"""provisioner.py against the shared fake clients (fakes.py): create retries, adoption, delete, keep."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fakes import SPEC, FakeClock, FakeOrb, Hooks, ScriptedOrb, err, make

from pytest_orbstack.errors import (
    ImageNotFoundError,
    MachineDeadlineError,
    MachineExistsError,
    MachineNotReadyError,
    OrbctlCommandError,
    OrbctlHungError,
    OrbctlTimeoutError,
    TransientOrbctlError,
)
from pytest_orbstack.naming import kept_name


def test_obtain_runs_hooks_and_names_the_machine() -> None:
    orb, hooks = FakeOrb(), Hooks()
    machine = make(orb, hooks).obtain(SPEC)
    assert machine.name.startswith("pytest-test-abcd1234-gw0-")
    assert hooks.events == [("provision", machine.name), ("ready", machine.name)]
    assert list(orb.machines) == [machine.name]


def test_transient_create_failures_are_retried() -> None:
    orb = FakeOrb()
    orb.create_faults = ["transient", "transient"]
    p = make(orb)
    machine = p.obtain(SPEC)
    assert orb.count("create") == 3
    assert list(orb.machines) == [machine.name]
    assert any("retrying create" in e for _, e in p.stats.take_events())


def test_transient_failures_beyond_retries_raise() -> None:
    orb = FakeOrb()
    orb.create_faults = ["transient"] * 5
    with pytest.raises(TransientOrbctlError):
        make(orb, retries=2).obtain(SPEC)
    assert orb.count("create") == 3
    assert orb.machines == {}


def test_permanent_create_error_is_not_retried() -> None:
    orb = FakeOrb()
    orb.create_faults = ["bad-image"]
    with pytest.raises(ImageNotFoundError):
        make(orb).obtain(SPEC)
    assert orb.count("create") == 1


@pytest.mark.parametrize("fault", ["hang-made", "transient-keep"])
def test_failed_create_whose_machine_exists_is_adopted(fault: str) -> None:
    orb = FakeOrb()
    orb.create_faults = [fault]
    p = make(orb)
    machine = p.obtain(SPEC)
    assert orb.count("create") == 1
    assert list(orb.machines) == [machine.name]
    assert any("adopting" in e for _, e in p.stats.take_events())


def test_hung_create_that_left_nothing_is_retried_and_exists_error_means_adopt() -> None:
    orb = FakeOrb()
    orb.create_faults = ["hang-nothing"]
    p = make(orb)
    machine = p.obtain(SPEC)
    assert orb.count("create") == 2
    assert list(orb.machines) == [machine.name]
    p.obtain(SPEC)  # the retry succeeded: the hang was a one-off, later creates go ahead
    assert orb.count("create") == 3


def test_a_create_that_hangs_twice_is_not_repeated_for_later_machines() -> None:
    orb = FakeOrb()
    orb.create_faults = ["hang-nothing", "hang-nothing"]
    p = make(orb)
    with pytest.raises(OrbctlTimeoutError):
        p.obtain(SPEC)
    assert orb.count("create") == 2  # retried once, not --orb-retries times
    with pytest.raises(OrbctlHungError) as excinfo:
        p.obtain(SPEC)  # a later test fails at once, with one line
    assert orb.count("create") == 2
    message = str(excinfo.value)
    assert "\n" not in message
    assert "not trying orbctl create again in this run: an earlier one hung (orbctl create" in message
    assert orb.machines == {}


def test_a_create_retry_never_starts_after_the_machine_deadline() -> None:
    clock, orb = FakeClock(0.0), ScriptedOrb()
    create = orb.unscripted("create")

    def slow(image: str, name: str, **kwargs: Any) -> None:
        clock.advance(40.0)  # every attempt takes 40 s, then fails transiently
        create(image, name, **kwargs)

    orb.on("create", slow).create_faults = ["transient", "transient", "transient"]
    p = make(orb, clock=clock, machine_timeout=60.0)
    with pytest.raises(MachineDeadlineError) as excinfo:
        p.obtain(SPEC)
    message = str(excinfo.value)
    assert "--orb-machine-timeout" in message
    assert "60s" in message
    assert "502 Bad Gateway" in message
    assert "\n" not in message
    assert len(orb.asked("create")) == 2  # the retry at 40 s ran; none at 80 s, past the 60 s deadline


def test_a_create_is_killed_at_the_machine_deadline() -> None:
    clock = FakeClock(0.0)

    def stalling(image: str, name: str, timeout: float = 600.0, **kwargs: Any) -> None:
        clock.advance(timeout)  # the create stalls until it is killed
        raise OrbctlTimeoutError(["orbctl", "create", name], timeout)

    orb = ScriptedOrb().on("create", stalling)
    orb.timeouts = SimpleNamespace(create=600.0)  # type: ignore[attr-defined]  # the client's create timeout
    p = make(orb, clock=clock, machine_timeout=900.0)
    with pytest.raises(MachineDeadlineError, match="--orb-machine-timeout") as excinfo:
        p.obtain(SPEC)
    # the first create keeps the client's own 600 s (none passed), the retry is cut to what was left
    assert [call.kwargs.get("timeout") for call in orb.asked("create")] == [None, 300.0]
    assert clock() == 900.0
    assert "\n" not in str(excinfo.value)
    with pytest.raises(OrbctlHungError):
        p.obtain(SPEC)  # the hang is remembered all the same
    assert len(orb.asked("create")) == 2


def test_machine_stop_is_retried_like_every_lifecycle_call() -> None:
    orb = ScriptedOrb()
    stop = orb.unscripted("stop")

    def conflict_once(name: str, force: bool = False) -> None:
        if len(orb.asked("stop")) == 1:
            raise err(TransientOrbctlError, "stop", name, "cannot transition from starting to stopping")
        stop(name, force=force)

    p = make(orb.on("stop", conflict_once))
    machine = p.obtain(SPEC)
    machine.stop()
    assert len(orb.asked("stop")) == 2
    assert orb.machines[machine.name] == "stopped"
    assert any("retrying stop of" in e for _, e in p.stats.take_events())


def test_hung_create_whose_machine_never_gets_ready_is_deleted_and_retried() -> None:
    orb = FakeOrb()
    orb.create_faults = ["hang-dead"]
    machine = make(orb).obtain(SPEC)
    assert orb.count("create") == 2
    assert orb.count("delete") == 1
    assert orb.machines == {machine.name: "running"}


def test_a_half_made_machine_is_not_woken_by_the_readiness_probe() -> None:
    """``orbctl run`` starts a stopped machine: adoption looks at ``info`` before any probe."""

    orb = ScriptedOrb()  # its run starts a stopped machine, as orbctl run does
    orb.create_faults = ["hang-dead"]
    machine = make(orb).obtain(SPEC)
    probed = {call.args[0] for call in orb.asked("run")}
    assert probed == {machine.name}  # only the machine of the second, clean create was probed
    assert orb.count("delete") == 1


def test_machine_exists_on_a_first_attempt_is_not_adopted() -> None:
    orb = FakeOrb()
    p = make(orb)
    p.new_name = lambda: "pytest-test-taken"  # type: ignore[method-assign]
    orb.machines["pytest-test-taken"] = "running"
    with pytest.raises(MachineExistsError):
        p.obtain(SPEC)


def test_not_ready_after_a_normal_create_deletes_and_raises() -> None:
    orb = FakeOrb()
    orb.run = lambda *a, **k: SimpleNamespace(returncode=1)  # type: ignore[method-assign]
    p = make(orb, clock=iter(float(n) for n in range(1000)).__next__)
    with pytest.raises(MachineNotReadyError):
        p.obtain(SPEC)
    assert orb.machines == {}


def test_failing_provision_hook_deletes_the_machine() -> None:
    orb = FakeOrb()
    with pytest.raises(RuntimeError, match="provisioning failed"):
        make(orb, Hooks(fail_provision=True)).obtain(SPEC)
    assert orb.machines == {}


def test_release_deletes_with_retries_and_is_idempotent() -> None:
    orb, hooks = FakeOrb(), Hooks()
    p = make(orb, hooks)
    machine = p.obtain(SPEC)
    orb.delete_faults = [err(TransientOrbctlError, "delete", machine.name, "cannot transition")]
    p.release(machine, keep=False)
    assert orb.machines == {}
    assert machine.deleted
    assert hooks.events[-1] == ("teardown", machine.name)
    p.release(machine, keep=False)
    machine.delete()
    assert p.stats.deleted == 1


def test_delete_of_a_vanished_machine_counts_as_done() -> None:
    orb = FakeOrb()
    p = make(orb)
    machine = p.obtain(SPEC)
    del orb.machines[machine.name]
    p.release(machine, keep=False)
    assert machine.deleted
    assert p.stats.failed_deletes == {}


def test_failed_delete_is_recorded_not_raised() -> None:
    orb = FakeOrb()
    p = make(orb, retries=1)
    machine = p.obtain(SPEC)
    orb.delete_faults = [err(TransientOrbctlError, "delete", machine.name, "cannot transition")] * 2
    p.release(machine, keep=False)
    assert machine.name in p.stats.failed_deletes
    assert list(orb.machines) == [machine.name]


def test_keep_leaves_the_machine_under_the_kept_prefix() -> None:
    orb = FakeOrb()
    p = make(orb)
    machine = p.obtain(SPEC)
    p.release(machine, keep=True)
    assert list(orb.machines) == [kept_name(machine.name)]
    assert p.stats.kept == [kept_name(machine.name)]


def test_keep_leaves_the_machine_under_its_name_when_the_rename_fails() -> None:
    def failing(old: str, new: str) -> None:
        raise err(OrbctlCommandError, "rename", old, "rename failed")

    orb = ScriptedOrb().on("rename", failing)
    p = make(orb)
    machine = p.obtain(SPEC)
    p.release(machine, keep=True)
    assert list(orb.machines) == [machine.name]
    assert p.stats.kept == [machine.name]
    assert any("renaming it to" in line for _, line in p.stats.take_events())


def test_clone_is_started_and_released_with_its_source() -> None:
    orb = FakeOrb()
    p = make(orb)
    machine = p.obtain(SPEC)
    copy = machine.clone()
    assert copy.name.startswith("pytest-test-abcd1234-gw0-")
    assert orb.machines[copy.name] == "running"
    p.release(machine, keep=False)
    assert orb.machines == {}


def test_a_clone_that_hangs_half_way_is_deleted_at_once() -> None:
    orb = FakeOrb()
    p = make(orb)
    machine = p.obtain(SPEC)
    orb.clone_faults = [OrbctlTimeoutError(["orbctl", "clone", machine.name, "x"], 3)]
    with pytest.raises(OrbctlTimeoutError):
        machine.clone("pytest-test-abcd1234-gw0-copy01")  # made although the call hung
    assert orb.machines == {machine.name: "running"}
    assert orb.ops("delete") == ["pytest-test-abcd1234-gw0-copy01"]
    with pytest.raises(OrbctlHungError, match=r"clone again in this run: an earlier one hung \(orbctl clone"):
        machine.clone("pytest-test-abcd1234-gw0-copy02")  # a clone hang is not repeated
    assert "pytest-test-abcd1234-gw0-copy02" not in orb.machines
    p.release(machine, keep=False)
    assert orb.machines == {}


def test_a_half_made_clone_that_cannot_be_deleted_at_once_is_deleted_with_its_source() -> None:
    orb = FakeOrb()
    p = make(orb)
    machine = p.obtain(SPEC)
    orb.clone_faults = [OrbctlTimeoutError(["orbctl", "clone", machine.name, "x"], 3)]
    orb.delete_faults = [err(OrbctlCommandError, "delete", "x", "cannot delete right now")]
    with pytest.raises(OrbctlTimeoutError):  # the clone's own error, not the delete's
        machine.clone("pytest-test-abcd1234-gw0-copy01")
    assert "pytest-test-abcd1234-gw0-copy01" in orb.machines
    p.release(machine, keep=False)
    assert orb.machines == {}


def test_a_failed_clone_deleted_at_once_is_not_torn_down_or_kept_with_its_source() -> None:
    orb, hooks = FakeOrb(), Hooks()
    p = make(orb, hooks)
    machine = p.obtain(SPEC)
    orb.clone_faults = [OrbctlTimeoutError(["orbctl", "clone", machine.name, "x"], 3)]
    with pytest.raises(OrbctlTimeoutError):
        machine.clone("pytest-test-abcd1234-gw0-copy01")
    assert "pytest-test-abcd1234-gw0-copy01" not in orb.machines  # deleted at once
    p.release(machine, keep=True)
    assert ("teardown", "pytest-test-abcd1234-gw0-copy01") not in hooks.events  # no test ever had it
    assert p.stats.kept == [kept_name(machine.name)]
    assert list(orb.machines) == p.stats.kept


def test_a_transient_clone_failure_is_retried() -> None:
    orb = FakeOrb()
    p = make(orb)
    machine = p.obtain(SPEC)
    orb.clone_faults = [err(TransientOrbctlError, "clone", machine.name, "cannot transition from creating")]
    copy = machine.clone()
    assert orb.machines[copy.name] == "running"
    p.release(machine, keep=False)
    assert orb.machines == {}


def test_background_deletes_finish_by_close() -> None:
    orb, hooks = FakeOrb(), Hooks()
    p = make(orb, hooks)
    p.delete_in_background()
    machine = p.obtain(SPEC)
    p.release(machine, keep=False)
    assert hooks.events[-1] == ("teardown", machine.name)  # the hook ran on the caller's thread
    p.close()
    assert machine.deleted
    assert orb.machines == {}
    assert p.stats.deleted == 1
