"""The run's guard in this process: lease, watchdog, pin, host duties and purges.

One guard per pytest process, made at configure for the process's role
(docs/distributed.md), with three verbs: :meth:`Guard.start` before the
process's first machine (``OrbRuntime.before_first_machine``),
:meth:`Guard.finish` at the end of the session once its machines are torn
down, :meth:`Guard.abort` at unconfigure (whatever ``finish`` did not end:
the watchdog then purges after pytest).

- :class:`ControllerGuard` (the only process without xdist, or the xdist
  controller): OrbStack's version, the run's lease and watchdog and the
  start-up purge (:class:`HostRun`); at the end the final purge of the run's
  leftovers.
- :class:`WorkerGuard` (an xdist worker on the controller's host): it says
  that it makes machines, pins the run (:class:`pytest_orbstack.reaper.WorkerPin`)
  and runs the start-up purge once for the run when the controller has not.
- :class:`RemoteWorkerGuard` (an xdist worker on another host): joins that
  host's duties, or is elected for them and holds that host's :class:`HostRun`
  (:func:`pytest_orbstack.hosts.elect`).

A guard is handed what it needs: the process's runtime, the state
directory, and :class:`Steps` (the plugin's checks of OrbStack).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Optional, Protocol, final

import pytest

from pytest_orbstack import availability, hosts, ownership, reaper
from pytest_orbstack.errors import OrbstackError, first_line
from pytest_orbstack.settings import Clone

if TYPE_CHECKING:
    from pytest_orbstack.orbctl import Orbctl
    from pytest_orbstack.runtime import OrbRuntime

__all__ = ["ControllerGuard", "Guard", "HostRun", "RemoteWorkerGuard", "Steps", "WorkerGuard", "mark_purged"]

#: The flag file (in the run's lock directory) of the start-up purge, done once per run.
_PURGED_FLAG: Final = "orbstack-startup-purge.done"


@final
@dataclass(frozen=True)
class Steps:
    """What a guard asks of the rest of the plugin, bound to this process's runtime."""

    #: say OrbStack's version (``-v``) and what it means for cloning
    announce: Callable[[], None]
    #: ``--orb-clone always`` with an OrbStack that cannot clone stops the run
    check_clone: Callable[[], None]
    #: the orbctl client if OrbStack can be used right now, else ``None``
    usable_client: Callable[[], Optional[Orbctl]]
    #: this host's ``pytest_orbstack_prepare`` step for an orbctl (``None``: none found): why no
    #: machine can be made, or ``None``
    prepare: Callable[[Optional[str]], Optional[str]]


class Guard(Protocol):
    """The run's guard in one process (see the module's docstring)."""

    def start(self) -> None:
        """Before this process's first machine (a failure fails that test, or stops the run)."""

    def finish(self, *, workers_idle: bool = False) -> None:
        """The session ends, its machines torn down (``workers_idle``: every xdist worker said it
        made no machine)."""

    def abort(self) -> None:
        """pytest unconfigures: let go of what :meth:`finish` did not end."""


def mark_purged(lock_dir: Path) -> None:
    """The xdist controller ran the run's start-up purge: its workers do not run it again."""
    (lock_dir / _PURGED_FLAG).touch()


def _orbctl(runtime: OrbRuntime) -> Optional[str]:
    try:
        return runtime.orbctl()[0]
    except OrbstackError:
        return None


def _purge(runtime: OrbRuntime, client: Orbctl, directory: Path, *, own: bool) -> None:
    """Purge the machines of dead runs (``own``: this run's leftovers) and report what it did."""
    try:
        result = ownership.purge(
            client,
            runtime.settings.prefix,
            directory=directory,
            own_run_id=runtime.run_id if own else None,
            others=not runtime.settings.no_purge,
        )
    except OrbstackError as exc:  # orbctl failed, or answered what we cannot read (OrbctlParseError)
        runtime.stats.event(f"purge failed: {first_line(exc)}")
        if own:  # the run's bases are left too: the "delete by hand" line names them
            for name in sorted(runtime.run_bases()):
                runtime.stats.record_failed_delete(name, first_line(exc))
        return
    run_bases = runtime.run_bases() if own else set()
    deleted = [name for name in result.deleted if name not in run_bases]
    runtime.stats.record_purged(deleted)
    if deleted:
        whose = "left by this run" if own else "of dead runs"
        runtime.stats.event(f"purged {len(deleted)} machine(s) {whose}: {', '.join(deleted)}")
    done = sorted(run_bases.intersection(result.deleted))
    if done:  # the clone fast path's bases end with the run, as planned: not leftovers
        runtime.stats.event(f"deleted base machine(s) {', '.join(done)}", verbose=True)
    for name in result.failed:
        runtime.stats.record_failed_delete(name, result.error or "delete failed")


@final
class HostRun:
    """The lease and the watchdog of the run on this host, its start-up and final purges."""

    def __init__(self, runtime: OrbRuntime, steps: Steps, state_dir: Path) -> None:
        self._runtime = runtime
        self._steps = steps
        self._state_dir = state_dir
        self._lease: Optional[ownership.RunLease] = None
        self._watchdog: Optional[reaper.Watchdog] = None

    def begin(self, *, purge: bool) -> None:
        """The run's lease, watchdog and start-up purge, once (``purge=False``: the lease and the
        watchdog only, and no orbctl call).  A failure stops the run with one line."""
        if self._lease is not None:
            return
        runtime = self._runtime
        runtime.machines_wanted = runtime.machines_wanted or purge  # the controller learns it from workers
        orbctl = _orbctl(runtime) or ""
        try:
            reaper.check_state_dir(self._state_dir)
            self._lease = ownership.RunLease.acquire(
                runtime.run_id, runtime.settings.prefix, orbctl, self._state_dir
            )
        except (OSError, reaper.InsecureStateDirError) as exc:
            message = str(exc)
            if isinstance(exc, OSError):
                message = (
                    f"cannot write the run's lease in {ownership.runs_dir(self._state_dir)}: "
                    f"{exc.strerror or exc}; make it writable or point {ownership.STATE_DIR_ENV} "
                    "at a writable directory"
                )
            pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)  # the run stops before any machine
        if orbctl:
            # deletes the run's machines if this process dies without finishing (docs/cleanup.md)
            try:
                self._watchdog = reaper.Watchdog.start(
                    runtime.run_id, runtime.settings.prefix, orbctl, self._state_dir
                )
            except reaper.WatchdogError as exc:
                runtime.stats.event(str(exc))
        if purge and runtime.settings.clone == Clone.ALWAYS:  # the xdist controller calls no orbctl
            self._steps.check_clone()
        if purge and not runtime.settings.no_purge:
            client = self._steps.usable_client()
            if client is not None:
                _purge(runtime, client, self._state_dir, own=False)

    def end(self, *, workers_idle: bool) -> None:
        """The final purge of the run's leftovers, then the watchdog and the lease end."""
        lease = self._lease
        if lease is None:
            return
        runtime = self._runtime
        try:
            if runtime.stats.kept:
                lease.keep(runtime.stats.kept)
            # Every xdist worker ended saying it made no machine (none died unheard, and the
            # controller of workers runs no test): no process of the run made one.
            client = self._steps.usable_client() if not workers_idle else None
            if client is not None:
                _purge(runtime, client, self._state_dir, own=True)
            watchdog, self._watchdog = self._watchdog, None
            if watchdog is not None:
                if runtime.stats.failed_deletes:
                    watchdog.handover()  # it retries the purge once pytest has exited
                else:
                    watchdog.finish()
        finally:
            lease.release()
            self._lease = None

    def abandon(self) -> None:
        """:meth:`end` did not run: the watchdog purges once pytest has exited."""
        if self._watchdog is not None:
            self._watchdog.handover()
            self._watchdog = None
        if self._lease is not None:
            self._lease.release()
            self._lease = None


@final
class ControllerGuard:
    """The only process without xdist, or the xdist controller: the run's :class:`HostRun`."""

    def __init__(self, runtime: OrbRuntime, steps: Steps, state_dir: Path) -> None:
        self._steps = steps
        self._run = HostRun(runtime, steps, state_dir)

    def start(self) -> None:
        self._steps.announce()
        self._run.begin(purge=True)

    def hold(self) -> None:
        """A worker makes its machines already: the lease and the watchdog only (no orbctl call)."""
        self._run.begin(purge=False)

    def finish(self, *, workers_idle: bool = False) -> None:
        self._run.end(workers_idle=workers_idle)

    def abort(self) -> None:
        self._run.abandon()


@final
class WorkerGuard:
    """An xdist worker on its controller's host: the controller holds the lease and the watchdog."""

    def __init__(self, runtime: OrbRuntime, steps: Steps, state_dir: Path) -> None:
        self._runtime = runtime
        self._steps = steps
        self._state_dir = state_dir
        self._pin: Optional[reaper.WorkerPin] = None

    def start(self) -> None:
        runtime = self._runtime
        if runtime.lock_dir is not None:  # the controller starts the lease and the watchdog
            availability.note_wanted(runtime.lock_dir, runtime.run_id)
        self._hold_pin()
        self._purge_once()

    def _hold_pin(self) -> None:
        """Pinned before this worker's first machine until its machines are torn down; a worker whose
        controller has already ended makes none."""
        if self._pin is not None:
            return
        run_id = self._runtime.run_id
        try:
            reaper.check_state_dir(self._state_dir)
            self._pin = reaper.WorkerPin.hold(run_id, self._state_dir)
        except (OSError, reaper.InsecureStateDirError) as exc:
            pytest.fail(str(exc), pytrace=False)  # the controller stops the run for the same reason
        if not ownership.run_is_live(run_id, self._state_dir):  # pinned first: a watchdog purging sees it
            pytest.exit(
                "the run's controller has ended: no machine is made", returncode=pytest.ExitCode.INTERRUPTED
            )

    def _purge_once(self) -> None:
        """OrbStack's version and the start-up purge, once for the whole run (by the first worker
        that gets there, when the controller has not: a machine fixture reached another way)."""
        runtime = self._runtime
        runtime.machines_wanted = True
        if runtime.lock_dir is None:
            return
        import filelock  # noqa: PLC0415 (only workers that make machines need it)

        flag = runtime.lock_dir / _PURGED_FLAG
        with filelock.FileLock(str(flag) + ".lock"):
            if flag.exists():
                return
            self._steps.announce()
            client = self._steps.usable_client() if not runtime.settings.no_purge else None
            if client is not None:
                _purge(runtime, client, self._state_dir, own=False)
            flag.touch()

    def finish(self, *, workers_idle: bool = False) -> None:
        self.abort()  # after this worker's machines were torn down

    def abort(self) -> None:
        if self._pin is not None:
            self._pin.release()


@final
class RemoteWorkerGuard:
    """An xdist worker on another host than its controller: its part of that host's duties."""

    def __init__(self, runtime: OrbRuntime, steps: Steps, state_dir: Path) -> None:
        self._runtime = runtime
        self._steps = steps
        self._run = HostRun(runtime, steps, state_dir)
        self._duties: Optional[hosts.HostDuties] = None

    def start(self) -> None:
        """Join this host's duties, or take them (the first worker of the run here: hosts.py)."""
        runtime = self._runtime
        runtime.machines_wanted = True
        if self._duties is None:
            try:
                self._duties = hosts.elect(runtime.run_id, self._begin_host_run)
            except (OSError, reaper.InsecureStateDirError) as exc:
                message = str(exc) if isinstance(exc, reaper.InsecureStateDirError) else first_line(exc)
                message = f"cannot join the run's duties on this host: {message}"
                pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)
            runtime.run_id = self._duties.run_id
        if self._duties.unavailable is not None:  # every machine test errors (or skips) with it
            runtime.unavailable = runtime.where + self._duties.unavailable

    def _begin_host_run(self, host_run_id: str) -> Optional[str]:
        """Elected: this host's prepare step, then its lease, watchdog and start-up purge."""
        self._runtime.run_id = host_run_id
        reason = self._steps.prepare(_orbctl(self._runtime))  # this host's backend, once
        if reason is None:
            self._steps.announce()
            self._run.begin(purge=True)
        return reason

    def finish(self, *, workers_idle: bool = False) -> None:
        duties = self._duties
        if duties is None:
            return
        if duties.elected:  # this host's duties end once its workers are done
            self._runtime.worker_bases.update(duties.wait_for_peers()[1])
            self._run.end(workers_idle=False)
            duties.forget()
        else:
            duties.leave(self._runtime.run_bases())

    def abort(self) -> None:
        self._run.abandon()
