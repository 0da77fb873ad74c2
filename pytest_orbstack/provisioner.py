"""The life of one machine: name, create (retry / adopt), readiness, hooks, hand out; then delete or keep.

:meth:`Provisioner.obtain` is the one way machines are made.  How a machine
comes to exist is the job of a :class:`MachineSource`; the default
:class:`CreateSource` runs ``orbctl create``.  Another source (for example a
clone of a provisioned base machine) plugs in without changing the fixtures.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Union

from pytest_orbstack import cloudinit, naming
from pytest_orbstack.breaker import AddressBreaker
from pytest_orbstack.deadline import Deadline
from pytest_orbstack.deleter import BackgroundDeleter, InlineDeleter
from pytest_orbstack.errors import (
    MachineExistsError,
    MachineNotFoundError,
    MachineNotReadyError,
    OrbctlCommandError,
    OrbctlHungError,
    OrbctlTimeoutError,
    OrbstackError,
    TransientOrbctlError,
    first_line,
)
from pytest_orbstack.events import Events, Silent
from pytest_orbstack.machine import Machine
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.readiness import wait_ready
from pytest_orbstack.retry import RetryPolicy, call_with_retry

if TYPE_CHECKING:
    from os import PathLike

    from pytest_orbstack.models import MachineInfo
    from pytest_orbstack.orbctl import Orbctl

__all__ = [
    "CreateSource",
    "MachineFactory",
    "Made",
    "MachineHooks",
    "MachineSource",
    "Provisioner",
    "clone_timeout",
]


@dataclass(frozen=True)
class Made:
    """What a source reports about the machine it made."""

    #: the machine's info once ready
    info: MachineInfo
    #: seconds until the machine existed
    create_seconds: float
    #: seconds from then until it was ready
    ready_seconds: float
    #: True when the provision hooks already ran (e.g. on a base it was cloned from)
    provisioned: bool = False
    #: the machine's name when the source made it under a name of its own (ahead), else ``None``
    name: Optional[str] = None


class MachineSource(Protocol):
    """Makes the machine ``name`` for ``spec`` exist, running and ready."""

    def make(self, spec: MachineSpec, name: str) -> Made: ...

    def close(self, *, wait: bool = True) -> None:
        """The session ends: let go of whatever the source holds (nothing, for most).

        ``wait=False`` (after Ctrl-C): do not wait for work still under way.
        """


class MachineHooks(Protocol):
    """The plugin hooks, bound to a config."""

    def provision(self, machine: Machine) -> None: ...

    def ready(self, machine: Machine) -> None: ...

    def teardown(self, machine: Machine) -> None: ...


class CreateSource:
    """Makes machines with ``orbctl create``: retries transient failures, adopts hung creates.

    A create that failed in a way after which the machine may exist anyway
    (timeout, transient setup error) is checked with ``list``: a machine that
    exists is adopted if it becomes ready, else deleted and the create retried.
    ``machine already exists`` right after such a failure means our own create
    went through: adopt.  A create that hung and left nothing is retried once;
    the process remembers the hang until a create succeeds, and meanwhile
    later machines fail at once (see :meth:`Provisioner.check_hung`).  No
    retry starts after the machine's overall deadline (``--orb-machine-timeout``),
    a create is killed at that deadline and readiness waits no longer than it.
    """

    def __init__(self, provisioner: Provisioner) -> None:
        self._p = provisioner

    def close(self, *, wait: bool = True) -> None:
        """Nothing held."""

    def _exists(self, name: str) -> bool:
        try:
            return any(m.name == name for m in self._p.client.list())
        except OrbctlCommandError:
            return True  # cannot tell: treat as existing, readiness or delete will sort it out

    def make(self, spec: MachineSpec, name: str, *, deadline: Optional[Deadline] = None) -> Made:
        """Make ``name``; ``deadline``: the machine's, when it began before (a base machine's)."""
        p = self._p
        policy = p.policy
        start = p.clock()
        deadline = deadline if deadline is not None else p.deadline(name)
        maybe_ours = False  # a previous attempt may have left the machine behind
        hung = False  # an attempt of this machine hung: one more is allowed, not two
        p.check_hung("create")
        for attempt in range(policy.attempts):
            last = attempt + 1 >= policy.attempts
            adopted = False
            try:
                p.client.create(
                    spec.image, name, arch=spec.arch, user=spec.user, user_data=spec.user_data,
                    **deadline.cap_kwargs(_create_timeout(p.client)),
                )  # fmt: skip
                p.forget_hang("create")
            except MachineExistsError:
                if not maybe_ours:
                    raise
                adopted = True
            except (OrbctlTimeoutError, TransientOrbctlError) as exc:
                maybe_ours = True
                if not self._exists(name):
                    if isinstance(exc, OrbctlTimeoutError):
                        p.remember_hang("create", exc)
                        deadline.check(exc)
                        if hung:
                            raise
                        hung = True
                    if last:
                        raise
                    deadline.check(exc)
                    p.retrying(f"create of {name}", attempt, exc)
                    continue
                adopted = True
            if adopted:
                p.stats.event(f"adopting {name}: an earlier create of it went through", verbose=True)
            created = p.clock()
            try:
                # an adopted machine may be half made: no probe (it would start it) until seen running;
                # one still `creating` (a slow image download) is waited for up to the create timeout
                creating = _create_timeout(p.client) if adopted else None
                info = wait_ready(
                    p.client,
                    name,
                    deadline.cap(p.ready_timeout),
                    started=not adopted,
                    creating_timeout=deadline.cap(creating) if creating is not None else None,
                    clock=p.clock,
                    sleep=p.sleep,
                )
            except MachineNotReadyError as exc:
                p.delete_name(name)
                deadline.check(exc)
                if not adopted or last:
                    raise
                p.retrying(f"create of {name}", attempt, exc)
                continue
            return Made(info, created - start, p.clock() - created)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _create_timeout(client: Any) -> Optional[float]:
    """The client's create timeout (``--orb-create-timeout``), if it has one."""
    value = getattr(getattr(client, "timeouts", None), "create", None)
    return float(value) if isinstance(value, (int, float)) else None


def clone_timeout(client: Any) -> Optional[float]:
    """The client's clone timeout (``--orb-clone-timeout``), if it has one."""
    value = getattr(getattr(client, "timeouts", None), "clone", None)
    return float(value) if isinstance(value, (int, float)) else None


class Provisioner:
    """Makes, hands out and removes the machines of one process (one xdist worker)."""

    def __init__(
        self,
        client: Orbctl,
        *,
        run_id: str,
        worker: str,
        prefix: str,
        ready_timeout: float,
        policy: RetryPolicy,
        hooks: MachineHooks,
        stats: Optional[Events] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        machine_timeout: float = 1200.0,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.worker = worker
        self.prefix = prefix
        self.ready_timeout = ready_timeout
        self.policy = policy
        self.hooks = hooks
        self.stats: Events = stats if stats is not None else Silent()
        self.clock = clock
        self.sleep = sleep
        #: how machines come to exist; replace to change the strategy
        self.source: MachineSource = CreateSource(self)
        #: how machines a test is done with are deleted; :meth:`delete_in_background` switches
        self.deleter: Union[InlineDeleter, BackgroundDeleter] = InlineDeleter(self.delete_quietly)
        #: stops making machines once OrbStack gives them no address (replace to share it run-wide)
        self.breaker = AddressBreaker()
        #: seconds one machine may take in all, retries included (``--orb-machine-timeout``)
        self.machine_timeout = machine_timeout
        self._lock = threading.Lock()
        self._clones: dict[str, list[Machine]] = {}
        #: kind of orbctl call (``create``, ``clone``) -> the one-line message of its first hang
        self._hung: dict[str, str] = {}

    # --- helpers used by sources -------------------------------------------------------------

    def new_name(self) -> str:
        return naming.machine_name(self.prefix, self.run_id, self.worker)

    def retrying(self, what: str, attempt: int, exc: BaseException) -> None:
        """Report a failed attempt and wait before the next one (unless the breaker trips)."""
        self.breaker.failed(exc, "")
        wait = self.policy.delay(attempt)
        self.stats.event(
            f"retrying {what} in {wait:.1f}s (attempt {attempt + 2}): {first_line(exc)}", verbose=True
        )
        self.sleep(wait)

    def check_hung(self, kind: str) -> None:
        """Raise :class:`OrbctlHungError` if an orbctl ``kind`` call hung earlier in this process.

        A hang (killed at its timeout) that no success followed is rarely a
        one-off: repeating it for every later test would cost the timeout each time.
        """
        with self._lock:
            first = self._hung.get(kind)
        if first is not None:
            raise OrbctlHungError(kind, first)

    def remember_hang(self, kind: str, exc: OrbctlTimeoutError) -> None:
        """Remember that an orbctl ``kind`` call hung (see :meth:`check_hung`)."""
        with self._lock:
            self._hung.setdefault(kind, first_line(exc))

    def forget_hang(self, kind: str) -> None:
        """An orbctl ``kind`` call succeeded: an earlier hang was a one-off."""
        with self._lock:
            self._hung.pop(kind, None)

    def deadline(self, name: str) -> Deadline:
        """The overall deadline of the machine ``name``, from now (``--orb-machine-timeout``)."""
        return Deadline(name, self.machine_timeout, self.clock)

    def with_retry(
        self,
        what: str,
        func: Callable[[], object],
        *,
        kind: Optional[str] = None,
        deadline: Optional[Deadline] = None,
    ) -> None:
        """``func()`` under the run's retry policy; each retry is a progress line.

        With ``kind`` (``clone``), a call of that kind that hung earlier fails
        at once, and a hang now is remembered.  With a machine's ``deadline``,
        no retry starts after it (:class:`MachineDeadlineError`).
        """

        def on_retry(attempt: int, exc: BaseException, wait: float) -> None:
            if deadline is not None:
                deadline.check(exc)
            self.stats.event(
                f"retrying {what} in {wait:.1f}s (attempt {attempt + 2}): {first_line(exc)}", verbose=True
            )

        if kind is not None:
            self.check_hung(kind)
        try:
            call_with_retry(func, self.policy, sleep=self.sleep, on_retry=on_retry)
        except OrbctlTimeoutError as exc:
            if kind is not None:
                self.remember_hang(kind, exc)
            raise
        if kind is not None:
            self.forget_hang(kind)

    def delete_name(self, name: str) -> None:
        """Delete ``name``, retrying transient failures; a machine that is gone counts as deleted."""

        def delete() -> None:
            with contextlib.suppress(MachineNotFoundError):
                self.client.delete(name)

        self.with_retry(f"delete of {name}", delete)

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
        try:
            if spec.user_data is not None and not made.provisioned:  # a clone's base was checked
                cloudinit.check(machine, self.ready_timeout - made.ready_seconds, self.stats.event)
            if not made.provisioned:
                self.hooks.provision(machine)
            self.hooks.ready(machine)
        except BaseException:
            self.delete_quietly(machine)
            raise
        self.stats.record_created(made.create_seconds, made.ready_seconds)
        self.stats.event(
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
        try:
            self.with_retry(f"rename of {machine.name}", lambda: self.client.rename(machine.name, new))
        except Exception as exc:
            self.stats.record_kept(machine.name)
            self.stats.event(
                f"kept {machine.name} for debugging, but renaming it to {new} failed "
                f"({first_line(exc)}): a later run's purge will delete it"
            )
            return
        machine.deleted = True  # gone under this name: the handle must not act on it any more
        self.stats.record_kept(new)
        self.stats.event(f"kept {machine.name} for debugging, renamed {new}")

    def delete_quietly(self, machine: Machine) -> None:
        """Delete at teardown: a failure is recorded for the summary, not raised."""
        try:
            self.delete(machine)
        except Exception as exc:
            self.stats.record_failed_delete(machine.name, first_line(exc))
            self.stats.event(f"could not delete {machine.name}: {first_line(exc)}")

    # --- what Machine delegates --------------------------------------------------------------

    def delete(self, machine: Machine) -> None:
        if machine.deleted:
            return
        self.delete_name(machine.name)
        machine.deleted = True
        self.stats.record_deleted()
        self.stats.event(f"deleted {machine.name}", verbose=True)

    def wait_ready(self, machine: Machine, timeout: float, *, started: bool = False) -> MachineInfo:
        """Wait until ``machine`` is ready; ``started``: it was just started here (see readiness)."""
        return wait_ready(
            self.client, machine.name, timeout, started=started, clock=self.clock, sleep=self.sleep
        )

    def start(self, machine: Machine) -> MachineInfo:
        self.with_retry(f"start of {machine.name}", lambda: self.client.start(machine.name))
        return self.wait_ready(machine, self.ready_timeout, started=True)

    def stop(self, machine: Machine, *, force: bool = False) -> None:
        self.with_retry(f"stop of {machine.name}", lambda: self.client.stop(machine.name, force=force))

    def restart(self, machine: Machine) -> MachineInfo:
        self.with_retry(f"restart of {machine.name}", lambda: self.client.restart(machine.name))
        return self.wait_ready(machine, self.ready_timeout, started=True)

    def clone(self, machine: Machine, name: Optional[str]) -> Machine:
        """Clone ``machine`` (``orbctl clone``), start the copy and wait until it is ready,
        all within the copy's overall deadline (``--orb-machine-timeout``)."""
        new = name or self.new_name()
        copy = Machine(self, new, machine.spec)
        with self._lock:
            # Registered first: a clone that fails or hangs half-way is still deleted with its
            # source (deleting a machine that never came to be counts as done).
            self._clones.setdefault(machine.name, []).append(copy)
        start = self.clock()
        deadline = self.deadline(new)

        def clone() -> None:
            self.client.clone(machine.name, new, **deadline.cap_kwargs(clone_timeout(self.client)))

        try:
            self.with_retry(f"clone of {machine.name} as {new}", clone, kind="clone", deadline=deadline)
            created = self.clock()
            self.with_retry(f"start of {new}", lambda: self.client.start(new), deadline=deadline)
            info = self.wait_ready(copy, deadline.cap(self.ready_timeout), started=True)
        except OrbstackError as exc:
            deadline.check(exc)
            raise
        copy = self._with_info(machine.name, copy, info)
        self.stats.record_created(created - start, self.clock() - created)
        self.stats.event(f"cloned {machine.name} as {new} in {created - start:.1f}s", verbose=True)
        return copy

    def _with_info(self, source: str, copy: Machine, info: MachineInfo) -> Machine:
        """The ready clone ``copy`` of ``source`` as a handle that knows ``info``, registered in its place."""
        ready = Machine(self, copy.name, copy.spec, info)
        with self._lock:
            clones = self._clones[source]
            clones[clones.index(copy)] = ready
        return ready


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
