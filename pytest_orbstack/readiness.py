"""Wait until a machine is ready to run commands, with a deadline.

"Ready" means: ``orbctl info`` reports the state ``running`` and an IPv4
address, and ``orbctl run -m NAME true`` succeeds (a machine can be listed
as running while commands still fail).  ``info`` is polled with a short
interval that grows (50 ms, then x1.5 up to 1 s), so a machine that is ready
quickly is handed out quickly and a slow one is not hammered.  Once the
machine is known to be running (just started, or seen running), the probe
runs alongside ``info`` (in a thread) instead of after it, and a probe that
succeeded is not repeated: the round in which the address shows costs one
orbctl call's time, not two.  A machine that stops, is being deleted or
vanishes fails at once instead of at the deadline.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Final, Optional, Protocol

from pytest_orbstack.diagnostics import logs_tail
from pytest_orbstack.errors import (
    MachineNotFoundError,
    MachineNotReadyError,
    OrbctlCommandError,
    first_line,
)

if TYPE_CHECKING:
    from pytest_orbstack.models import MachineInfo

__all__ = ["Poll", "wait_ready"]

#: States from which a machine does not become ready without help.
DEAD_STATES: Final = frozenset({"stopped", "deleting"})
#: The longest single exec probe, in seconds.
_PROBE_TIMEOUT: Final = 30.0


@dataclass(frozen=True)
class Poll:
    """The polling interval: starts at ``initial`` and grows by ``factor`` up to ``cap`` seconds."""

    initial: float = 0.05
    factor: float = 1.5
    cap: float = 1.0

    def next(self, interval: float) -> float:
        return min(self.cap, interval * self.factor)


class _ReadinessClient(Protocol):
    def info(self, name: str) -> MachineInfo: ...

    def run(
        self, machine: str, command: list[str], *, timeout: Optional[float] = ..., check: bool = ...
    ) -> object: ...


def _reports_ips(info: MachineInfo) -> bool:
    """False for OrbStack 1.x's ``info`` (a bare record that never shows addresses): the probe decides."""
    raw = getattr(info, "raw", None)
    return not isinstance(raw, dict) or "record" in raw


def _probe(client: _ReadinessClient, name: str, timeout: float) -> Optional[str]:
    """Run ``true`` in the machine; ``None`` on success, else why it failed."""
    try:
        result = client.run(name, ["true"], timeout=max(1.0, min(timeout, _PROBE_TIMEOUT)), check=False)
    except OrbctlCommandError as exc:
        return first_line(exc)
    code = getattr(result, "returncode", 0)
    return None if code == 0 else f"exec probe 'true' exited with {code}"


def wait_ready(
    client: _ReadinessClient,
    name: str,
    timeout: float,
    *,
    started: bool = False,
    poll: Poll = Poll(),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> MachineInfo:
    """Poll ``name`` until it is ready and return its last :class:`MachineInfo`.

    ``started``: the caller has just created or started the machine, so the
    probe may run from the first round.  Otherwise it waits for an ``info``
    that shows the machine running, because ``orbctl run`` starts a stopped
    machine and a stopped one must fail here, not come back to life.

    Raises :class:`MachineNotReadyError` (machine, seconds waited, last state
    seen, reason) at the deadline, or at once when the machine is stopped,
    being deleted or gone.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orb-probe")
    try:
        return _wait(client, name, timeout, started=started, poll=poll, clock=clock, sleep=sleep, pool=pool)
    finally:
        # On the way out through an error (a dead machine, Ctrl-C) a probe may still run: it ends
        # by itself within its timeout, and nobody waits for it.
        pool.shutdown(wait=False)


def _wait(
    client: _ReadinessClient,
    name: str,
    timeout: float,
    *,
    started: bool,
    poll: Poll,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    pool: ThreadPoolExecutor,
) -> MachineInfo:
    start = clock()
    deadline = start + timeout
    interval = poll.initial
    last_state: Optional[str] = None
    may_probe = started  # the machine is known to run: a probe cannot wake a stopped one
    ran = False  # a probe succeeded since the wait began: the machine runs commands
    probe_failure = "the exec probe did not run"
    while True:
        probe: Optional[Future[Optional[str]]] = None
        if may_probe and not ran:  # likely usable: probe while info runs
            probe = pool.submit(_probe, client, name, deadline - clock())
        info: Optional[MachineInfo] = None
        try:
            info = client.info(name)
        except MachineNotFoundError:
            raise MachineNotReadyError(name, clock() - start, last_state, "the machine vanished") from None
        except OrbctlCommandError as exc:
            reason = f"info failed: {first_line(exc)}"
        if info is not None:
            last_state = info.state
            may_probe = info.state == "running"
            if info.state in DEAD_STATES:
                raise MachineNotReadyError(
                    name,
                    clock() - start,
                    last_state,
                    f"the machine is {info.state}; start it or recreate it",
                    logs_tail(client, name),
                )
        addressed = info is not None and info.state == "running" and bool(info.ip4 or not _reports_ips(info))
        if not ran and (probe is not None or addressed):  # never sleep with a probe still running
            failure = probe.result() if probe is not None else _probe(client, name, deadline - clock())
            ran = failure is None
            probe_failure = failure or probe_failure
        if info is not None and addressed and ran:
            return info
        if info is not None:
            if info.state != "running":
                reason = f"state is {info.state}"
            else:
                reason = probe_failure if addressed else "no IPv4 address yet"
        now = clock()
        if now >= deadline:
            raise MachineNotReadyError(
                name,
                now - start,
                last_state,
                f"{reason}; raise --orb-ready-timeout ({timeout:g}s) if it is slow",
                logs_tail(client, name),
            )
        sleep(min(interval, deadline - now))
        interval = poll.next(interval)
