"""pytest's side of the crash-safe watchdog: the handle on its process, the workers' pins.

Before the run's first machine the controller (or the only process, without
xdist) starts :class:`Watchdog`: the watchdog process (``pytest_orbstack.watchdog``,
which says what it does) run by an isolated interpreter (``python -I``,
started in ``/``, from a state directory only the user can write,
:func:`check_state_dir`) in its own session, so Ctrl-C in the terminal and
the death of pytest do not reach it.  Its stdin is a pipe whose only writer
is pytest: :meth:`Watchdog.finish` writes ``done`` once the run cleaned up
after itself; :meth:`Watchdog.handover` closes the pipe and leaves the purge
to the watchdog, as pytest's death does.

xdist workers hold a shared lock on ``<state dir>/runs/<run id>.workers``
(:class:`WorkerPin`) until they have torn their machines down, so a worker
that outlives its controller cannot create a machine after the last purge.

Everything the watchdog does is bounded by :class:`WatchdogSettings` (handed
to it in its argv); what goes wrong is logged to ``<state dir>/reaper.log``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final, Optional, final

from pytest_orbstack.errors import OrbstackError
from pytest_orbstack.ownership import STATE_DIR_ENV, runs_dir, state_dir, try_lock

__all__ = [
    "DONE",
    "LOG_NAME",
    "PROCESS_MODULE",
    "InsecureStateDirError",
    "Watchdog",
    "WatchdogError",
    "WatchdogSettings",
    "WorkerPin",
    "check_state_dir",
    "is_linked",
    "pins_path",
    "workers_gone",
]

#: The watchdog's log, in the state directory.
LOG_NAME: Final = "reaper.log"
#: The module the watchdog's interpreter runs: the watchdog process.
PROCESS_MODULE: Final = "pytest_orbstack.watchdog"
#: The log is moved to ``reaper.log.1`` when a watchdog starts and finds it larger.
_LOG_ROTATE_BYTES: Final = 1 << 20
#: What pytest writes to the watchdog's stdin once the run cleaned up after itself.
DONE: Final = b"done\n"
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


def pins_path(directory: Path, run_id: str) -> Path:
    """The file the xdist workers of ``run_id`` pin (``<state dir>/runs/<run id>.workers``)."""
    return runs_dir(directory) / f"{run_id}.workers"


def is_linked(fd: int, path: Path) -> bool:
    """True if ``fd`` is still the file at ``path`` (not unlinked or replaced meanwhile)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def workers_gone(path: Path, *, remove: bool = False) -> bool:
    """True when no xdist worker of the run holds a pin on ``path`` (:func:`pins_path`).

    ``remove``: then remove the pin file, under its lock.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        if not try_lock(fd, fcntl.LOCK_EX):
            return False
        if remove and is_linked(fd, path):
            path.unlink()
        return True
    finally:
        os.close(fd)


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
        path = pins_path(state_dir() if directory is None else Path(directory), run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _PIN_TIMEOUT
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if try_lock(fd, fcntl.LOCK_SH) and is_linked(fd, path):
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
            PROCESS_MODULE,
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
        return cls(process, run_id, log, pins_path(home, run_id))

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
        if not workers_gone(self.pins, remove=True):
            self.handover()
            return None
        self._close(DONE)
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
