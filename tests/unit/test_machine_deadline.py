"""The overall deadline of a machine (``--orb-machine-timeout``) on the clone fast path, for
``Machine.clone()`` and for the base itself, against the shared in-memory fake orbctl (fakes.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import SPEC, FakeClock, FakeOrb, Hooks, ScriptedOrb, err, worker

from pytest_orbstack.basestore import BaseBuildError
from pytest_orbstack.deadline import Deadline
from pytest_orbstack.errors import (
    MachineDeadlineError,
    OrbctlHungError,
    OrbctlTimeoutError,
    TransientOrbctlError,
)
from pytest_orbstack.machine import Machine
from pytest_orbstack.provisioner import Provisioner


def _timed(
    orb: FakeOrb, lock_dir: Path, clock: FakeClock, *, machine_timeout: float, **kwargs: Any
) -> Provisioner:
    """A worker on ``clock`` with 10 retries: only the deadline stops them."""
    return worker(
        orb, lock_dir, clock=clock, sleep=clock.sleep, machine_timeout=machine_timeout, retries=10, **kwargs
    )


def _base_only(orb: FakeOrb) -> None:
    (base,) = orb.ops("create")
    assert list(orb.machines) == [base], orb.machines  # the failed clone was deleted, the base stays


def test_deadline_caps_timeouts_and_excludes_what_it_is_told() -> None:
    clock = FakeClock()
    deadline = Deadline("m", 100.0, clock)
    assert deadline.cap(300.0) == 100.0
    assert deadline.cap_kwargs(300.0) == {"timeout": 100.0}
    assert deadline.cap_kwargs(50.0) == {}  # a call that ends before the deadline keeps its own timeout
    with deadline.excluding():
        clock.advance(1000.0)
    assert deadline.remaining() == 100.0
    clock.advance(99.5)
    assert deadline.cap(300.0) == 1.0  # never less than a second
    deadline.check(RuntimeError("not yet"))
    clock.advance(0.5)
    with pytest.raises(MachineDeadlineError, match="--orb-machine-timeout") as excinfo:
        deadline.check(RuntimeError("the last error"))
    assert str(excinfo.value).endswith("last error: the last error")


def test_clone_retries_stop_at_the_machine_deadline(tmp_path: Path) -> None:
    clock = FakeClock()

    def failing_slowly(old: str, new: str) -> None:
        clock.advance(40.0)  # every attempt takes 40 s, then fails transiently
        raise err(TransientOrbctlError, "clone", new, "cannot transition from stopped to cloning")

    orb = ScriptedOrb().on("clone", failing_slowly)
    p = _timed(orb, tmp_path, clock, machine_timeout=60.0)
    with pytest.raises(MachineDeadlineError) as excinfo:
        p.obtain(SPEC)
    message = str(excinfo.value)
    assert "\n" not in message
    assert "overall deadline of 60s (raise --orb-machine-timeout if it needs longer)" in message
    assert "cannot transition from stopped to cloning" in message
    assert len(orb.asked("clone")) == 2  # the retry at 40 s ran; none at 80 s, past the 60 s deadline
    _base_only(orb)


def test_a_clone_is_killed_at_the_machine_deadline_and_the_hang_remembered(tmp_path: Path) -> None:
    clock = FakeClock()

    def stalling(old: str, new: str, timeout: float = 300.0) -> None:
        clock.advance(timeout)  # stalls until it is killed
        raise OrbctlTimeoutError(["orbctl", "clone", old, new], timeout)

    orb = ScriptedOrb().on("clone", stalling)
    orb.timeouts = SimpleNamespace(clone=300.0)  # type: ignore[attr-defined]  # the client's clone timeout
    p = _timed(orb, tmp_path, clock, machine_timeout=100.0)
    with pytest.raises(MachineDeadlineError, match="--orb-machine-timeout"):
        p.obtain(SPEC)
    # cut from the 300 s clone timeout to the machine's deadline
    assert [call.kwargs.get("timeout") for call in orb.asked("clone")] == [100.0]
    _base_only(orb)
    with pytest.raises(OrbctlHungError):
        p.obtain(SPEC)  # the next machine does not hang again
    assert len(orb.asked("clone")) == 1


def test_clone_start_and_readiness_share_one_deadline(tmp_path: Path) -> None:
    clock = FakeClock()

    orb = ScriptedOrb()
    clone, run = orb.unscripted("clone"), orb.unscripted("run")
    hung: list[float] = []

    def slow_clone(old: str, new: str) -> None:
        clock.advance(50.0)
        clone(old, new)

    def hanging_start(machine: str, command: list[str], **kwargs: Any) -> Any:
        if orb.machines.get(machine) == "stopped":  # its first command starts it: hangs
            hung.append(kwargs["timeout"])
            clock.advance(kwargs["timeout"])
            raise OrbctlTimeoutError(["orbctl", "run", "-m", machine], kwargs["timeout"])
        return run(machine, command, **kwargs)

    orb.on("clone", slow_clone)
    p = _timed(orb, tmp_path, clock, machine_timeout=60.0, ready_timeout=120.0)
    p.obtain(SPEC)  # the base is built and a first clone is ready, 50 s after it began
    orb.on("run", hanging_start)
    orb.machines = {name: state for name, state in orb.machines.items() if state == "stopped"}  # the base
    with pytest.raises(MachineDeadlineError, match="--orb-machine-timeout"):
        p.obtain(SPEC)
    assert hung == [10.0]  # what the 50 s clone left of 60 s, not the ready timeout
    _base_only(orb)


def test_machine_clone_keeps_within_the_deadline(tmp_path: Path) -> None:
    clock = FakeClock()
    orb = ScriptedOrb()
    p = _timed(orb, tmp_path, clock, machine_timeout=60.0)
    machine: Machine = p.obtain(SPEC)

    def failing(old: str, new: str) -> None:
        clock.advance(40.0)
        raise err(TransientOrbctlError, "clone", new, "cannot transition from running to cloning")

    orb.on("clone", failing)
    with pytest.raises(MachineDeadlineError, match="overall deadline of 60s"):
        machine.clone()
    assert len(orb.asked("clone")) == 2 + 1  # the first test's clone, then two attempts


def test_the_base_stop_keeps_within_the_base_deadline_and_hooks_are_not_charged(tmp_path: Path) -> None:
    clock = FakeClock()

    class SlowHooks(Hooks):
        def provision(self, machine: Machine) -> None:
            super().provision(machine)
            clock.advance(1000.0)  # a long provision hook: the user's time, not the deadline's

    def failing_stop(name: str, force: bool = False) -> None:
        clock.advance(40.0)
        raise err(TransientOrbctlError, "stop", name, "cannot transition from running to stopping")

    orb = ScriptedOrb().on("stop", failing_stop)
    p = _timed(orb, tmp_path, clock, machine_timeout=60.0, hooks=SlowHooks())
    with pytest.raises(BaseBuildError) as excinfo:
        p.obtain(SPEC)
    message = str(excinfo.value)
    assert "MachineDeadlineError" in message
    assert "raise --orb-machine-timeout if it needs longer" in message
    assert len(orb.asked("stop")) == 2  # retried at 40 s (the hook's 1000 s not counted), not at 80 s
    assert orb.machines == {}  # the base that did not stop is deleted
