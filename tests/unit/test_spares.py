"""spares.py against the in-memory fake orbctl of test_provisioner: spares made ahead, taken, deleted."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Optional

import pytest
from test_provisioner import SPEC, FakeOrb, Hooks, make

from pytest_orbstack.machine import Machine
from pytest_orbstack.provisioner import Provisioner
from pytest_orbstack.spares import MAX_SPARES, SpareSource


class GatedOrb(FakeOrb):
    """``create`` from a spare thread waits for ``gate``; every create is recorded with its thread."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.created_by: dict[str, str] = {}

    def create(self, image: str, name: str, **kwargs: Any) -> None:
        if threading.current_thread().name.startswith("orb-spare"):
            assert self.gate.wait(timeout=10)
        super().create(image, name, **kwargs)
        self.created_by[name] = threading.current_thread().name


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


def with_spares(orb: FakeOrb, hooks: Hooks, count: int = 1) -> Provisioner:
    p = make(orb, hooks)
    p.source = SpareSource(p, p.source, count)
    return p


def test_a_second_request_starts_a_spare_and_the_third_takes_it() -> None:
    orb, hooks = GatedOrb(), ThreadHooks()
    p = with_spares(orb, hooks)
    first = p.obtain(SPEC)
    time.sleep(0.05)
    assert list(orb.machines) == [first.name]  # one request: nothing made ahead
    second = p.obtain(SPEC)
    _until(lambda: len(orb.machines) == 3)
    (spare,) = set(orb.machines) - {first.name, second.name}
    assert orb.created_by[spare].startswith("orb-spare")
    third = p.obtain(SPEC)
    assert third.name == spare
    assert ("provision", spare) in hooks.events
    assert ("ready", spare) in hooks.events
    assert hooks.threads == {threading.current_thread().name}  # hooks never run on a spare thread
    _until(lambda: len(orb.machines) == 4)  # the next spare
    p.close()
    assert set(orb.machines) == {first.name, second.name, third.name}
    assert (p.stats.created, p.stats.deleted) == (4, 1)


def test_a_request_waits_for_a_spare_still_being_made() -> None:
    orb, hooks = GatedOrb(), ThreadHooks()
    p = with_spares(orb, hooks)
    p.obtain(SPEC)
    orb.gate.clear()  # the spare started by the next request waits
    p.obtain(SPEC)
    threading.Timer(0.2, orb.gate.set).start()
    third = p.obtain(SPEC)
    assert orb.created_by[third.name].startswith("orb-spare")
    assert orb.calls.count("create") <= 4  # no machine of its own while a spare was on its way
    p.close()
    assert len(orb.machines) == 3


def test_a_failed_spare_is_reported_and_the_machine_made_now() -> None:
    orb, hooks = GatedOrb(), Hooks()
    p = with_spares(orb, hooks)
    p.obtain(SPEC)
    orb.create_faults = ["", "bad-image"]  # the second request's create works, its spare's fails
    second = p.obtain(SPEC)
    third = p.obtain(SPEC)
    assert third.name != second.name
    assert orb.created_by[third.name] == threading.current_thread().name
    assert any("a spare machine failed" in line for _, line in p.stats.take_events())
    p.close()
    assert len(orb.machines) == 3


def test_close_waits_for_spares_being_made_and_deletes_them() -> None:
    orb, hooks = GatedOrb(), Hooks()
    p = with_spares(orb, hooks, count=2)
    p.obtain(SPEC)
    orb.gate.clear()
    p.obtain(SPEC)
    threading.Timer(0.2, orb.gate.set).start()
    p.close()  # waits for both spares, then deletes them
    assert len(orb.machines) == 2
    assert (p.stats.created, p.stats.deleted) == (4, 2)
    p.obtain(SPEC)  # after close: made now, nothing made ahead
    time.sleep(0.05)
    assert len(orb.machines) == 3


@pytest.mark.parametrize("count", [0, MAX_SPARES + 1])
def test_count_out_of_range(count: int) -> None:
    p = make(FakeOrb())
    with pytest.raises(ValueError, match=f"1 to {MAX_SPARES}"):
        SpareSource(p, p.source, count)


def test_interrupted_wait_for_a_spare_still_deletes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    orb, hooks = GatedOrb(), Hooks()
    p = with_spares(orb, hooks)
    p.obtain(SPEC)
    orb.gate.clear()
    p.obtain(SPEC)

    def interrupted(self: Future[Any], timeout: Optional[float] = None) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Future, "result", interrupted)  # Ctrl-C while the test waits for the spare
    with pytest.raises(KeyboardInterrupt):
        p.obtain(SPEC)
    monkeypatch.undo()
    orb.gate.set()
    p.close()
    assert len(orb.machines) == 2  # the spare being waited for was made, then deleted
