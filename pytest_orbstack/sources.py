"""How a machine comes to exist: the :class:`MachineSource` protocol, ``orbctl create``, ``orbctl clone``.

:class:`CreateSource` makes machines with ``orbctl create``.
:func:`clone_ready` is the one way a machine is cloned: ``orbctl clone``,
started, ready, within the copy's overall deadline, deleted on failure; the
clone fast path (:mod:`pytest_orbstack.bases`), ``Machine.clone()`` and the
prefetched clones all go through it.  Sources are handed a
:class:`~pytest_orbstack.context.MakeContext`, not their owner.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from pytest_orbstack.errors import (
    MachineExistsError,
    MachineNotFoundError,
    MachineNotReadyError,
    OrbctlCommandError,
    OrbctlTimeoutError,
    OrbstackError,
    TransientOrbctlError,
)
from pytest_orbstack.readiness import wake

if TYPE_CHECKING:
    from pytest_orbstack.context import MakeContext
    from pytest_orbstack.deadline import Deadline
    from pytest_orbstack.machine import Machine
    from pytest_orbstack.models import MachineInfo, MachineSpec

__all__ = ["CreateSource", "MachineHooks", "MachineSource", "Made", "clone_ready", "clone_timeout"]


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
    #: created instead of a base (the run needs one machine of its spec): provisioned like a base,
    #: so hooks that name /tmp or /run get the base's warning (clones would not keep what they left)
    instead_of_base: bool = False


class MachineSource(Protocol):
    """Makes the machine ``name`` for ``spec`` exist, running and ready."""

    def make(self, spec: MachineSpec, name: str) -> Made: ...

    def warm(self, spec: MachineSpec) -> bool:
        """Make, on this thread, whatever later machines of ``spec`` are made from (a base).

        ``True``: machines of ``spec`` can now be made on any thread, nothing of
        them runs hooks or builds anything first; ``False``: not until one was
        made (a created machine: its first make is where an error shows).
        """
        ...

    def close(self, *, wait: bool = True) -> None:
        """The session ends: let go of whatever the source holds (nothing, for most).

        ``wait=False`` (after Ctrl-C): do not wait for work still under way.
        """


class MachineHooks(Protocol):
    """The plugin hooks, bound to a config."""

    def provision(self, machine: Machine) -> None: ...

    def ready(self, machine: Machine) -> None: ...

    def teardown(self, machine: Machine) -> None: ...


def _create_timeout(client: Any) -> Optional[float]:
    """The client's create timeout (``--orb-create-timeout``), if it has one."""
    value = getattr(getattr(client, "timeouts", None), "create", None)
    return float(value) if isinstance(value, (int, float)) else None


def clone_timeout(client: Any) -> Optional[float]:
    """The client's clone timeout (``--orb-clone-timeout``), if it has one."""
    value = getattr(getattr(client, "timeouts", None), "clone", None)
    return float(value) if isinstance(value, (int, float)) else None


class CreateSource:
    """Makes machines with ``orbctl create``: retries transient failures, adopts hung creates.

    A create that failed in a way after which the machine may exist anyway
    (timeout, transient setup error) is checked with ``list``: a machine that
    exists is adopted if it becomes ready, else deleted and the create retried.
    ``machine already exists`` right after such a failure means our own create
    went through: adopt.  A create that hung and left nothing is retried once;
    the process remembers the hang until a create succeeds, and meanwhile
    later machines fail at once (see :meth:`~pytest_orbstack.retry.Retrier.check_hung`).
    No retry starts after the machine's overall deadline (``--orb-machine-timeout``),
    a create is killed at that deadline and readiness waits no longer than it.
    """

    def __init__(self, context: MakeContext) -> None:
        self._c = context

    def close(self, *, wait: bool = True) -> None:
        """Nothing held."""

    def warm(self, spec: MachineSpec) -> bool:
        """Nothing to make first: the first machine itself shows whether the spec works."""
        return False

    def _exists(self, name: str) -> bool:
        try:
            return any(m.name == name for m in self._c.client.list())
        except OrbctlCommandError:
            return True  # cannot tell: treat as existing, readiness or delete will sort it out

    def make(self, spec: MachineSpec, name: str, *, deadline: Optional[Deadline] = None) -> Made:
        """Make ``name``; ``deadline``: the machine's, when it began before (a base machine's)."""
        c = self._c
        retry = c.retry
        start = c.clock()
        deadline = deadline if deadline is not None else c.deadline(name)
        maybe_ours = False  # a previous attempt may have left the machine behind
        hung = False  # an attempt of this machine hung: one more is allowed, not two
        retry.check_hung("create")
        for attempt in range(retry.policy.attempts):
            last = attempt + 1 >= retry.policy.attempts
            adopted = False
            try:
                c.client.create(
                    spec.image, name, arch=spec.arch, user=spec.user, user_data=spec.user_data,
                    **deadline.cap_kwargs(_create_timeout(c.client)),
                )  # fmt: skip
                retry.forget_hang("create")
            except MachineExistsError:
                if not maybe_ours:
                    raise
                adopted = True
            except (OrbctlTimeoutError, TransientOrbctlError) as exc:
                maybe_ours = True
                if not self._exists(name):
                    if isinstance(exc, OrbctlTimeoutError):
                        retry.remember_hang("create", exc)
                        deadline.check(exc)
                        if hung:
                            raise
                        hung = True
                    if last:
                        raise
                    deadline.check(exc)
                    retry.pause(f"create of {name}", attempt, exc)
                    continue
                adopted = True
            if adopted:
                c.events.event(f"adopting {name}: an earlier create of it went through", verbose=True)
            created = c.clock()
            try:
                # an adopted machine may be half made: no probe (it would start it) until seen running;
                # one still `creating` (a slow image download) is waited for up to the create timeout
                creating = _create_timeout(c.client) if adopted else None
                info = c.wait_ready(
                    name,
                    deadline.cap(c.ready_timeout),
                    started=not adopted,
                    creating_timeout=deadline.cap(creating) if creating is not None else None,
                )
            except MachineNotReadyError as exc:
                c.delete_name(name)
                deadline.check(exc)
                if not adopted or last:
                    raise
                retry.pause(f"create of {name}", attempt, exc)
                continue
            return Made(info, created - start, c.clock() - created)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def clone_ready(
    context: MakeContext,
    source: str,
    name: str,
    *,
    wake_up: bool,
    missing: Optional[Callable[[MachineNotFoundError], Exception]] = None,
    gone: Optional[Callable[[], None]] = None,
) -> Made:
    """Clone ``source`` as ``name``, start the copy and wait until it is ready; the copy's :class:`Made`.

    All within the copy's overall deadline (``--orb-machine-timeout``), which
    starts now; transient failures of clone and start are retried, a clone
    hang is remembered (later clones fail at once).  On any failure the copy
    is deleted (a killed clone may have left it behind) and, once the deadline
    passed, the error is :class:`~pytest_orbstack.errors.MachineDeadlineError`.

    ``wake_up``: start a stopped copy by its first command (``orbctl run``
    starts a stopped machine), which is also the readiness probe; else
    ``orbctl start``.  ``missing``: the error to raise when ``source`` is gone.
    ``gone``: called when a failed copy was deleted here.
    """
    c = context
    start = c.clock()
    deadline = c.deadline(name)

    def clone() -> None:
        c.client.clone(source, name, **deadline.cap_kwargs(clone_timeout(c.client)))

    try:
        try:
            c.retry.call(f"clone of {source} as {name}", clone, kind="clone", stop=deadline)
        except MachineNotFoundError as exc:
            if missing is None:
                raise
            raise missing(exc) from exc
        cloned = c.clock()
        if wake_up:
            homes: list[Optional[str]] = []
            c.retry.call(
                f"start of {name}",
                lambda: homes.append(wake(c.client, name, deadline.cap(c.ready_timeout))),
                stop=deadline,
            )
            info = c.wait_ready(name, deadline.cap(c.ready_timeout), probed=True, home=homes[-1])
        else:
            c.retry.call(f"start of {name}", lambda: c.client.start(name), stop=deadline)
            info = c.wait_ready(name, deadline.cap(c.ready_timeout), started=True)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            c.delete_name(name)
            if gone is not None:
                gone()
        if isinstance(exc, OrbstackError):
            deadline.check(exc)
        raise
    return Made(info, cloned - start, c.clock() - cloned)
