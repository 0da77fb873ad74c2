"""The life of one machine: name, make, readiness, hooks, hand out; then delete or keep.

:meth:`Provisioner.obtain` is the one way machines are made.  How a machine
comes to exist is the job of a :class:`~pytest_orbstack.sources.MachineSource`;
the default :class:`~pytest_orbstack.sources.CreateSource` runs ``orbctl create``.
Another source (for example a clone of a provisioned base machine) plugs in
without changing the fixtures.  Sources get the provisioner's
:class:`~pytest_orbstack.context.MakeContext`, not the provisioner.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from pytest_orbstack import cloudinit, naming
from pytest_orbstack.basebuild import VolatileWarner
from pytest_orbstack.breaker import AddressBreaker
from pytest_orbstack.context import REAL_TIME, Limits, MakeContext, Namer, Time
from pytest_orbstack.deleter import BackgroundDeleter, InlineDeleter
from pytest_orbstack.errors import first_line
from pytest_orbstack.events import Events, Silent
from pytest_orbstack.machine import Machine
from pytest_orbstack.prefetch import PrefetchSource
from pytest_orbstack.retry import Retrier
from pytest_orbstack.sources import CreateSource, MachineHooks, MachineSource, clone_ready

if TYPE_CHECKING:
    from os import PathLike

    from pytest_orbstack.models import MachineInfo, MachineSpec
    from pytest_orbstack.orbctl import Orbctl

__all__ = ["MachineFactory", "Provisioner"]


class Provisioner:
    """Makes, hands out and removes the machines of one process (one xdist worker).

    It is the :class:`~pytest_orbstack.machine.MachineManager` of every machine it hands out.
    """

    def __init__(
        self,
        client: Orbctl,
        *,
        namer: Namer,
        limits: Limits,
        hooks: MachineHooks,
        events: Optional[Events] = None,
        breaker: Optional[AddressBreaker] = None,
        time: Time = REAL_TIME,
    ) -> None:
        events = events if events is not None else Silent()
        #: names the machines of this process; knows the run id and the worker
        self.namer = namer
        #: stops making machines once OrbStack gives them no address (shared run-wide by a flag file)
        self.breaker = breaker if breaker is not None else AddressBreaker()
        retry = Retrier(
            limits.policy,
            events=events,
            sleep=time.sleep,
            on_failure=lambda exc: self.breaker.failed(exc, ""),
        )
        #: what sources and the base manager are handed
        self.context = MakeContext(client, namer, limits, events, retry, time)
        self.hooks = hooks
        #: how machines come to exist; replace to change the strategy
        self.source: MachineSource = CreateSource(self.context)
        #: how machines a test is done with are deleted; :meth:`delete_in_background` switches
        self.deleter: Union[InlineDeleter, BackgroundDeleter] = InlineDeleter(self.delete_quietly)
        self._lock = threading.Lock()
        self._clones: dict[str, list[Machine]] = {}
        #: the /tmp-or-/run warning of provision hooks, once per process (the base builder's too)
        self.warn_volatile = VolatileWarner(self.context.events)

    @property
    def client(self) -> Orbctl:
        return self.context.client

    @property
    def ready_timeout(self) -> float:
        return self.context.limits.ready_timeout

    @property
    def stats(self) -> Events:
        return self.context.events

    # --- the life cycle ----------------------------------------------------------------------

    def obtain(self, spec: MachineSpec) -> Machine:
        """A new machine for ``spec``: made, ready, provisioned, announced to the ready hook."""
        self.breaker.check()
        name = self.new_name()
        try:
            made = self.source.make(spec, name)
        except Exception as exc:
            self.breaker.failed(exc, spec.image)
            raise
        self.breaker.succeeded()
        name = made.name or name  # a machine made ahead has a name of its own
        machine = Machine(self, name, spec, made.info)
        events = self.context.events
        try:
            if spec.user_data is not None and not made.provisioned:  # a clone's base was checked
                cloudinit.check(machine, self.ready_timeout - made.ready_seconds, events.event)
            if not made.provisioned:
                if made.instead_of_base:
                    machine.watch_volatile()
                self.hooks.provision(machine)
                if made.instead_of_base:
                    self.warn_volatile(machine.volatile_commands())
            self.hooks.ready(machine)
        except BaseException as exc:
            self.delete_quietly(machine)
            interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))
            if not interrupted and isinstance(self.source, PrefetchSource):  # pytest.fail() included
                self.source.hooks_failed(spec)  # they would fail again: make none ahead
            raise
        events.record_created(made.create_seconds, made.ready_seconds)
        events.event(
            f"created {name} ({spec.describe()}) in {made.create_seconds:.1f}s, "
            f"ready {made.ready_seconds:.1f}s later",
            verbose=True,
        )
        return machine

    def delete_in_background(self) -> None:
        """Released machines are deleted on background threads, off the test's time."""
        self.deleter = BackgroundDeleter(self.delete_quietly)

    def close(self, *, wait: bool = True) -> None:
        """The session ends: the source lets go of what it holds (unused prefetched machines are deleted),
        then the deletes still under way finish.

        ``wait=False`` (after Ctrl-C): do not wait for machines still being made.  Deletes are
        waited for even then, as a teardown would have waited for them: a second Ctrl-C stops
        that, and the run's final purge or the watchdog deletes what is left.
        """
        try:
            self.source.close(wait=wait)
        finally:
            self.deleter.close()

    def release(self, machine: Machine, *, keep: bool) -> None:
        """The end of a machine's fixture: teardown hook, then delete it (with its clones) or keep it.

        Every machine is deleted (or kept) even when a teardown hook or a
        warning turned into an error raises: the error comes after.
        """
        with self._lock:
            clones = self._clones.pop(machine.name, [])
        with contextlib.ExitStack() as stack:
            stack.callback(self._release_one, machine, keep)
            for clone in clones:
                stack.callback(self.release, clone, keep=keep)

    def _release_one(self, machine: Machine, keep: bool) -> None:
        if machine.deleted:
            return
        try:
            try:
                self.hooks.teardown(machine)
            except Exception as exc:
                warnings.warn(
                    f"pytest_orbstack_machine_teardown failed for {machine.name}: {exc!r}", stacklevel=1
                )
        finally:
            if keep:
                self._keep(machine)
            else:
                self.deleter.submit(machine)

    def _keep(self, machine: Machine) -> None:
        """Keep ``machine`` for debugging: renamed ``pytest-kept-...`` so that no run's purge deletes it."""
        new = naming.kept_name(machine.name)
        events = self.context.events
        try:
            self.context.retry.call(
                f"rename of {machine.name}", lambda: self.client.rename(machine.name, new)
            )
        except Exception as exc:
            events.record_kept(machine.name)
            events.event(
                f"kept {machine.name} for debugging, but renaming it to {new} failed "
                f"({first_line(exc)}): a later run's purge will delete it"
            )
            return
        machine.deleted = True  # gone under this name: the handle must not act on it any more
        events.record_kept(new)
        events.event(f"kept {machine.name} for debugging, renamed {new}")

    def delete_quietly(self, machine: Machine) -> None:
        """Delete at teardown: a failure is recorded for the summary, not raised."""
        try:
            self.delete(machine)
        except Exception as exc:
            self.context.events.record_failed_delete(machine.name, first_line(exc))
            self.context.events.event(f"could not delete {machine.name}: {first_line(exc)}")

    # --- what Machine delegates (MachineManager) ---------------------------------------------

    def delete(self, machine: Machine) -> None:
        if machine.deleted:
            return
        self.context.delete_recorded(machine.name)
        machine.deleted = True

    def wait_ready(self, machine: Machine, timeout: float, *, started: bool = False) -> MachineInfo:
        """Wait until ``machine`` is ready; ``started``: it was just started here (see readiness)."""
        return self.context.wait_ready(machine.name, timeout, started=started)

    def start(self, machine: Machine) -> MachineInfo:
        self.context.retry.call(f"start of {machine.name}", lambda: self.client.start(machine.name))
        return self.wait_ready(machine, self.ready_timeout, started=True)

    def stop(self, machine: Machine, *, force: bool = False) -> None:
        self.context.retry.call(
            f"stop of {machine.name}", lambda: self.client.stop(machine.name, force=force)
        )

    def restart(self, machine: Machine) -> MachineInfo:
        self.context.retry.call(f"restart of {machine.name}", lambda: self.client.restart(machine.name))
        return self.wait_ready(machine, self.ready_timeout, started=True)

    def new_name(self) -> str:
        return self.context.new_name()

    def clone(self, machine: Machine, copy: Machine) -> MachineInfo:
        """Clone ``machine`` as ``copy`` (``orbctl clone``), start it and wait until it is ready,
        all within the copy's overall deadline (``--orb-machine-timeout``); see :func:`clone_ready`."""
        with self._lock:
            # Registered first: a clone that fails or hangs half-way is still deleted with its
            # source (deleting a machine that never came to be counts as done).
            self._clones.setdefault(machine.name, []).append(copy)

        def gone() -> None:  # deleted at once: its source's release has nothing to do with it
            copy.deleted = True

        made = clone_ready(self.context, machine.name, copy.name, wake_up=False, gone=gone)
        self.context.events.record_created(made.create_seconds, made.ready_seconds)
        self.context.events.event(
            f"cloned {machine.name} as {copy.name} in {made.create_seconds:.1f}s", verbose=True
        )
        return made.info


class MachineFactory:
    """What the ``orb_machines`` fixture gives: makes machines for one test, deleted after it."""

    def __init__(
        self,
        obtain: Callable[[MachineSpec], Machine],
        release: Callable[[Machine], None],
        spec: Callable[[Mapping[str, Any]], MachineSpec],
    ) -> None:
        self._obtain_one = obtain
        self._release_machine = release
        #: the spec for the arguments given (``None`` = unset); validates them before any machine
        self._make_spec = spec
        self._lock = threading.Lock()
        #: every machine this factory made, in order
        self.machines: list[Machine] = []

    def _spec(
        self,
        image: Optional[str],
        arch: Optional[str],
        user: Optional[str],
        user_data: Union[str, PathLike[str], None],
    ) -> MachineSpec:
        return self._make_spec({"image": image, "arch": arch, "user": user, "user_data": user_data})

    def _obtain(self, spec: MachineSpec) -> Machine:
        machine = self._obtain_one(spec)
        with self._lock:
            self.machines.append(machine)
        return machine

    def create(
        self,
        image: Optional[str] = None,
        *,
        arch: Optional[str] = None,
        user: Optional[str] = None,
        user_data: Union[str, PathLike[str], None] = None,
    ) -> Machine:
        """A new ready machine; unset arguments come from the test's ``orb`` marker, then the options."""
        return self._obtain(self._spec(image, arch, user, user_data))

    def create_many(
        self,
        n: int,
        image: Optional[str] = None,
        *,
        arch: Optional[str] = None,
        user: Optional[str] = None,
        user_data: Union[str, PathLike[str], None] = None,
    ) -> list[Machine]:
        """``n`` new ready machines, made in parallel.  If one fails, the error is raised after all finish."""
        if n < 1:
            raise ValueError(f"create_many needs n >= 1, got {n}")
        spec = self._spec(image, arch, user, user_data)
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="orb-create") as pool:
            futures = [pool.submit(self._obtain, spec) for _ in range(n)]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]  # type: ignore[misc]
        return [f.result() for f in futures]

    def release_all(self) -> None:
        """Release every machine made so far (newest first); called when the test ends."""
        with self._lock:
            machines, self.machines = self.machines, []
        with contextlib.ExitStack() as stack:  # every machine is released even if one raises
            for machine in machines:
                stack.callback(self._release_machine, machine)
