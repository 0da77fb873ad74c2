"""Where the processes of a run, and the runs of a host, agree on base machines: locks and records.

Only one process of a run builds a base: the builder holds a
``filelock.FileLock`` named by the key under the run's lock directory
(``tmp_path_factory.getbasetemp().parent``, which xdist workers of one run
share) and leaves a small JSON record (:class:`BaseRecord`) next to it; the
others wait for the lock and read the record.  The record is written whole
(renamed into place), so once it exists a process reads it without the lock
(:meth:`BaseStore.recorded`): no process waits for a lock when it could be
cloning.  The record names the run, so a stale record of an earlier run
(without xdist that directory is shared between runs) is ignored.

Bases kept across runs (``--orb-reuse``) live in the state directory: their
builds hold ``bases/<key>.lock``, so concurrent runs never build the same base
twice, and every process that clones from one holds a shared ``flock`` on
``bases/<key>.users`` until its session ends; deleting the base needs that
lock exclusively, so a run never deletes a base another live run clones from.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Optional

from pytest_orbstack.errors import OrbstackError
from pytest_orbstack.ownership import try_lock

if TYPE_CHECKING:
    from pytest_orbstack.models import MachineSpec

__all__ = ["BUILD_POLL", "BaseBuildError", "BaseRecord", "BaseStore", "BuildTurn"]

#: How often a process waiting for another one's build tries the build lock (seconds):
#: the builder writes the record and lets go, and the waiting processes clone at once.
#: (``filelock``'s default, 50 ms, showed as 40-50 ms between the builder's clone and theirs.)
BUILD_POLL: Final = 0.01


class BaseBuildError(OrbstackError):
    """The base machine of a spec could not be built (or another worker failed to build it)."""

    def __init__(self, spec: MachineSpec, name: str, reason: str, worker: str = "", hint: str = "") -> None:
        self.spec = spec
        self.name = name
        self.reason = reason
        self.worker = worker
        by = f" by {worker}" if worker else ""
        tail = f" ({hint})" if hint else ""
        super().__init__(
            f"the base machine {name} ({spec.describe()}) could not be built{by}: {reason}{tail}"
        )


@dataclass(frozen=True)
class BaseRecord:
    """What the builder of a base leaves for the other processes of its run."""

    run_id: str
    key: str
    name: str
    worker: str
    error: Optional[str] = None
    reused: bool = False

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def load(cls, path: Path) -> Optional[BaseRecord]:
        try:
            data = json.loads(path.read_text())
            return cls(
                run_id=str(data["run_id"]),
                key=str(data["key"]),
                name=str(data["name"]),
                worker=str(data["worker"]),
                error=None if data.get("error") is None else str(data["error"]),
                reused=bool(data.get("reused", False)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class BuildTurn:
    """The run's build lock of one key, held: what an earlier holder left, or leave a record."""

    def __init__(self, store: BaseStore, key: str, path: Path) -> None:
        self._store = store
        self._key = key
        self._path = path
        #: the record a process of this run left (``None``: nobody built the base yet)
        self.record: Optional[BaseRecord] = None
        record = BaseRecord.load(path)
        if record is not None and record.run_id == store.run_id:
            self.record = record

    def built(self, name: str, *, reused: bool) -> None:
        """This process built (or found) the base ``name``."""
        store = self._store
        _write_atomic(
            self._path, BaseRecord(store.run_id, self._key, name, store.worker, reused=reused).dump()
        )

    def failed(self, name: str, reason: str) -> None:
        """The build of ``name`` failed: the others fail with ``reason`` instead of building again."""
        store = self._store
        _write_atomic(self._path, BaseRecord(store.run_id, self._key, name, store.worker, reason).dump())


class BaseStore:
    """The locks and records of the bases of one process: the run's, and those kept across runs."""

    def __init__(
        self,
        *,
        lock_dir: Path,
        run_id: str,
        worker: str,
        state_dir: Optional[Path] = None,
        lock_timeout: float = 1800.0,
    ) -> None:
        self.run_id = run_id
        self.worker = worker
        self._lock_dir = lock_dir
        self._state_dir = state_dir
        #: seconds to wait for another process's build
        self.lock_timeout = lock_timeout
        self._guard = threading.Lock()
        #: key -> descriptor holding a shared flock on the users file of a reused base
        self._users: dict[str, int] = {}

    def _stem(self, key: str) -> str:
        return f"orbstack-base-{key}-{self.run_id}"

    def recorded(self, key: str) -> Optional[BaseRecord]:
        """The record a process of this run left for ``key`` (built, or failed), read without the lock;
        ``None`` while nobody has finished it."""
        record = BaseRecord.load(self._lock_dir / f"{self._stem(key)}.json")
        return record if record is not None and record.run_id == self.run_id else None

    @contextlib.contextmanager
    def build_turn(self, spec: MachineSpec, key: str) -> Iterator[BuildTurn]:
        """Hold the run's build lock of ``key`` (waiting while another process builds it)."""
        import filelock  # noqa: PLC0415 (start-up time: only a process that builds a base needs it)

        self._lock_dir.mkdir(parents=True, exist_ok=True)
        stem = self._stem(key)
        lock = filelock.FileLock(str(self._lock_dir / f"{stem}.lock"), timeout=self.lock_timeout)
        try:
            lock.acquire(poll_interval=BUILD_POLL)
        except filelock.Timeout:
            raise BaseBuildError(
                spec,
                f"for key {key}",
                f"waited {self.lock_timeout:g}s for another worker to build it (lock {lock.lock_file})",
            ) from None
        try:
            yield BuildTurn(self, key, self._lock_dir / f"{stem}.json")
        finally:
            lock.release()

    @contextlib.contextmanager
    def reuse_lock(self, spec: MachineSpec, key: str, name: str) -> Iterator[None]:
        """Hold the host-wide build lock of the reused base ``name`` (key ``key``)."""
        import filelock  # noqa: PLC0415 (start-up time: only a process that reuses a base needs it)

        lock = filelock.FileLock(str(self._bases_dir() / f"{key}.lock"), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise BaseBuildError(
                spec,
                name,
                f"waited {self.lock_timeout:g}s for another run to build it (lock {lock.lock_file})",
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _bases_dir(self) -> Path:
        directory = (self._state_dir if self._state_dir is not None else self._lock_dir) / "bases"
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _users_fd(self, key: str) -> int:
        return os.open(self._bases_dir() / f"{key}.users", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def use(self, key: str) -> None:
        """Hold the shared lock of reused base ``key`` until :meth:`close`.

        Waits only while another run rebuilds the base: the lock is held
        exclusively just for that, under the base's build lock.
        """
        with self._guard:
            if key in self._users:
                return
        fd = self._users_fd(key)
        fcntl.flock(fd, fcntl.LOCK_SH)
        with self._guard:
            self._users[key] = fd

    @contextlib.contextmanager
    def taken_over(self, spec: MachineSpec, key: str, name: str) -> Iterator[None]:
        """The exclusive lock of reused base ``key`` while it is deleted and rebuilt, then shared.

        Fails at once if another live run clones from it.  Once the block ends
        without error this process is a user of the new base, like every other run.
        """
        fd = self._users_fd(key)
        if not try_lock(fd, fcntl.LOCK_EX):
            os.close(fd)
            raise BaseBuildError(
                spec,
                name,
                "another live run clones machines from it, so it is not deleted now",
                hint="run again with --orb-reuse=refresh once that run has ended",
            )
        try:
            yield
        except BaseException:
            os.close(fd)
            raise
        fcntl.flock(fd, fcntl.LOCK_SH)  # from builder to user, like every other run
        with self._guard:
            self._users[key] = fd

    def close(self) -> None:
        """The session ends: stop being a user of the reused bases (others may refresh them now)."""
        with self._guard:
            fds, self._users = list(self._users.values()), {}
        for fd in fds:
            os.close(fd)
