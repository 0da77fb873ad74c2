"""Which run owns which machine, and the purge of orphans.

Longer than most modules on purpose: the run's lease and the purge read the
same rule (whose run is alive) and the same lease files; apart, each would
need the other's internals.

The ownership rule: a machine belongs to the run whose id ends its name
(:mod:`pytest_orbstack.naming`), and a run is alive while the process its
run id names exists on this host with the same start time
(:mod:`pytest_orbstack.processes`).  Every run on one OrbStack sees the same
names and the same process table, so all agree whatever their ``HOME``,
``XDG_STATE_HOME`` or ``PYTEST_ORBSTACK_STATE_DIR``.

The purge removes machines that carry the prefix and belong to no live run.
It never touches a machine without the prefix, a machine of a live run
(whatever prefix that run uses), a machine kept for debugging (renamed to
``pytest-kept-...``) or a reused base (``pytest-base-...``).

The state directory is a cache.  A run still writes a lease there
(``<state dir>/runs/<run id>.json``, ``flock``-ed for the run's life) for its
watchdog and for people reading it; no purge decision depends on it, except
for machines named by earlier versions of the plugin (8-character run ids,
no owner process): those count as alive while a lease in this state
directory says so.
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
from pytest_orbstack.naming import KEPT_PREFIX, REUSE_PREFIX, owner_of, run_id_of
from pytest_orbstack.processes import owner_is_alive

if TYPE_CHECKING:
    from pytest_orbstack.orbctl import Orbctl

__all__ = [
    "Lease",
    "lease_path",
    "runs_dir",
    "try_lock",
    "PurgeResult",
    "RunLease",
    "delete_each_or_all",
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
    #: machines the run kept for debugging, by their ``pytest-kept-...`` names (for reference:
    #: their name keeps them from the purge)
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
        runs.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the state directory: ours only
        runs.mkdir(mode=0o700, exist_ok=True)
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
        """Record machines kept for debugging (for reference; their names protect them)."""
        kept = tuple(dict.fromkeys((*self.lease.kept, *names)))
        self.lease = Lease(**{**self.lease.__dict__, "kept": kept})
        self._write()

    def release(self) -> None:
        """Remove the lease (left for reference if it records kept machines) and drop the lock."""
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
    """True while the process owning ``run_id`` runs (see the module's docstring).

    A run id of an earlier version names no process: it is alive while its
    lease in ``directory`` is locked.
    """
    owner = owner_of(run_id)
    if owner is not None:
        return owner_is_alive(*owner)
    with _inspect(lease_path(run_id, directory)) as (live, _):
        return live


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
    machines (``pytest-kept-...``) and reused bases (``pytest-base-...``)
    never qualify.  ``directory`` is only read for run ids of earlier versions.
    """
    live: dict[str, bool] = {}
    names = []
    for machine in machines:
        name = machine.name
        if not name.startswith(prefix) or name.startswith((REUSE_PREFIX, KEPT_PREFIX)):
            continue
        run_id = run_id_of(name)
        if run_id is not None and run_id == own_run_id:
            names.append(name)
            continue
        if not others:
            continue
        if run_id is not None and run_id not in live:
            live[run_id] = run_is_live(run_id, directory)
        if run_id is None or not live[run_id]:
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


def purge(
    client: Orbctl,
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
    the rest once more.  A multi-name delete that fails otherwise is
    followed by one delete per name, so one machine OrbStack cannot delete
    does not keep every other one.  Leases of dead runs are removed from
    the state directory.
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
            result = delete_each_or_all(client, [name for name in names if name in present])
        except OrbctlCommandError:
            result = _delete_one_by_one(client, names)
    if others:
        _forget_dead_leases(directory)
    return result


def delete_each_or_all(client: Orbctl, names: Sequence[str]) -> PurgeResult:
    """Delete ``names`` in one call; if that fails, one call per name (a gone machine counts as deleted)."""
    if not names:
        return PurgeResult()
    try:
        client.delete(*names)
    except OrbctlCommandError:
        return _delete_one_by_one(client, names)
    return PurgeResult(deleted=tuple(names))


def _delete_one_by_one(client: Orbctl, names: Sequence[str]) -> PurgeResult:
    deleted: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    for name in names:
        try:
            client.delete(name)
        except MachineNotFoundError:
            continue  # gone meanwhile: nothing left to do
        except OrbctlCommandError as exc:
            failed.append(name)
            errors.append(first_line(exc))
            continue
        deleted.append(name)
    return PurgeResult(deleted=tuple(deleted), failed=tuple(failed), error=errors[0] if errors else None)


def _forget_dead_leases(directory: Optional[Path]) -> None:
    """Remove the leases of runs that ended (their lock is free): the state directory is a cache."""
    runs = runs_dir(directory)
    if not runs.is_dir():
        return
    for path in runs.glob("*.json"):
        with _inspect(path) as (live, _):
            if not live:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
