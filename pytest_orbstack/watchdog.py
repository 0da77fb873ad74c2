"""The watchdog process: deletes a run's machines when pytest dies without finishing.

Run as ``python -I -c <boot> pytest_orbstack.watchdog`` by
:meth:`pytest_orbstack.reaper.Watchdog.start`, in its own session.  It blocks
on its stdin, a pipe whose only writer is pytest:

* ``done\\n`` (sent by :meth:`~pytest_orbstack.reaper.Watchdog.finish` after
  the run cleaned up after itself): the watchdog exits at once.
* end of file without ``done`` (pytest was killed, called ``os._exit`` or
  crashed: the kernel closes the pipe), or pytest is no longer its parent:
  the watchdog confirms through the run's lease (the lease lock is free once
  the process holding it is gone), takes that lock over, purges the run's
  machines (:func:`pytest_orbstack.ownership.purge` with ``own_run_id``: one
  ``list``, one multi-name ``delete``), keeps purging while xdist workers of
  the run still hold their pins, removes the lease and exits.

Every wait is bounded by :class:`~pytest_orbstack.reaper.WatchdogSettings`;
what goes wrong is logged to ``<state dir>/reaper.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Optional, final

from pytest_orbstack.errors import OrbstackError
from pytest_orbstack.ownership import lease_path, purge, try_lock
from pytest_orbstack.reaper import (
    DONE,
    LOG_NAME,
    PROCESS_MODULE,
    WatchdogSettings,
    is_linked,
    pins_path,
    workers_gone,
)

if TYPE_CHECKING:
    from pytest_orbstack.orbctl import Orbctl

__all__ = ["main"]


@final
class _Log:
    """Appends whole lines to the log; several watchdogs may share the file."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id

    def write(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = f"{stamp} reaper[{os.getpid()}] run {self.run_id}: {message.rstrip()}\n"
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8", "replace"))
            finally:
                os.close(fd)


def _wait_for_end(fd: int, parent_pid: int, poll: float) -> str:
    """Block until pytest says ``done`` (``"done"``), closes the pipe or stops being our parent."""
    received = b""
    while True:
        readable, _, _ = select.select([fd], [], [], poll)
        if readable:
            chunk = os.read(fd, 64)
            if not chunk:
                return "closed"
            received += chunk
            if received.startswith(DONE):
                return "done"
        elif os.getppid() != parent_pid:
            return "orphaned"


def _take_lease(path: Path, parent_pid: int, timeout: float) -> tuple[bool, Optional[int]]:
    """Lock the run's lease once its holder is gone: (confirmed, fd or None if there is no lease).

    While pytest is still our parent the run is alive and we keep waiting
    (it closed the pipe early, e.g. a hand-over); ``timeout`` counts from
    the moment it is not.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return True, None  # released: the run ended and kept nothing
        if try_lock(fd, fcntl.LOCK_EX):
            if is_linked(fd, path):
                return True, fd
            os.close(fd)  # unlinked by its release meanwhile: look again
            continue
        os.close(fd)
        if os.getppid() == parent_pid:
            deadline = time.monotonic() + timeout
        elif time.monotonic() >= deadline:
            return False, None
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _drop_lease(path: Path, fd: Optional[int]) -> None:
    """Remove the lease we took over, unless it records machines kept for debugging."""
    if fd is None:
        return
    try:
        try:
            kept = json.loads(os.pread(fd, 1 << 20, 0).decode()).get("kept", [])
        except (OSError, ValueError, AttributeError):
            kept = []
        if not kept and is_linked(fd, path):
            path.unlink()
    finally:
        os.close(fd)


@dataclass
class _Outcome:
    deleted: list[str]
    error: Optional[str] = None
    workers_left: bool = False


def _reap(orbctl: str, prefix: str, directory: Path, run_id: str, settings: WatchdogSettings) -> _Outcome:
    """Purge the run until its machines are gone, its workers too, and the linger is over."""
    start = time.monotonic()
    pins = pins_path(directory, run_id)
    outcome = _Outcome(deleted=[])
    client: Optional[Orbctl] = None
    backoff = 0.2
    while True:
        gone = workers_gone(pins, remove=True)
        try:
            client = client or _make_client(orbctl)
            result = purge(client, prefix, directory=directory, own_run_id=run_id)
            outcome.deleted += result.deleted
            outcome.error = result.error if result.failed else None
        except (OrbstackError, OSError) as exc:
            outcome.error = (str(exc).splitlines() or [type(exc).__name__])[0]
        elapsed = time.monotonic() - start
        if outcome.error is not None:
            if elapsed >= settings.purge_deadline:
                return outcome
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            continue
        if gone and elapsed >= settings.linger:
            return outcome
        if elapsed >= settings.workers_timeout:
            outcome.workers_left = True
            return outcome
        time.sleep(0.25 if elapsed < settings.linger else 0.5)


def _make_client(orbctl: str) -> Orbctl:
    from pytest_orbstack.client import OrbctlClient  # noqa: PLC0415 (only the watchdog needs it)

    return OrbctlClient(orbctl)


def _after_death(args: argparse.Namespace, settings: WatchdogSettings, how: str, log: _Log) -> int:
    directory = Path(args.state_dir)
    lease = lease_path(args.run_id, directory)
    confirmed, fd = _take_lease(lease, args.parent_pid, settings.confirm_timeout)
    if not confirmed:
        log.write(
            f"pytest is gone ({how}) but the lease {lease} is still locked after "
            f"{settings.confirm_timeout:g}s (a process forked by a test?): not purging; "
            "the next run's purge deletes the machines once that process ends"
        )
        return 2
    try:
        outcome = _reap(args.orbctl, args.prefix, directory, args.run_id, settings)
    finally:
        _drop_lease(lease, fd)
    deleted = ", ".join(outcome.deleted) or "none"
    log.write(f"pytest ended without finishing the run ({how}); machines deleted: {deleted}")
    if outcome.workers_left:
        log.write(f"xdist workers of the run still ran after {settings.workers_timeout:g}s; gave up waiting")
    if outcome.error is not None:
        log.write(
            f"purge failed for {settings.purge_deadline:g}s: {outcome.error}; delete the run's "
            f"machines by hand: {args.orbctl} list -q | grep -- '-{args.run_id}-'"
        )
        return 1
    return 0


def _parse(argv: Optional[Sequence[str]]) -> tuple[argparse.Namespace, WatchdogSettings]:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROCESS_MODULE}",
        description="Watch a pytest run; delete its machines if it dies without finishing.",
    )
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--orbctl", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    defaults = WatchdogSettings()
    for item in fields(WatchdogSettings):
        parser.add_argument(
            f"--{item.name.replace('_', '-')}", type=float, default=getattr(defaults, item.name)
        )
    args = parser.parse_args(argv)
    settings = WatchdogSettings(**{item.name: getattr(args, item.name) for item in fields(WatchdogSettings)})
    return args, settings


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m pytest_orbstack.watchdog`` (started by ``reaper.Watchdog.start``)."""
    args, settings = _parse(argv)
    log = _Log(Path(args.state_dir) / LOG_NAME, args.run_id)
    # Our own session already keeps the terminal's Ctrl-C and hang-up away; this is belt and braces.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        how = _wait_for_end(sys.stdin.fileno(), args.parent_pid, settings.poll)
        if how == "done":
            return 0
        return _after_death(args, settings, how, log)
    except Exception:
        log.write("watchdog failed:\n" + traceback.format_exc())
        return 1


if __name__ == "__main__":
    # Nothing is buffered (the log is written with os.write): skip the interpreter's teardown,
    # so that pytest, which waits for us in Watchdog.finish, is not kept waiting for it.
    os._exit(main())
