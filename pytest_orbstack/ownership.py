"""Which run owns which machine, and the purge of orphans.

A run holds an exclusive ``flock`` on its lease file
``<state dir>/runs/<run id>.json`` for its whole life.  The operating system
drops that lock when the process ends, however it ends (clean exit, crash,
SIGKILL), so "is this run alive?" is simply "is its lease locked?": no pid
can be reused into a false answer and no clock is involved.

The purge removes machines that carry the prefix and belong to no live run.
It never touches a machine without the prefix, a machine of a live run
(whatever prefix that run uses), or a machine a run kept for debugging.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Optional, Protocol

from pytest_orbstack.errors import MachineNotFoundError, OrbctlCommandError, first_line
from pytest_orbstack.naming import REUSE_PREFIX, run_id_of

if TYPE_CHECKING:
    from pytest_orbstack.models import MachineInfo

__all__ = [
    "Lease",
    "lease_path",
    "runs_dir",
    "try_lock",
    "PurgeResult",
    "RunLease",
    "purge",
    "purgeable",
    "run_is_live",
    "state_dir",
]

#: Environment variable that moves the state directory (tests, CI caches).
STATE_DIR_ENV: Final = "PYTEST_ORBSTACK_STATE_DIR"
_RUNS: Final = "runs"


def state_dir(environ: Optional[Mapping[str, str]] = None) -> Path:
    """The per-user state directory of pytest-orbstack.

    ``$PYTEST_ORBSTACK_STATE_DIR``, else ``$XDG_STATE_HOME/pytest-orbstack``,
    else ``~/.local/state/pytest-orbstack``.
    """
    env = os.environ if environ is None else environ
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "pytest-orbstack"
    return Path.home() / ".local" / "state" / "pytest-orbstack"


def runs_dir(directory: Optional[Path] = None) -> Path:
    """Where the leases (``<run id>.json``) and worker pins of runs live."""
    return (directory if directory is not None else state_dir()) / _RUNS


def lease_path(run_id: str, directory: Optional[Path] = None) -> Path:
    """The lease file of ``run_id``."""
    return runs_dir(directory) / f"{run_id}.json"


@dataclass(frozen=True)
class Lease:
    """What a lease file says about a run."""

    #: the run id, as it appears in the run's machine names
    run_id: str
    #: pid of the process holding the lease (the controller, or the only process)
    pid: int
    #: host name of that process
    host: str
    #: when the run started (seconds since the epoch)
    started: float
    #: the machine name prefix the run uses
    prefix: str
    #: the orbctl the run uses
    orbctl: str
    #: machines the run kept for debugging: never purged
    kept: tuple[str, ...] = field(default=())

    def to_json(self) -> str:
        data = {
            "run_id": self.run_id,
            "pid": self.pid,
            "host": self.host,
            "started": self.started,
            "prefix": self.prefix,
            "orbctl": self.orbctl,
            "kept": list(self.kept),
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Lease:
        data = json.loads(text)
        return cls(
            run_id=str(data["run_id"]),
            pid=int(data["pid"]),
            host=str(data["host"]),
            started=float(data["started"]),
            prefix=str(data["prefix"]),
            orbctl=str(data.get("orbctl", "")),
            kept=tuple(str(name) for name in data.get("kept", ())),
        )


def try_lock(fd: int, operation: int = fcntl.LOCK_EX) -> bool:
    """Take the ``flock`` ``operation`` on ``fd`` without waiting; False if someone holds it."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class RunLease:
    """The lease of the current run: held from before the first machine until the end.

    The file descriptor is not inherited by child processes (Python opens
    files close-on-exec), so xdist workers and the watchdog never hold it.
    """

    def __init__(self, path: Path, fd: int, lease: Lease) -> None:
        self.path = path
        self._fd: Optional[int] = fd
        self.lease = lease

    @classmethod
    def acquire(cls, run_id: str, prefix: str, orbctl: str, directory: Optional[Path] = None) -> RunLease:
        """Write the lease of ``run_id`` and lock it."""
        runs = runs_dir(directory)
        runs.mkdir(parents=True, exist_ok=True)
        path = runs / f"{run_id}.json"
        if path.exists():
            raise FileExistsError(f"a lease for run id {run_id} exists already: {path}")
        # Lock and fill a private file first, then rename it into place: a purge
        # never sees the lease half-written or unlocked.
        staging = runs / f".{run_id}.{os.getpid()}.tmp"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        lease = Lease(run_id, os.getpid(), socket.gethostname(), time.time(), prefix, orbctl)
        self = cls(path, fd, lease)
        self._write()
        os.rename(staging, path)
        return self

    def _write(self) -> None:
        assert self._fd is not None, "lease already released"
        data = self.lease.to_json().encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def keep(self, names: Iterable[str]) -> None:
        """Record machines kept for debugging: no purge will delete them."""
        kept = tuple(dict.fromkeys((*self.lease.kept, *names)))
        self.lease = Lease(**{**self.lease.__dict__, "kept": kept})
        self._write()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lease (kept unless it records kept machines) and drop the lock."""
        if self._fd is None:
            return
        if not self.lease.kept:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def _inspect(path: Path) -> Iterator[tuple[bool, Optional[Lease]]]:
    """Yield (live, lease) for a lease file; a dead lease stays locked by us meanwhile."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        yield False, None
        return
    try:
        live = not try_lock(fd)
        try:
            lease: Optional[Lease] = Lease.from_json(path.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            lease = None
        yield live, lease
    finally:
        os.close(fd)


def run_is_live(run_id: str, directory: Optional[Path] = None) -> bool:
    """True while the run ``run_id`` holds its lease."""
    with _inspect(lease_path(run_id, directory)) as (live, _):
        return live


def _leases(directory: Optional[Path]) -> dict[str, tuple[bool, Optional[Lease]]]:
    runs = runs_dir(directory)
    found: dict[str, tuple[bool, Optional[Lease]]] = {}
    if not runs.is_dir():
        return found
    for path in sorted(runs.glob("*.json")):
        with _inspect(path) as state:
            found[path.stem] = state
    return found


class _Named(Protocol):
    @property
    def name(self) -> str: ...


def purgeable(
    machines: Sequence[_Named],
    prefix: str,
    *,
    directory: Optional[Path] = None,
    own_run_id: Optional[str] = None,
    others: bool = True,
) -> list[str]:
    """Names among ``machines`` that the purge may delete.

    A machine qualifies when its name starts with ``prefix`` and it belongs to
    ``own_run_id`` or (unless ``others`` is false) to no live run; kept
    machines and reused bases (``pytest-base-...``) never qualify.
    """
    leases = _leases(directory)
    kept = {name for _, lease in leases.values() if lease for name in lease.kept}
    names = []
    for machine in machines:
        name = machine.name
        if not name.startswith(prefix) or name in kept or name.startswith(REUSE_PREFIX):
            continue
        run_id = run_id_of(name)
        ours = run_id is not None and run_id == own_run_id
        orphan = not (run_id is not None and leases.get(run_id, (False, None))[0])
        if ours or (others and orphan):
            names.append(name)
    return names


@dataclass(frozen=True)
class PurgeResult:
    """What a purge did."""

    #: machines deleted
    deleted: tuple[str, ...] = ()
    #: machines that could not be deleted
    failed: tuple[str, ...] = ()
    #: why they could not (the orbctl error), if any failed
    error: Optional[str] = None


class _PurgeClient(Protocol):
    def list(self) -> list[MachineInfo]: ...

    def delete(self, *names: str, force: bool = True) -> None: ...


def purge(
    client: _PurgeClient,
    prefix: str,
    *,
    directory: Optional[Path] = None,
    own_run_id: Optional[str] = None,
    others: bool = True,
) -> PurgeResult:
    """Delete every purgeable machine: one ``list`` and one multi-name ``delete``.

    With ``others=False`` only the machines of ``own_run_id`` (``--orb-no-purge``).

    orbctl deletes nothing when one of several names is missing, so if a
    machine vanished between our list and our delete, list again and delete
    the rest once more.  Leases of dead runs that keep nothing are removed.
    """
    machines = client.list()
    names = purgeable(machines, prefix, directory=directory, own_run_id=own_run_id, others=others)
    result = PurgeResult()
    if names:
        try:
            client.delete(*names)
            result = PurgeResult(deleted=tuple(names))
        except MachineNotFoundError:
            present = {m.name for m in client.list()}
            rest = [name for name in names if name in present]
            result = _delete_rest(client, rest)
        except OrbctlCommandError as exc:
            result = PurgeResult(failed=tuple(names), error=first_line(exc))
    if others:
        _forget_dead_leases(directory, {m.name for m in machines} - set(result.deleted))
    return result


def _delete_rest(client: _PurgeClient, names: list[str]) -> PurgeResult:
    if not names:
        return PurgeResult()
    try:
        client.delete(*names)
    except OrbctlCommandError as exc:
        return PurgeResult(failed=tuple(names), error=first_line(exc))
    return PurgeResult(deleted=tuple(names))


def _forget_dead_leases(directory: Optional[Path], still_there: set[str]) -> None:
    """Remove leases of dead runs, unless they keep a machine that still exists."""
    runs = runs_dir(directory)
    if not runs.is_dir():
        return
    for path in runs.glob("*.json"):
        with _inspect(path) as (live, lease):
            if live:
                continue
            if lease is None or not set(lease.kept) & still_there:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
