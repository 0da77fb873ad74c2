"""How one base machine is built: create, cloud-init, provision hooks, seal, stop, checked stopped.

:class:`~pytest_orbstack.bases.BaseManager` decides which base a spec needs
and who builds it; :class:`BaseBuilder` builds it.  Any failure deletes the
half-built base and is a :class:`~pytest_orbstack.basestore.BaseBuildError`
with the reason (and the console log's last lines).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, Final, Optional

from pytest_orbstack import cloudinit
from pytest_orbstack.basestore import BaseBuildError
from pytest_orbstack.diagnostics import with_logs
from pytest_orbstack.errors import MachineNotFoundError, OrbctlCommandError, OrbstackError, first_line
from pytest_orbstack.machine import Machine
from pytest_orbstack.sources import CreateSource

if TYPE_CHECKING:
    from pytest_orbstack.context import MakeContext
    from pytest_orbstack.events import Events
    from pytest_orbstack.machine import MachineManager
    from pytest_orbstack.models import MachineSpec

__all__ = [
    "SEAL",
    "STOPPED_WAIT",
    "BaseBuilder",
    "VolatileProvisionWarning",
    "VolatileWarner",
    "volatile_message",
]

#: Seals a base before it is stopped (run as root): an empty ``/etc/machine-id`` makes systemd
#: give each clone its own id at boot; dbus's copy goes.  No file is made where there is none.
SEAL: Final = ("sh", "-c", "[ ! -e /etc/machine-id ] || : > /etc/machine-id; rm -f /var/lib/dbus/machine-id")


class VolatileProvisionWarning(UserWarning):
    """A provision hook wrote under /tmp or /run, which the clones tests get do not keep."""


def volatile_message(noted: Sequence[str]) -> str:
    """The warning for provision hooks whose commands named ``/tmp`` or ``/run`` (``noted``)."""
    more = f" (and {len(noted) - 1} more)" if len(noted) > 1 else ""
    return (
        f"pytest_orbstack_provision ran a command that names /tmp or /run: {noted[0]}{more}. "
        "Machines are clones of the provisioned base and boot afresh: /tmp and /run start empty "
        "and services started by hand are not running; keep files tests need elsewhere "
        "(/var/tmp, /opt, the home) and enable services (systemctl enable) or start them in "
        "pytest_orbstack_machine_ready"
    )


class VolatileWarner:
    """Warns once that provision hooks named /tmp or /run: one per process, shared by the base
    builder and the provisioner (a machine created instead of a base is provisioned like one)."""

    def __init__(self, events: Events) -> None:
        self._events = events
        self._lock = threading.Lock()
        self._warned = False

    def __call__(self, noted: Sequence[str]) -> None:
        with self._lock:
            if not noted or self._warned:
                return
            self._warned = True
        message = volatile_message(noted)
        self._events.event(message)
        warnings.warn(VolatileProvisionWarning(message), stacklevel=3)


#: How long a base may stay ``stopping`` after ``orbctl stop`` returned (its stop kills after 5 s).
STOPPED_WAIT: Final = 30.0


class BaseBuilder:
    """Builds base machines for one process; warns once if provision hooks named /tmp or /run."""

    def __init__(
        self,
        context: MakeContext,
        *,
        manager: MachineManager,
        provision: Callable[[Machine], None],
        warn: Optional[VolatileWarner] = None,
    ) -> None:
        self._c = context
        #: the manager of the base machine's handle (what the provision hooks get)
        self._manager = manager
        self._provision = provision
        #: the /tmp-or-/run warning (once per process)
        self._warn_volatile = warn if warn is not None else VolatileWarner(context.events)

    def build(self, spec: MachineSpec, name: str) -> str:
        """Create ``name``, run the provision hooks on it, stop it.  Deleted again on any failure.

        A base is a machine too: its create, readiness and stop keep within its overall
        deadline (``--orb-machine-timeout``); cloud-init and the provision hooks are not
        charged to it (they are the user's, with their own timeouts).
        """
        c = self._c
        start = c.clock()
        deadline = c.deadline(name)
        c.events.waiting(f"building base machine {name} ({spec.describe()}): create, provision hooks, stop")
        try:
            made = CreateSource(c).make(spec, name, deadline=deadline)
        except OrbstackError as exc:
            raise BaseBuildError(spec, name, f"{type(exc).__name__}: {first_line(exc)}") from exc
        machine = Machine(self._manager, name, spec, made.info)
        try:
            with deadline.excluding():
                if spec.user_data is not None:
                    cloudinit.check(machine, c.ready_timeout - made.ready_seconds, c.events.event)
                machine.watch_volatile()
                self._provision(machine)
                self._warn_volatile(machine.volatile_commands())
                machine.run(list(SEAL), user="root", workdir="/")
            c.retry.call(f"stop of {name}", lambda: c.client.stop(name), stop=deadline)
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            if isinstance(exc, Exception):  # the console log, gathered before the machine goes
                reason = with_logs(reason, c.client, name)
            with contextlib.suppress(Exception):
                c.delete_name(name)
            if isinstance(exc, cloudinit.CloudInitError):
                raise BaseBuildError(spec, name, str(exc)) from exc
            if isinstance(exc, Exception):
                raise BaseBuildError(spec, name, reason) from exc
            raise
        self._check_stopped(spec, name)
        c.events.event(
            f"built base {name} ({spec.describe()}) in {c.clock() - start:.1f}s: "
            "provisioned and stopped; machines are clones of it",
            verbose=True,
        )
        return name

    def _check_stopped(self, spec: MachineSpec, name: str) -> None:
        """After its stop, the base must exist and be ``stopped`` before anything is cloned from it.

        OrbStack 1.8 deleted a machine stopped soon after its create (its issue #1583), and a
        stop may return while the machine is still ``stopping``: wait up to
        :data:`STOPPED_WAIT` seconds for ``stopped``.  A base that vanished, or that does not
        stop (then deleted), is a :class:`BaseBuildError`: building it again would meet the
        same fate.  One ``orbctl info`` per base build.
        """
        c = self._c
        deadline = c.clock() + STOPPED_WAIT
        while True:
            try:
                state = str(c.client.info(name).state)
            except MachineNotFoundError:
                raise BaseBuildError(
                    spec,
                    name,
                    "it vanished when it was stopped (OrbStack 1.8 deleted machines stopped soon "
                    "after their create: update OrbStack)",
                    hint="--orb-clone never creates every machine instead",
                ) from None
            except OrbctlCommandError as exc:
                state = f"unknown (orbctl info: {first_line(exc)})"
            if state == "stopped":
                return
            if c.clock() >= deadline:
                with contextlib.suppress(Exception):
                    c.delete_name(name)
                raise BaseBuildError(
                    spec,
                    name,
                    f"it is {state}, not stopped, {STOPPED_WAIT:g}s after orbctl stop",
                    hint="--orb-clone never creates every machine instead",
                )
            c.sleep(0.2)
