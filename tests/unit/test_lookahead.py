"""lookahead.py: the tests this process runs next, with and without xdist."""

from __future__ import annotations

import collections
import contextlib
import queue
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from fakes import collected

from pytest_orbstack.lookahead import Ahead, ahead, upcoming
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.settings import Settings

SETTINGS = Settings()  # the options' spec: ubuntu:22.04
SPEC = SETTINGS.spec
DEBIAN = MachineSpec("debian:12")


class Item(SimpleNamespace):
    pass


def _session(n: int, config: Any) -> tuple[Any, list[Item]]:
    session = SimpleNamespace(items=[], stash={})
    items = [Item(nodeid=f"t{i}", session=session, config=config) for i in range(n)]
    session.items = items
    session.stash = _Stash()
    return session, items


class _Stash(dict):  # type: ignore[type-arg]
    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(key, default)


class _Plugins:
    def __init__(self, plugins: list[Any]) -> None:
        self._plugins = plugins

    def get_plugins(self) -> list[Any]:
        return self._plugins


def test_without_xdist_the_items_after_nextitem_follow() -> None:
    config = SimpleNamespace(pluginmanager=_Plugins([]))
    _, items = _session(6, config)
    assert [i.nodeid for i in upcoming(items[1], items[2], 3)] == ["t2", "t3", "t4"]
    assert [i.nodeid for i in upcoming(items[4], items[5], 3)] == ["t5"]
    assert upcoming(items[5], None, 3) == []


def test_an_xdist_worker_reads_the_items_it_was_sent() -> None:
    torun: queue.Queue[Any] = queue.Queue()
    for index in (7, 2, 5):
        torun.put(index)
    interactor = SimpleNamespace(torun=torun, nextitem_index=4)
    config = SimpleNamespace(pluginmanager=_Plugins([object(), interactor]), workerinput={})
    _, items = _session(8, config)
    assert [i.nodeid for i in upcoming(items[0], items[4], 10)] == ["t4", "t7", "t2", "t5"]
    assert [i.nodeid for i in upcoming(items[0], items[4], 2)] == ["t4", "t7"]


def test_an_xdist_3_6_worker_test_queue_is_read_under_its_lock() -> None:
    class TestQueue:  # xdist 3.6+: inspected while its lock is held
        def __init__(self, items: list[Any]) -> None:
            self.items = collections.deque(items)
            self.locked = 0

        @contextlib.contextmanager
        def lock(self) -> Iterator[collections.deque[Any]]:
            self.locked += 1
            yield self.items

    torun = TestQueue([3, 1, "SHUTDOWN"])
    interactor = SimpleNamespace(torun=torun, nextitem_index=2)
    config = SimpleNamespace(pluginmanager=_Plugins([interactor]), workerinput={})
    _, items = _session(4, config)
    assert [i.nodeid for i in upcoming(items[0], items[2], 10)] == ["t2", "t3", "t1"]
    assert torun.locked == 1


class _Counted(list):  # type: ignore[type-arg]
    """A list that records which slices and how many elements were read from it."""

    def __init__(self, items: list[Any]) -> None:
        super().__init__(items)
        self.slices: list[slice] = []
        self.iterated = 0

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            self.slices.append(index)
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[Any]:
        for value in super().__iter__():
            self.iterated += 1
            yield value


def test_a_long_run_copies_only_the_window_for_each_test() -> None:
    """Once per test: what it reads must not grow with the run (it copied the rest of the run)."""
    config = SimpleNamespace(pluginmanager=_Plugins([]))
    session, items = _session(5000, config)
    session.items = counted = _Counted(items)
    assert [i.nodeid for i in upcoming(items[10], items[11], 3)] == ["t11", "t12", "t13"]
    assert [s.stop - s.start for s in counted.slices] == [3]  # type: ignore[operator]


def test_an_xdist_worker_reads_only_the_window_of_its_queue() -> None:
    class TestQueue:
        def __init__(self, items: list[Any]) -> None:
            self.items = _Counted(items)

        @contextlib.contextmanager
        def lock(self) -> Iterator[list[Any]]:
            yield self.items

    torun = TestQueue(list(range(2, 5000)))
    config = SimpleNamespace(
        pluginmanager=_Plugins([SimpleNamespace(torun=torun, nextitem_index=1)]), workerinput={}
    )
    _, items = _session(5000, config)
    assert [i.nodeid for i in upcoming(items[0], items[1], 4)] == ["t1", "t2", "t3", "t4"]
    assert torun.items.iterated <= 4


def test_an_xdist_worker_without_a_readable_queue_knows_only_nextitem() -> None:
    config = SimpleNamespace(pluginmanager=_Plugins([object()]), workerinput={})
    _, items = _session(4, config)
    assert [i.nodeid for i in upcoming(items[0], items[1], 10)] == ["t1"]


# --- what is made ahead ---------------------------------------------------------------------------

FRESH, SHARED, PLAIN = collected("orb_vm_fresh"), collected("orb_vm"), collected("tmp_path")


def test_fresh_machines_up_to_the_bound_in_the_order_of_their_tests() -> None:
    items = [PLAIN, collected("orb_vm_fresh", image="debian:12"), FRESH, FRESH, FRESH]
    found = ahead(items, SETTINGS, 2, shared=False)
    assert found == Ahead({DEBIAN: 1, SPEC: 1}, 0)
    assert list(found.counts) == [DEBIAN, SPEC]  # the nearest test's spec first
    assert ahead(items, SETTINGS, 0, shared=False) == Ahead({}, 0)


def test_tests_that_may_be_skipped_or_whose_marker_is_wrong_count_for_nothing() -> None:
    items = [collected("orb_vm_fresh", skip=True), collected("orb_vm_fresh", skipif=True), FRESH]
    assert ahead(items, SETTINGS, 2, shared=False) == Ahead({SPEC: 1}, 0)
    wrong = collected("orb_vm_fresh", image="not an image!")
    assert ahead([wrong, FRESH], SETTINGS, 2, shared=False) == Ahead({SPEC: 1}, 0)
    assert ahead([collected("orb_vm", skip=True)], SETTINGS, 2, shared=True) == Ahead({}, 0)


def test_the_shared_machine_is_one_beyond_the_bound_while_the_process_has_none() -> None:
    items = [FRESH, FRESH, FRESH, SHARED, SHARED]
    assert ahead(items, SETTINGS, 2, shared=True) == Ahead({SPEC: 3}, 1)  # looked past the bound
    assert ahead(items, SETTINGS, 2, shared=False) == Ahead({SPEC: 2}, 0)  # it exists already
    assert ahead([FRESH], SETTINGS, 2, shared=True) == Ahead({SPEC: 1}, 0)  # no coming test uses it


def test_the_run_can_say_the_shared_machine_will_be_needed_before_any_coming_test_does() -> None:
    assert ahead([FRESH], SETTINGS, 2, shared=True, surely_shared=True) == Ahead({SPEC: 2}, 1)
    assert ahead([FRESH], SETTINGS, 2, shared=False, surely_shared=True) == Ahead({SPEC: 1}, 0)
    debian = [collected("orb_vm_fresh", image="debian:12")]
    found = ahead(debian, SETTINGS, 2, shared=True, surely_shared=True)
    assert found == Ahead({SPEC: 1, DEBIAN: 1}, 1)


def test_the_current_tests_own_machine_is_needed_now_not_ahead() -> None:
    """``current``: the first item is the test being set up; its machine does not use the bound."""
    items = [FRESH, FRESH, FRESH, FRESH]
    assert ahead(items, SETTINGS, 2, shared=True, current=True) == Ahead({SPEC: 3}, 1)
    assert ahead(items, SETTINGS, 2, shared=True) == Ahead({SPEC: 2}, 0)
    both = [collected("orb_vm", "orb_vm_fresh"), FRESH, FRESH, FRESH]
    assert ahead(both, SETTINGS, 2, shared=True, current=True) == Ahead({SPEC: 4}, 2)
    assert ahead([SHARED, FRESH], SETTINGS, 2, shared=True, current=True) == Ahead({SPEC: 2}, 1)
    handed = collected("orb_vm_fresh")
    handed.funcargs = {"orb_vm_fresh": object()}  # has its machine: another spec is warming
    assert ahead([handed, FRESH], SETTINGS, 2, shared=False, current=True) == Ahead({SPEC: 1}, 0)
    maybe = [collected("orb_vm_fresh", skipif=True), FRESH]  # being set up: its skipif said no
    assert ahead(maybe, SETTINGS, 2, shared=False, current=True) == Ahead({SPEC: 2}, 1)
    assert ahead(maybe, SETTINGS, 2, shared=False) == Ahead({SPEC: 1}, 0)
