"""What the sources that make machines are handed: :class:`MakeContext`.

A source (create, clone, prefetch) and the base manager need the orbctl
client, a clock and a sleep, somewhere to report to, the retry policy, a way
to name and to delete machines, and each machine's overall deadline -- not the
:class:`~pytest_orbstack.provisioner.Provisioner` that owns them.  The
provisioner builds one context and hands it to each of them.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Final, NamedTuple, Optional

from pytest_orbstack import naming
from pytest_orbstack.deadline import Deadline
from pytest_orbstack.errors import MachineNotFoundError, first_line
from pytest_orbstack.readiness import wait_ready
from pytest_orbstack.retry import Retrier, RetryPolicy

if TYPE_CHECKING:
    from pytest_orbstack.events import Events
    from pytest_orbstack.models import MachineInfo
    from pytest_orbstack.orbctl import Orbctl

__all__ = ["REAL_TIME", "Limits", "MakeContext", "Namer", "Time"]


@dataclass(frozen=True)
class Namer:
    """Names the machines one process makes: ``<prefix><run id>-<worker>-<token>``."""

    prefix: str
    run_id: str
    worker: str

    def __call__(self) -> str:
        return naming.machine_name(self.prefix, self.run_id, self.worker)


@dataclass(frozen=True)
class Limits:
    """How long a machine may take, and how often a failed orbctl call is tried again."""

    #: seconds a machine may take to be ready once it exists (``--orb-ready-timeout``)
    ready_timeout: float
    #: seconds one machine may take in all, retries included (``--orb-machine-timeout``)
    machine_timeout: float = 1200.0
    #: retries of transient orbctl failures (``--orb-retries``)
    policy: RetryPolicy = field(default_factory=RetryPolicy)


class Time(NamedTuple):
    """The clock and the sleep the lifecycle uses (tests give ones that do not wait)."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


#: The wall clock and a real sleep.
REAL_TIME: Final = Time()


@dataclass(frozen=True)
class MakeContext:
    """What making and removing a machine needs: handed to each source, shared by its threads."""

    client: Orbctl
    #: a new machine name of this process
    new_name: Callable[[], str]
    limits: Limits
    events: Events
    retry: Retrier
    time: Time

    @property
    def clock(self) -> Callable[[], float]:
        return self.time.clock

    @property
    def sleep(self) -> Callable[[float], None]:
        return self.time.sleep

    @property
    def ready_timeout(self) -> float:
        return self.limits.ready_timeout

    def deadline(self, name: str) -> Deadline:
        """The overall deadline of the machine ``name``, from now (``--orb-machine-timeout``)."""
        return Deadline(name, self.limits.machine_timeout, self.time.clock)

    def delete_name(self, name: str) -> None:
        """Delete ``name``, retrying transient failures; a machine that is gone counts as deleted."""

        def delete() -> None:
            with contextlib.suppress(MachineNotFoundError):
                self.client.delete(name)

        self.retry.call(f"delete of {name}", delete)

    def delete_recorded(self, name: str) -> None:
        """:meth:`delete_name`, then counted and reported as a deleted machine."""
        self.delete_name(name)
        self.events.record_deleted()
        self.events.event(f"deleted {name}", verbose=True)

    def delete_quietly(self, name: str) -> None:
        """:meth:`delete_recorded`; a failure is recorded for the summary, not raised."""
        try:
            self.delete_recorded(name)
        except Exception as exc:
            self.events.record_failed_delete(name, first_line(exc))
            self.events.event(f"could not delete {name}: {first_line(exc)}")

    def wait_ready(
        self,
        name: str,
        timeout: float,
        *,
        started: bool = False,
        probed: bool = False,
        home: Optional[str] = None,
        creating_timeout: Optional[float] = None,
    ) -> MachineInfo:
        """:func:`~pytest_orbstack.readiness.wait_ready` on this context's client and clock."""
        return wait_ready(
            self.client,
            name,
            timeout,
            started=started,
            probed=probed,
            home=home,
            creating_timeout=creating_timeout,
            clock=self.time.clock,
            sleep=self.time.sleep,
        )
