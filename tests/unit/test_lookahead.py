"""lookahead.py: the tests this process runs next, with and without xdist."""

from __future__ import annotations

import collections
import contextlib
import queue
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from pytest_orbstack.lookahead import upcoming


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


def test_an_xdist_worker_without_a_readable_queue_knows_only_nextitem() -> None:
    config = SimpleNamespace(pluginmanager=_Plugins([object()]), workerinput={})
    _, items = _session(4, config)
    assert [i.nodeid for i in upcoming(items[0], items[1], 10)] == ["t1"]
