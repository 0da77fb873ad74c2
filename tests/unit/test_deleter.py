"""deleter.py: deletes off the test's time, all done by the session's end."""

from __future__ import annotations

import threading
from typing import Any

from pytest_orbstack.deleter import BackgroundDeleter, InlineDeleter


class Gate:
    """A delete that blocks until released; records what it deleted."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.deleted: list[Any] = []

    def __call__(self, machine: Any) -> None:
        self.started.set()
        assert self.release.wait(30), "the test never released the delete"
        self.deleted.append(machine)


def submitted(count: int, *, threads: int) -> tuple[Gate, BackgroundDeleter]:
    """A deleter given machines ``m0``... ``m{count-1}``, once its first delete is held at the gate."""
    gate = Gate()
    deleter = BackgroundDeleter(gate, threads=threads)
    for i in range(count):
        deleter.submit(f"m{i}")
    assert gate.started.wait(10)
    return gate, deleter


def test_submit_returns_before_the_delete_and_close_waits_for_it() -> None:
    gate = Gate()
    deleter = BackgroundDeleter(gate)
    deleter.submit("m1")
    assert gate.started.wait(10)
    assert gate.deleted == []
    assert deleter.pending == 1
    closer = threading.Thread(target=deleter.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close returned while a delete was under way"
    gate.release.set()
    closer.join(30)
    assert not closer.is_alive()
    assert gate.deleted == ["m1"]
    assert deleter.pending == 0


def test_concurrency_is_bounded_and_every_machine_is_deleted() -> None:
    gate, deleter = submitted(5, threads=2)
    assert deleter.pending == 5  # two under way, three queued
    gate.release.set()
    deleter.close()
    assert sorted(gate.deleted) == [f"m{i}" for i in range(5)]


def test_close_without_wait_drops_the_deletes_not_started() -> None:
    gate, deleter = submitted(3, threads=1)
    deleter.close(wait=False)  # Ctrl-C: m1 and m2 are left to the run's purge
    gate.release.set()
    for _ in range(300):
        if deleter.pending == 0:
            break
        threading.Event().wait(0.01)
    assert gate.deleted == ["m0"]


def test_inline_deleter_deletes_at_once() -> None:
    done: list[str] = []
    deleter = InlineDeleter(done.append)  # type: ignore[arg-type]
    deleter.submit("m")  # type: ignore[arg-type]
    assert done == ["m"]
