"""Wait until a machine is ready to run commands, with a deadline.

"Ready" means: ``orbctl info`` reports the state ``running`` and an IPv4
address, and ``orbctl run -m NAME true`` succeeds (a machine can be listed
as running while commands still fail).  ``info`` is polled with a short
interval that grows (50 ms, then x1.5 up to 1 s; up to 0.25 s in the first
seconds of a machine that runs but has no address yet), so a machine that is
ready quickly is handed out quickly and a slow one is not hammered.  Once the
machine is known to be running (just started, or seen running), the probe
runs alongside ``info`` (in a thread) instead of after it, and a probe that
succeeded is not repeated: the round in which the address shows costs one
orbctl call's time, not two.  A machine that stops, is being deleted or
vanishes fails at once instead of at the deadline.  A machine still being
created (``creating``/``provisioning``: a slow image download) may be given its
own, longer limit (``creating_timeout``); the ready deadline then counts from
the moment it leaves that state.

The probe prints the default user's home (``$HOME``); the :class:`MachineInfo`
returned carries it as ``home``, so commands can run there (``orbctl run``
without ``-w`` runs in the host's current directory) at no extra orbctl call.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Final, Optional

from pytest_orbstack.diagnostics import logs_tail
from pytest_orbstack.errors import (
    MachineNotFoundError,
    MachineNotReadyError,
    OrbctlCommandError,
    first_line,
)
from pytest_orbstack.models import MachineInfo
from pytest_orbstack.orbctl import Orbctl

__all__ = ["CREATING_STATES", "NO_ADDRESS", "Poll", "lacks_address", "wait_ready"]

#: States from which a machine does not become ready without help.
DEAD_STATES: Final = frozenset({"stopped", "deleting"})
#: States of a machine that OrbStack is still making (downloading its image, first boot).
CREATING_STATES: Final = frozenset({"creating", "provisioning"})
#: The reason readiness gives when a running machine never showed an address.
NO_ADDRESS: Final = "no IPv4 address yet"
#: What orbctl says when a machine it made never got an address.
_MISSING_IP: Final = "missing IP address"
#: The longest single exec probe, in seconds.
_PROBE_TIMEOUT: Final = 30.0
#: The exec probe: any command proves the machine runs commands; this one also prints the home.
PROBE: Final = ("sh", "-c", 'printf "%s\\n" "$HOME"')


@dataclass(frozen=True)
class Poll:
    """The polling interval: starts at ``initial`` and grows by ``factor`` up to ``cap`` seconds.

    A machine that runs but has no address yet gets it within a second or two
    (OrbStack's ``start`` returns before the address): for the first
    ``short_for`` seconds of the wait, the interval then grows only up to
    ``short_cap``, so the address is seen within a quarter of a second of
    showing instead of up to a second later.
    """

    initial: float = 0.05
    factor: float = 1.5
    cap: float = 1.0
    short_cap: float = 0.25
    short_for: float = 5.0

    def next(self, interval: float, *, short: bool = False) -> float:
        return min(self.short_cap if short else self.cap, interval * self.factor)


def _reports_ips(info: MachineInfo) -> bool:
    """False for OrbStack 1.x's ``info`` (a bare record that never shows addresses): the probe decides."""
    raw = getattr(info, "raw", None)
    return not isinstance(raw, dict) or "record" in raw


def lacks_address(exc: BaseException) -> bool:
    """True when ``exc`` says a machine ran but never got an IP address.

    That is orbctl's ``setup: machine didn't start in 30s (missing IP address)``
    (a create), or readiness giving up on a running machine without ``ip4``
    (a start or a clone).
    """
    if isinstance(exc, MachineNotReadyError):
        return exc.last_state == "running" and exc.reason.startswith(NO_ADDRESS)
    if isinstance(exc, OrbctlCommandError):
        return _MISSING_IP in exc.stderr or _MISSING_IP in exc.stdout
    return False


def _probe(client: Orbctl, name: str, timeout: float) -> tuple[Optional[str], Optional[str]]:
    """Run :data:`PROBE` in the machine: (``None`` on success else why it failed, the home it printed)."""
    try:
        result = client.run(name, list(PROBE), timeout=max(1.0, min(timeout, _PROBE_TIMEOUT)), check=False)
    except OrbctlCommandError as exc:
        return first_line(exc), None
    code = getattr(result, "returncode", 0)
    if code != 0:
        return f"exec probe exited with {code}", None
    return None, _home_of(result)


def _home_of(result: object) -> Optional[str]:
    home = str(getattr(result, "stdout", "") or "").strip()
    return home if home.startswith("/") and "\n" not in home else None


def wake(client: Orbctl, name: str, timeout: float) -> Optional[str]:
    """Run :data:`PROBE` in a stopped machine, which ``orbctl run`` starts first; the home it printed.

    Raises the client's typed errors (a transient one may be retried by the caller).
    """
    return _home_of(client.run(name, list(PROBE), timeout=timeout, check=True))


def _with_home(info: MachineInfo, home: Optional[str]) -> MachineInfo:
    return dataclasses.replace(info, home=home) if isinstance(info, MachineInfo) and home else info


def wait_ready(
    client: Orbctl,
    name: str,
    timeout: float,
    *,
    started: bool = False,
    probed: bool = False,
    home: Optional[str] = None,
    creating_timeout: Optional[float] = None,
    poll: Poll = Poll(),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> MachineInfo:
    """Poll ``name`` until it is ready and return its last :class:`MachineInfo`.

    ``started``: the caller has just created or started the machine, so the
    probe may run from the first round.  ``probed``: the probe has just run
    in it (:func:`wake`, whose ``orbctl run`` started it), so it is not
    repeated; ``home`` is what it printed.  Otherwise it waits for an ``info``
    that shows the machine running, because ``orbctl run`` starts a stopped
    machine and a stopped one must fail here, not come back to life.

    ``creating_timeout``: while the machine is ``creating`` or ``provisioning``
    (OrbStack still downloads its image), wait up to this many seconds from
    now instead of ``timeout``; ``timeout`` then counts from the moment it left
    that state.

    Raises :class:`MachineNotReadyError` (machine, seconds waited, last state
    seen, reason) at the deadline, or at once when the machine is stopped,
    being deleted or gone.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orb-probe")
    try:
        return _wait(
            client,
            name,
            timeout,
            started=started or probed,
            ran=probed,
            home=home,
            creating_timeout=creating_timeout,
            poll=poll,
            clock=clock,
            sleep=sleep,
            pool=pool,
        )
    finally:
        # On the way out through an error (a dead machine, Ctrl-C) a probe may still run: it ends
        # by itself within its timeout, and nobody waits for it.
        pool.shutdown(wait=False)


def _wait(
    client: Orbctl,
    name: str,
    timeout: float,
    *,
    started: bool,
    ran: bool,
    home: Optional[str],
    creating_timeout: Optional[float],
    poll: Poll,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    pool: ThreadPoolExecutor,
) -> MachineInfo:
    start = clock()
    deadline = start + timeout
    creating = creating_timeout is not None  # the longer limit holds until seen out of creation
    if creating_timeout is not None:
        deadline = start + max(timeout, creating_timeout)
    interval = poll.initial
    last_state: Optional[str] = None
    may_probe = started  # the machine is known to run: a probe cannot wake a stopped one
    # ran: a probe (or the caller's command) succeeded since the wait began: the machine runs commands
    probe_failure = "the exec probe did not run"
    # home: printed by the probe that succeeded
    while True:
        probe: Optional[Future[tuple[Optional[str], Optional[str]]]] = None
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
            if creating and info.state not in CREATING_STATES:
                creating = False  # made at last: the ready limit counts from now
                deadline = clock() + timeout
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
            failure, home = probe.result() if probe is not None else _probe(client, name, deadline - clock())
            ran = failure is None
            probe_failure = failure or probe_failure
        if info is not None and addressed and ran:
            return _with_home(info, home)
        if info is not None:
            if info.state != "running":
                reason = f"state is {info.state}"
            else:
                reason = probe_failure if addressed else NO_ADDRESS
        now = clock()
        if now >= deadline:
            if creating and last_state in CREATING_STATES:
                raise MachineNotReadyError(
                    name,
                    now - start,
                    last_state,
                    f"still {last_state} (OrbStack may be stuck downloading the image); "
                    f"raise --orb-create-timeout ({creating_timeout:g}s) if the download is slow",
                )
            raise MachineNotReadyError(
                name,
                now - start,
                last_state,
                f"{reason}; raise --orb-ready-timeout ({timeout:g}s) if it is slow",
                logs_tail(client, name),
            )
        sleep(min(interval, deadline - now))
        interval = poll.next(
            interval, short=last_state == "running" and not addressed and now - start < poll.short_for
        )
