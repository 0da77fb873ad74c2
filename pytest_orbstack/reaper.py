"""The crash-safe watchdog: deletes a run's machines when pytest dies without finishing.

At session start the controller (or the only process, without xdist) starts
:class:`Watchdog`: the module ``pytest_orbstack.reaper`` run by an isolated
interpreter (``python -I``, started in ``/``, from a state directory only the
user can write) in its own session, so Ctrl-C in the terminal and the death
of pytest do not reach it.  It
blocks on its stdin, a pipe whose only writer is pytest:

* ``done\\n`` (sent by :meth:`Watchdog.finish` after the run cleaned up
  after itself): the watchdog exits at once.
* end of file without ``done`` (pytest was killed, called ``os._exit`` or
  crashed: the kernel closes the pipe), or pytest is no longer its parent:
  the watchdog confirms through the run's lease (the lease lock is free once
  the process holding it is gone), takes that lock over, purges the run's
  machines (:func:`pytest_orbstack.ownership.purge` with ``own_run_id``: one
  ``list``, one multi-name ``delete``), keeps purging while xdist workers of
  the run are still alive, removes the lease and exits.

xdist workers hold a shared lock on ``<state dir>/runs/<run id>.workers``
(:class:`WorkerPin`) until they have torn their machines down, so a worker
that outlives its controller cannot create a machine after the last purge.

Everything the watchdog does is bounded by :class:`WatchdogSettings`; what
goes wrong is logged to ``<state dir>/reaper.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Final, Optional, final

from pytest_orbstack.errors import OrbstackError
from pytest_orbstack.ownership import STATE_DIR_ENV, lease_path, purge, runs_dir, state_dir, try_lock

if TYPE_CHECKING:
    from pytest_orbstack.orbctl import Orbctl

__all__ = [
    "LOG_NAME",
    "InsecureStateDirError",
    "Watchdog",
    "WatchdogError",
    "WatchdogSettings",
    "WorkerPin",
    "check_state_dir",
    "main",
    "workers_gone",
]

#: The watchdog's log, in the state directory.
LOG_NAME: Final = "reaper.log"
#: The log is moved to ``reaper.log.1`` when a watchdog starts and finds it larger.
_LOG_ROTATE_BYTES: Final = 1 << 20
_DONE: Final = b"done\n"
#: How long a worker tries to take its pin before it runs without one.
_PIN_TIMEOUT: Final = 5.0


class WatchdogError(OrbstackError):
    """The watchdog could not be started; ``log`` is where it reports."""

    def __init__(self, message: str, log: Path) -> None:
        self.log = log
        super().__init__(message)


@final
@dataclass(frozen=True)
class WatchdogSettings:
    """The bounds of every wait of the watchdog, in seconds."""

    #: while pytest runs: how often the watchdog checks that pytest is still its parent
    poll: float = 1.0
    #: once pytest is gone: how long to wait for the lease lock to be released
    confirm_timeout: float = 30.0
    #: how long to retry a purge that fails (orbctl errors, OrbStack not answering)
    purge_deadline: float = 30.0
    #: after pytest's death: how long to keep purging machines of the run that appear late
    #: (a ``create`` pytest started just before it died)
    linger: float = 2.0
    #: how long to wait for xdist workers that outlive their controller
    workers_timeout: float = 30.0

    def to_argv(self) -> list[str]:
        argv: list[str] = []
        for item in fields(self):
            argv += [f"--{item.name.replace('_', '-')}", repr(getattr(self, item.name))]
        return argv


def _pins_path(directory: Path, run_id: str) -> Path:
    return runs_dir(directory) / f"{run_id}.workers"


def _is_linked(fd: int, path: Path) -> bool:
    """True if ``fd`` is still the file at ``path`` (not unlinked or replaced meanwhile)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _workers_gone(path: Path, *, remove: bool = False) -> bool:
    """True when no xdist worker of the run holds its pin (optionally remove the pin file)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        if not try_lock(fd, fcntl.LOCK_EX):
            return False
        if remove and _is_linked(fd, path):
            path.unlink()
        return True
    finally:
        os.close(fd)


def workers_gone(path: Path) -> bool:
    """True when nobody holds a pin on the pin file ``path`` (``<state dir>/runs/<run id>.workers``)."""
    return _workers_gone(path)


@final
class WorkerPin:
    """An xdist worker's shared lock on ``<state dir>/runs/<run id>.workers``.

    Held from before the worker's first machine until its machines are torn down.  While any
    worker holds it, the watchdog of a dead controller keeps purging, so a
    worker that outlives its controller cannot leave a machine behind.
    """

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path, fd: Optional[int]) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def hold(cls, run_id: str, directory: Optional[Path] = None) -> WorkerPin:
        """Take the pin of ``run_id``; a pin that cannot be taken within 5 s holds nothing."""
        path = _pins_path(state_dir() if directory is None else Path(directory), run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _PIN_TIMEOUT
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if try_lock(fd, fcntl.LOCK_SH) and _is_linked(fd, path):
                return cls(path, fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                return cls(path, None)
            time.sleep(0.05)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the pin (idempotent).  Call it after the worker's machines are deleted."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class InsecureStateDirError(WatchdogError):
    """The state directory could be written by someone else: the watchdog is not started from it."""


def check_state_dir(directory: Path) -> None:
    """Raise :class:`InsecureStateDirError` unless ``directory`` is ours and only we can write it.

    The watchdog reads and writes there as the user running pytest (often
    root in CI): a directory another user can write would let that user
    plant files the watchdog acts on.
    """
    try:
        info = directory.stat()
    except OSError:
        return  # created by us later, with mode 0o700
    owner_ok = info.st_uid == os.geteuid()
    if owner_ok and not info.st_mode & 0o022:
        return
    why = "is owned by another user" if not owner_ok else "is writable by group or others"
    raise InsecureStateDirError(
        f"the pytest-orbstack state directory {directory} {why}: use a directory only you can "
        f"write (chmod go-w {directory}) or point {STATE_DIR_ENV} at one",
        directory / LOG_NAME,
    )


#: What the watchdog's isolated interpreter runs (``python -I -c``): the module ``argv[1]`` as
#: ``__main__``, with this copy of the package's directory ``argv[2]`` (if any) last on the path.
_BOOT: Final = (
    "import runpy, sys; module = sys.argv.pop(1); root = sys.argv.pop(1); "
    "root and sys.path.append(root); runpy.run_module(module, run_name='__main__', alter_sys=True)"
)


def _package_root() -> str:
    """The directory this copy of the package is imported from, unless it is a site directory."""
    root = str(Path(__file__).resolve().parent.parent)
    return "" if os.path.basename(root) in ("site-packages", "dist-packages") else root


def _absolute_program(program: str) -> str:
    """``program`` as an absolute path where possible: the watchdog runs in another directory."""
    if os.sep in program:
        return os.path.abspath(program)
    return shutil.which(program) or program


def _rotate(log: Path) -> None:
    with contextlib.suppress(OSError):
        if log.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(log, log.with_name(log.name + ".1"))


@final
class Watchdog:
    """pytest's handle on the watchdog process of the run.

    Call :meth:`start` once the lease is held and before the first machine is
    created; call :meth:`finish` once the run has deleted its machines.
    """

    __slots__ = ("_process", "log", "pins", "run_id")

    def __init__(self, process: subprocess.Popen[bytes], run_id: str, log: Path, pins: Path) -> None:
        self._process = process
        self.run_id = run_id
        self.log = log
        self.pins = pins

    @classmethod
    def start(
        cls,
        run_id: str,
        prefix: str,
        orbctl: str,
        directory: Optional[Path] = None,
        *,
        settings: WatchdogSettings = WatchdogSettings(),
    ) -> Watchdog:
        """Start the watchdog of ``run_id`` (``directory``: the state directory of the run)."""
        home = Path(directory if directory is not None else state_dir()).absolute()
        check_state_dir(home)
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = home / LOG_NAME
        _rotate(log)
        # An isolated interpreter (-I: no PYTHON* variables, no user site, no current directory
        # on sys.path) started in "/": nothing in the state directory or the user's directory
        # can shadow a module the watchdog imports.
        argv = [
            sys.executable,
            "-I",
            "-c",
            _BOOT,
            "pytest_orbstack.reaper",
            _package_root(),
            *("--run-id", run_id, "--prefix", prefix, "--orbctl", _absolute_program(orbctl)),
            *("--state-dir", str(home), "--parent-pid", str(os.getpid())),
            *settings.to_argv(),
        ]
        try:
            with open(log, "ab") as out:
                process = subprocess.Popen(  # noqa: S603 (argv list, no shell)
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=out,
                    cwd="/",
                    env=dict(os.environ),  # an explicit copy: see client.execute (EFAULT race)
                    close_fds=True,
                    start_new_session=True,
                )
        except OSError as exc:
            raise WatchdogError(
                f"cannot start the pytest-orbstack watchdog ({exc}): machines of run {run_id} "
                f"would leak if pytest died; check that {sys.executable} can run",
                log,
            ) from exc
        return cls(process, run_id, log, _pins_path(home, run_id))

    @property
    def pid(self) -> int:
        return self._process.pid

    def exit_code(self) -> Optional[int]:
        """The watchdog's exit code if it has exited (it is reaped then), else ``None``."""
        return self._process.poll()

    def finish(self, timeout: float = 5.0) -> Optional[int]:
        """The run ended cleanly: tell the watchdog and reap it.

        If an xdist worker still holds its pin (it has not torn its machines
        down yet), hand over instead: the watchdog purges once the workers
        and pytest are gone.  Returns the watchdog's exit code, or ``None``
        after a hand-over.
        """
        if not _workers_gone(self.pins, remove=True):
            self.handover()
            return None
        self._close(_DONE)
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()  # our own child, by its pid
            return self._process.wait(timeout)

    def handover(self) -> None:
        """Leave the cleanup to the watchdog: it purges the run once pytest has exited."""
        self._close(b"")

    def _close(self, message: bytes) -> None:
        stdin = self._process.stdin
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            if message:
                stdin.write(message)
                stdin.flush()
        with contextlib.suppress(BrokenPipeError, OSError):
            stdin.close()


# ---------------------------------------------------------------------------
# The watchdog process


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
            if received.startswith(_DONE):
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
            if _is_linked(fd, path):
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
        if not kept and _is_linked(fd, path):
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
    pins = _pins_path(directory, run_id)
    outcome = _Outcome(deleted=[])
    client: Optional[Orbctl] = None
    backoff = 0.2
    while True:
        workers_gone = _workers_gone(pins, remove=True)
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
        if workers_gone and elapsed >= settings.linger:
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
        prog="python -m pytest_orbstack.reaper",
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
    """Entry point of ``python -m pytest_orbstack.reaper`` (started by :meth:`Watchdog.start`)."""
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
