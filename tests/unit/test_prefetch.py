"""prefetch.py against the shared scripted client (fakes.py): machines made ahead, taken, deleted."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Optional

import pytest
from fakes import SPEC, FakeOrb, Hooks, ScriptedOrb, make

from pytest_orbstack.machine import Machine
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.prefetch import PrefetchSource
from pytest_orbstack.provisioner import Provisioner

OTHER = MachineSpec("debian:12")


def gated(orb: ScriptedOrb) -> threading.Event:
    """A gate, open at first, that ``orb``'s creates from a prefetch thread wait for."""
    gate = threading.Event()
    gate.set()
    create = orb.unscripted("create")

    def waiting(image: str, name: str, **kwargs: Any) -> None:
        if threading.current_thread().name.startswith("orb-prefetch"):
            assert gate.wait(timeout=10)
        create(image, name, **kwargs)

    orb.on("create", waiting)
    return gate


def made_by(orb: ScriptedOrb, name: str) -> str:
    """The thread whose ``create`` made the machine ``name``."""
    (thread,) = [call.thread for call in orb.asked("create") if call.args[1] == name]
    return thread


class ThreadHooks(Hooks):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def ready(self, machine: Machine) -> None:
        self.threads.add(threading.current_thread().name)
        super().ready(machine)


def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    end = time.monotonic() + within
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def prefetching(orb: FakeOrb, hooks: Hooks, limit: int = 2) -> tuple[Provisioner, PrefetchSource]:
    p = make(orb, hooks)
    source = PrefetchSource(p.context, p.source, limit=limit)
    p.source = source
    return p, source


def test_a_prepared_machine_is_taken_by_the_next_request_and_hooks_run_then() -> None:
    orb, hooks = ScriptedOrb(), ThreadHooks()
    p, source = prefetching(orb, hooks)
    first = p.obtain(SPEC)
    assert list(orb.machines) == [first.name]  # nothing is made ahead unless asked
    source.prepare(SPEC)
    _until(lambda: len(orb.machines) == 2)
    (ahead,) = set(orb.machines) - {first.name}
    assert made_by(orb, ahead).startswith("orb-prefetch")
    assert ("ready", ahead) not in hooks.events  # made and waited for, nothing else
    second = p.obtain(SPEC)
    assert second.name == ahead
    assert hooks.events[-2:] == [("provision", ahead), ("ready", ahead)]
    assert hooks.threads == {threading.current_thread().name}  # hooks never run on a prefetch thread
    third = p.obtain(SPEC)  # nothing prepared: made now
    assert made_by(orb, third.name) == threading.current_thread().name
    p.close()
    assert len(orb.machines) == 3
    assert (p.stats.created, p.stats.deleted) == (3, 0)


def test_nothing_is_made_ahead_for_a_spec_not_made_yet() -> None:
    """The first machine of a spec may build its base and run provision hooks: on the test's thread."""
    orb, hooks = ScriptedOrb(), Hooks()
    p, source = prefetching(orb, hooks)
    source.prepare(SPEC)
    first = p.obtain(SPEC)
    assert made_by(orb, first.name) == threading.current_thread().name
    p.close()  # waits for anything made ahead: there must be nothing
    assert orb.count("create") == 1
    assert (p.stats.created, p.stats.deleted) == (1, 0)


class Based:
    """A source whose machines come from a base: ``warm`` (recorded, with its thread) makes it."""

    def __init__(self, inner: Any, *, fails: bool = False) -> None:
        self.inner, self.fails = inner, fails
        self.warmed: list[tuple[MachineSpec, str]] = []

    def warm(self, spec: MachineSpec) -> bool:
        self.warmed.append((spec, threading.current_thread().name))
        if self.fails:
            raise RuntimeError("the base cannot be built")
        return True

    def make(self, spec: MachineSpec, name: str) -> Any:
        return self.inner.make(spec, name)

    def close(self, *, wait: bool = True) -> None:
        self.inner.close(wait=wait)


def test_once_a_base_exists_the_first_machine_is_made_beside_those_asked_for_then() -> None:
    """``on_warm`` runs on the test's thread after the base, before the first machine: what it
    prepares (the first test's machine among them) is made side by side."""
    orb, hooks = ScriptedOrb(), ThreadHooks()
    p = make(orb, hooks)
    based = Based(p.source)
    asked: list[tuple[MachineSpec, str, int]] = []

    def on_warm(spec: MachineSpec) -> None:
        asked.append((spec, threading.current_thread().name, orb.count("create")))
        source.prepare(spec, 3, extra=1)  # the first test's, the next one's and a shared machine

    source = PrefetchSource(p.context, based, limit=2, on_warm=on_warm)
    p.source = source
    here = threading.current_thread().name
    first = p.obtain(SPEC)
    assert based.warmed == [(SPEC, here)]
    assert asked == [(SPEC, here, 0)]  # after the base, before any machine
    assert made_by(orb, first.name).startswith("orb-prefetch")  # one of the three made ahead
    _until(lambda: len(orb.machines) == 3)  # extra=1: one beyond the limit of 2
    second, third = p.obtain(SPEC), p.obtain(SPEC)
    assert {made_by(orb, m.name)[:12] for m in (second, third)} == {"orb-prefetch"}
    fourth = p.obtain(SPEC)  # nothing left ahead, and on_warm is not called again
    assert made_by(orb, fourth.name) == here
    assert len(asked) == 1
    assert len(based.warmed) == 1
    assert hooks.threads == {here}  # hooks still run at hand-out, on the test's thread
    p.close()
    assert orb.count("create") == 4


def test_a_base_that_cannot_be_built_fails_the_first_request_and_nothing_is_made_ahead() -> None:
    orb, hooks = ScriptedOrb(), Hooks()
    p = make(orb, hooks)
    calls: list[MachineSpec] = []
    source = PrefetchSource(p.context, Based(p.source, fails=True), limit=2, on_warm=calls.append)
    p.source = source
    with pytest.raises(RuntimeError, match="base cannot be built"):
        p.obtain(SPEC)
    source.prepare(SPEC, 2)
    p.close()
    assert calls == []
    assert orb.count("create") == 0


def test_without_a_base_nothing_is_made_ahead_before_the_first_machine() -> None:
    """A created machine (``warm`` says ``False``): ``on_warm`` never runs, the first is the test's own."""
    orb, hooks = ScriptedOrb(), Hooks()
    p = make(orb, hooks)
    calls: list[MachineSpec] = []
    source = PrefetchSource(p.context, p.source, limit=2, on_warm=calls.append)
    p.source = source
    first = p.obtain(SPEC)
    assert made_by(orb, first.name) == threading.current_thread().name
    source.prepare(SPEC)  # made one: now it may
    second = p.obtain(SPEC)
    assert made_by(orb, second.name).startswith("orb-prefetch")
    assert calls == []
    p.close()


def test_prepare_asks_for_a_count_per_spec_not_a_machine_per_call() -> None:
    orb, hooks = ScriptedOrb(), Hooks()
    gate = gated(orb)
    p, source = prefetching(orb, hooks)
    made = {p.obtain(SPEC).name, p.obtain(OTHER).name}
    gate.clear()
    for _ in range(3):
        source.prepare(SPEC)
    source.prepare(OTHER)
    gate.set()
    taken = p.obtain(OTHER)
    assert made_by(orb, taken.name).startswith("orb-prefetch")
    p.close()  # waits for everything made ahead, then deletes what nobody took
    assert orb.count("create") == 4  # two now, one of each spec ahead, however often prepared
    assert set(orb.machines) == made | {taken.name}  # the unused SPEC machine was deleted


def test_a_request_waits_for_the_machine_being_made_instead_of_making_another() -> None:
    orb, hooks = ScriptedOrb(), Hooks()
    gate = gated(orb)
    p, source = prefetching(orb, hooks)
    first = p.obtain(SPEC)
    gate.clear()
    source.prepare(SPEC)
    threading.Timer(0.2, gate.set).start()
    machine = p.obtain(SPEC)
    assert made_by(orb, machine.name).startswith("orb-prefetch")
    assert orb.count("create") == 2
    p.close()
    assert set(orb.machines) == {first.name, machine.name}


def test_a_failed_prefetch_is_reported_and_the_machine_made_now() -> None:
    orb, hooks = ScriptedOrb(), Hooks()
    p, source = prefetching(orb, hooks)
    first = p.obtain(SPEC)
    orb.create_faults = ["bad-image"]
    source.prepare(SPEC)
    _until(lambda: orb.count("create") == 2)
    machine = p.obtain(SPEC)
    assert made_by(orb, machine.name) == threading.current_thread().name
    assert any("a prefetched machine failed" in line for _, line in p.stats.take_events())
    p.close()
    assert set(orb.machines) == {first.name, machine.name}


def test_close_waits_for_machines_being_made_and_deletes_them() -> None:
    orb, hooks = ScriptedOrb(), Hooks()
    gate = gated(orb)
    p, source = prefetching(orb, hooks)
    made = {p.obtain(SPEC).name, p.obtain(OTHER).name}
    gate.clear()
    source.prepare(SPEC)
    source.prepare(OTHER)
    threading.Timer(0.2, gate.set).start()
    p.close()
    assert set(orb.machines) == made
    assert (p.stats.created, p.stats.deleted) == (4, 2)
    source.prepare(SPEC)  # after close: nothing is made ahead (the pool is shut: it would raise)
    assert orb.count("create") == 4


def test_interrupted_wait_still_deletes_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    orb, hooks = ScriptedOrb(), Hooks()
    gate = gated(orb)
    p, source = prefetching(orb, hooks)
    first = p.obtain(SPEC)
    gate.clear()
    source.prepare(SPEC)

    def interrupted(self: Future[Any], timeout: Optional[float] = None) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Future, "result", interrupted)  # Ctrl-C while the test waits for it
    with pytest.raises(KeyboardInterrupt):
        p.obtain(SPEC)
    monkeypatch.undo()
    gate.set()
    p.close()
    assert list(orb.machines) == [first.name]  # made after the interrupt, then deleted


def test_count_and_limit_bound_the_machines_made_ahead() -> None:
    orb, hooks = ScriptedOrb(), Hooks()
    gate = gated(orb)
    p, source = prefetching(orb, hooks, limit=3)
    made = {p.obtain(SPEC).name, p.obtain(OTHER).name}
    gate.clear()
    source.prepare(SPEC, 2)
    source.prepare(SPEC, 2)  # still two of SPEC
    assert source.ahead == 2
    source.prepare(OTHER, 5)  # only one more fits under the limit
    assert source.ahead == 3
    gate.set()
    first, second = p.obtain(SPEC), p.obtain(SPEC)
    assert {first.name, second.name}.isdisjoint(made)
    assert all(made_by(orb, m.name).startswith("orb-prefetch") for m in (first, second))
    assert source.ahead == 1
    p.close()
    assert orb.count("create") == 5  # two now, three ahead; the unused OTHER one was deleted
    assert set(orb.machines) == made | {first.name, second.name}


def test_a_spec_whose_hooks_failed_is_not_made_ahead_again() -> None:
    orb, hooks = ScriptedOrb(), Hooks(fail_provision=True)
    p, source = prefetching(orb, hooks)
    for _ in range(2):  # each test makes its machine on its own thread and reports the failure
        with pytest.raises(RuntimeError, match="provisioning failed"):
            p.obtain(SPEC)
        source.prepare(SPEC)
        assert source.ahead == 0
    assert orb.count("create") == 2
    assert {made_by(orb, call.args[1]) for call in orb.asked("create")} == {threading.current_thread().name}
    p.close()
    assert orb.machines == {}


class _FailsWithPytest(Hooks):
    def provision(self, machine: Any) -> None:
        super().provision(machine)
        pytest.fail("provisioning failed", pytrace=False)  # an OutcomeException, not an Exception


def test_a_hook_that_calls_pytest_fail_stops_the_making_ahead_too() -> None:
    orb = ScriptedOrb()
    p, source = prefetching(orb, _FailsWithPytest())
    with pytest.raises(pytest.fail.Exception, match="provisioning failed"):
        p.obtain(SPEC)
    source.prepare(SPEC)
    assert source.ahead == 0
    p.close()
    assert orb.machines == {}


def test_hooks_failing_later_delete_the_machines_made_ahead_of_that_spec() -> None:
    orb, hooks = ScriptedOrb(), Hooks()
    p, source = prefetching(orb, hooks)
    first = p.obtain(SPEC)
    source.prepare(SPEC, 2)
    _until(lambda: orb.count("create") == 3)
    hooks.fail_provision = True
    with pytest.raises(RuntimeError, match="provisioning failed"):
        p.obtain(SPEC)  # takes a machine made ahead; its hooks fail: the other one is deleted
    _until(lambda: set(orb.machines) == {first.name})
    source.prepare(SPEC)
    assert source.ahead == 0
    with pytest.raises(RuntimeError, match="provisioning failed"):
        p.obtain(SPEC)
    p.close()
    assert set(orb.machines) == {first.name}
    assert orb.count("create") == 4


class Closing:
    """A source that records, when it is closed, the machines that exist then."""

    def __init__(self, inner: Any, orb: FakeOrb) -> None:
        self.inner, self.orb = inner, orb
        self.closed_with: Optional[set[str]] = None

    def make(self, spec: MachineSpec, name: str) -> Any:
        return self.inner.make(spec, name)

    def warm(self, spec: MachineSpec) -> bool:
        return bool(self.inner.warm(spec))

    def close(self, *, wait: bool = True) -> None:
        self.closed_with = set(self.orb.machines)
        self.inner.close(wait=wait)


def test_after_ctrl_c_the_inner_source_is_closed_only_once_the_machines_being_made_are_done() -> None:
    """The inner source may hold a reused base's users lock: a clone under way still needs the base."""
    orb, hooks = ScriptedOrb(), Hooks()
    gate = gated(orb)
    p = make(orb, hooks)
    inner = Closing(p.source, orb)
    source = PrefetchSource(p.context, inner, limit=2)  # type: ignore[arg-type]
    p.source = source
    first = p.obtain(SPEC)
    gate.clear()
    source.prepare(SPEC)
    _until(lambda: len(orb.asked("create")) == 2)  # the make started: close cannot cancel it
    p.close(wait=False)  # returns at once
    assert inner.closed_with is None  # the machine being made still needs what the source holds
    gate.set()
    _until(lambda: inner.closed_with is not None)
    assert inner.closed_with == {first.name}  # made, deleted, and only then the source closed
