"""Spare machines (``--orb-spares N``): the next machine of a spec is made while tests run.

:class:`SpareSource` wraps the provisioner's :class:`~pytest_orbstack.provisioner.MachineSource`
(create or clone).  Once a process has asked for a second machine of one spec
(typically ``orb_vm`` and then an ``orb_vm_fresh``), it keeps ``N`` more of that
spec being made in background threads.  The next request for the spec takes
the oldest spare, waiting for it if it is not ready yet, and another one is
started.  Hooks still run when a machine is handed out, on the caller's thread:
a spare is only made and waited for, nothing else.  A spare that failed is
reported as a progress line and the machine is made the usual way.  At the end
of the session :meth:`SpareSource.close` deletes the spares nobody took.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Optional

from pytest_orbstack.errors import first_line

if TYPE_CHECKING:
    from pytest_orbstack.provisioner import MachineSource, MachineSpec, Made, Provisioner

__all__ = ["MAX_SPARES", "SpareSource"]

#: The most spares per spec a process may keep (``--orb-spares``).
MAX_SPARES = 8


class SpareSource:
    """A :class:`~pytest_orbstack.provisioner.MachineSource` that keeps ``count`` machines of a spec ahead."""

    def __init__(self, provisioner: Provisioner, inner: MachineSource, count: int) -> None:
        if not 1 <= count <= MAX_SPARES:
            raise ValueError(f"spares must be 1 to {MAX_SPARES}, got {count}")
        self._p = provisioner
        #: the source that really makes machines
        self.inner = inner
        self.count = count
        self._lock = threading.Lock()
        self._asked: dict[MachineSpec, int] = {}
        self._spares: dict[MachineSpec, deque[Future[Made]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=MAX_SPARES, thread_name_prefix="orb-spare")
        self._closed = False

    def make(self, spec: MachineSpec, name: str) -> Made:
        with self._lock:
            asked = self._asked[spec] = self._asked.get(spec, 0) + 1
            queue = self._spares.get(spec)
            taken = queue.popleft() if queue else None
        made = self._take(taken) if taken is not None else None
        if made is None:
            made = self.inner.make(spec, name)
        if asked >= 2:  # this process keeps needing this spec: make the next one now
            self._refill(spec)
        return made

    def close(self) -> None:
        """Delete the spares nobody took; wait for those still being made, then delete them too."""
        with self._lock:
            self._closed = True
            pending = [future for queue in self._spares.values() for future in queue]
            self._spares.clear()
        for future in pending:
            future.cancel()  # not started yet: never made
            future.add_done_callback(self._discard)  # now if done, else when its make ends
        self._pool.shutdown(wait=True)
        self.inner.close()

    def _make_spare(self, spec: MachineSpec) -> Made:
        name = self._p.new_name()
        made = self.inner.make(spec, name)
        return dataclasses.replace(made, name=made.name or name)

    def _refill(self, spec: MachineSpec) -> None:
        with self._lock:
            if self._closed:
                return
            queue = self._spares.setdefault(spec, deque())
            while len(queue) < self.count:
                queue.append(self._pool.submit(self._make_spare, spec))

    def _take(self, future: Future[Made]) -> Optional[Made]:
        try:
            made = future.result()
        except Exception as exc:  # the source deleted what it made; make one the usual way
            self._p.stats.event(f"a spare machine failed, making one now: {first_line(exc)}")
            return None
        except BaseException:  # Ctrl-C while waiting: the spare is nobody's, delete it once made
            future.add_done_callback(self._discard)
            raise
        self._p.stats.event(f"took spare machine {made.name}", verbose=True)
        return made

    def _discard(self, future: Future[Made]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        made = future.result()
        if made.name is None:
            return
        stats = self._p.stats
        stats.record_created(made.create_seconds, made.ready_seconds)
        try:
            self._p.delete_name(made.name)
        except Exception as exc:
            stats.record_failed_delete(made.name, first_line(exc))
            stats.event(f"could not delete spare machine {made.name}: {first_line(exc)}")
            return
        stats.record_deleted()
        stats.event(f"deleted unused spare machine {made.name}", verbose=True)
