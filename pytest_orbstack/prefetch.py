"""Prefetch: the machines the next tests will need are made while the current test runs.

:class:`PrefetchSource` wraps the provisioner's
:class:`~pytest_orbstack.sources.MachineSource` (create or clone).
:meth:`PrefetchSource.prepare` makes sure ``count`` machines of a spec are
ready or on their way, each made in a background thread, never more than
``limit`` at once over every spec (``extra`` more for the round that also asks
for the current test's own machine or the process's shared one), and none
before machines of that spec can be made off the test's thread: once the
process made one of that spec itself, or, with the clone fast path, once the
spec's base exists
(:meth:`~pytest_orbstack.sources.MachineSource.warm`; the base build and its
provision hooks stay on the test's thread).  Right after a spec becomes
ready so, ``on_warm`` is called on the thread that asked for the machine
(the test's, or one of ``orb_machines.create_many``'s): the plugin then asks
for the machines of the current test and of those coming, so that they are
cloned side by side with the test's own instead of one after the other.
The plugin also calls :meth:`prepare` when a test starts its call phase, for
the tests it knows are coming (see :mod:`pytest_orbstack.lookahead`).
The next request for a spec takes the oldest of its machines, waiting for it
if it is not ready yet, so nothing is made twice.  Hooks still run
when a machine is handed out, on the caller's thread: a prefetched machine is
only made and waited for.  One that failed is reported as a progress line and
the machine is made the usual way.  Once a machine of a spec failed in its
hooks (:meth:`PrefetchSource.hooks_failed`), no machine of that spec is made
ahead again (those made ahead are deleted): each test that needs one makes it
on its own thread and reports the failure as usual.  At the end of the session
:meth:`PrefetchSource.close` deletes any nobody took (a test skipped in its
setup, a run stopped early).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Optional

from pytest_orbstack.errors import first_line

if TYPE_CHECKING:
    from pytest_orbstack.context import MakeContext
    from pytest_orbstack.models import MachineSpec
    from pytest_orbstack.sources import MachineSource, Made

__all__ = ["PrefetchSource"]


class PrefetchSource:
    """A :class:`~pytest_orbstack.sources.MachineSource` that can make a machine ahead of its request."""

    def __init__(
        self,
        context: MakeContext,
        inner: MachineSource,
        *,
        limit: int = 1,
        on_warm: Optional[Callable[[MachineSpec], None]] = None,
    ) -> None:
        self._c = context
        #: the source that really makes machines
        self.inner = inner
        #: the most machines made ahead (ready or on their way) at once, over every spec
        self.limit = limit
        #: called on the asking thread once machines of a spec can be made ahead (its base exists)
        self.on_warm = on_warm
        self._lock = threading.Lock()
        self._ahead: dict[MachineSpec, collections.deque[Future[Made]]] = {}
        #: specs machines of which can be made ahead: the process made one, or their base exists
        self._made: set[MachineSpec] = set()
        #: specs a machine of which failed in its hooks: never made ahead again
        self._failed: set[MachineSpec] = set()
        # up to two beyond the limit: the current test's machine and the shared one (see prepare)
        self._pool = ThreadPoolExecutor(max_workers=max(1, limit) + 2, thread_name_prefix="orb-prefetch")
        self._closed = False

    def prepare(self, spec: MachineSpec, count: int = 1, *, extra: int = 0) -> None:
        """Make sure ``count`` machines of ``spec`` are ready or on their way, within :attr:`limit`
        (+ ``extra``, at most 2: the current test's own machine and the process's shared one,
        asked for beside those of the tests coming).

        Only for a spec this process has made a machine of, or whose base
        exists: the first one of a spec may build its base and run provision
        hooks, which stay on the test's thread.
        """
        with self._lock:
            if self._closed or spec not in self._made or spec in self._failed:
                return
            queue = self._ahead.setdefault(spec, collections.deque())
            room = self.limit + extra - sum(len(q) for q in self._ahead.values())
            for _ in range(min(count - len(queue), room)):
                queue.append(self._pool.submit(self._make_ahead, spec))

    @property
    def ahead(self) -> int:
        """Machines made ahead and not taken yet (ready or on their way)."""
        with self._lock:
            return sum(len(q) for q in self._ahead.values())

    def warm(self, spec: MachineSpec) -> bool:
        return self.inner.warm(spec)

    def make(self, spec: MachineSpec, name: str) -> Made:
        self._warm(spec)
        with self._lock:
            queue = self._ahead.get(spec)
            ahead = queue.popleft() if queue else None
        made = self._take(spec, ahead) if ahead is not None else None
        if made is None:
            made = self.inner.make(spec, name)
        with self._lock:
            self._made.add(spec)
        return made

    def hooks_failed(self, spec: MachineSpec) -> None:
        """A machine of ``spec`` failed in its hooks: make none ahead again, delete those made ahead."""
        with self._lock:
            if spec in self._failed:
                return
            self._failed.add(spec)
            pending = self._ahead.pop(spec, collections.deque())
        what = f"no more machines made ahead for {spec.describe()}: its hooks failed"
        self._c.events.event(what, verbose=True)
        for future in pending:
            future.cancel()
            future.add_done_callback(functools.partial(self._discard, spec))

    def close(self, *, wait: bool = True) -> None:
        """Delete the machines nobody took; those still being made are deleted once they exist.

        ``wait``: return only when that is done (else, after Ctrl-C, return at
        once: the threads finish their make, delete it, and the process exits
        after them).  The inner source is closed only after them either way: a
        clone under way still needs its base, and the users lock that keeps it.
        """
        with self._lock:
            self._closed = True
            pending = [(spec, future) for spec, queue in self._ahead.items() for future in queue]
            self._ahead = {}
        for spec, future in pending:
            future.cancel()  # not started yet: never made
            future.add_done_callback(functools.partial(self._discard, spec))  # now, or once made
        if wait:
            self._pool.shutdown(wait=True)
            self.inner.close(wait=True)
            return

        def close_after_makes() -> None:
            self._pool.shutdown(wait=True)
            self.inner.close(wait=False)

        threading.Thread(target=close_after_makes, name="orb-prefetch-close").start()  # not a daemon

    def _warm(self, spec: MachineSpec) -> None:
        """Before the first machine of ``spec``: its base, then :attr:`on_warm` (machines made ahead)."""
        with self._lock:
            if self._closed or spec in self._made or spec in self._failed:
                return
        if not self.inner.warm(spec):  # raises as the make itself would (a base that cannot be built)
            return
        with self._lock:
            self._made.add(spec)
        if self.on_warm is None:
            return
        try:
            self.on_warm(spec)
        except Exception as exc:  # never this test's problem: its machine is made the usual way
            self._c.events.event(f"could not make machines ahead: {first_line(exc)}", verbose=True)

    def _make_ahead(self, spec: MachineSpec) -> Made:
        name = self._c.new_name()
        made = self.inner.make(spec, name)
        return dataclasses.replace(made, name=made.name or name)

    def _take(self, spec: MachineSpec, future: Future[Made]) -> Optional[Made]:
        try:
            made = future.result()
        except Exception as exc:  # the source deleted what it made; make one the usual way
            self._c.events.event(
                f"a prefetched machine failed, making one now: {first_line(exc)}", verbose=True
            )
            return None
        except BaseException:  # Ctrl-C while waiting: the machine is nobody's, delete it once made
            future.add_done_callback(functools.partial(self._discard, spec))
            raise
        self._c.events.event(f"took prefetched machine {made.name}", verbose=True)
        return made

    def _discard(self, spec: MachineSpec, future: Future[Made]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # never made, or the source deleted what it made
        made = future.result()
        name = made.name or made.info.name
        self._c.events.record_created(made.create_seconds, made.ready_seconds)
        self._c.events.event(f"deleting unused prefetched machine {name}", verbose=True)
        self._c.delete_quietly(name)
