"""The clone fast path: one provisioned base machine per spec, cloned for every machine a test gets.

``orbctl create`` takes 10-20 s (minutes on first use of an image) while
``orbctl clone`` of a prepared machine takes seconds (OrbStack 2.0+).  So for
each distinct *base key* -- image, arch, user, the cloud-init user-data (its
content) and the registered ``pytest_orbstack_provision`` implementations
(their source code) -- a run creates ONE base machine, runs the provision
hooks on it once, and stops it; every ``orb_vm``, ``orb_vm_fresh`` and
``orb_machines.create`` is then ``orbctl clone`` of the base + ``start`` +
readiness.

Only one process of a run builds a base: the builder holds a
``filelock.FileLock`` named by the key under
``tmp_path_factory.getbasetemp().parent`` (the directory xdist workers of one
run share) and leaves a small JSON record next to it; the others wait for the
lock and read the record.  The record names the run, so a stale record of an
earlier run (without xdist that directory is shared between runs) is ignored.

Base names:

- run-scoped (default): an ordinary machine name of the run,
  ``<prefix><run id>-<worker>-<token>``, so the run's final purge deletes it
  and a crashed run's base is purged like any other orphan;
- reused (``--orb-reuse``): ``pytest-base-<key>``, outside the purge prefix, kept
  across runs; its key covers the provision hooks' source, so changing a hook
  builds a new base.  Builds of reused bases also hold a lock in the state
  directory, so concurrent runs never build the same base twice.  Every process
  that clones from a reused base holds a shared ``flock`` on
  ``<state dir>/bases/<key>.users`` until its session ends; deleting the base
  (``--orb-reuse=refresh``, or a base found broken) needs that lock exclusively,
  so a run never deletes a base another live run clones from.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final, Optional

import filelock

from pytest_orbstack import cloudinit, commands
from pytest_orbstack.diagnostics import with_logs
from pytest_orbstack.errors import (
    MachineDeadlineError,
    MachineNotFoundError,
    OrbctlCommandError,
    OrbctlTimeoutError,
    OrbstackError,
    first_line,
)
from pytest_orbstack.machine import Machine
from pytest_orbstack.models import OrbVersion
from pytest_orbstack.naming import REUSE_PREFIX
from pytest_orbstack.ownership import try_lock
from pytest_orbstack.provisioner import CreateSource, Made, clone_timeout
from pytest_orbstack.readiness import wait_ready, wake
from pytest_orbstack.settings import Clone, Reuse

if TYPE_CHECKING:
    from pytest_orbstack.models import MachineSpec
    from pytest_orbstack.provisioner import Provisioner

__all__ = [
    "REUSE_PREFIX",
    "SEAL",
    "BaseBuildError",
    "BaseManager",
    "CloneSource",
    "base_key",
    "clone_decision",
    "hook_sources",
    "install",
    "provision_sources",
    "reused_base_name",
    "volatile_message",
    "wait_seconds",
    "VolatileProvisionWarning",
]

#: Name prefix of bases kept across runs (``--orb-reuse``); never a purge prefix.
#: The first OrbStack with ``orbctl clone``.
CLONE_SINCE: Final = commands.CLONE_SINCE
#: Length of the hex key in file and machine names.
_KEY_CHARS: Final = 16
#: Seals a base before it is stopped (run as root): an empty ``/etc/machine-id`` makes systemd
#: give each clone its own id at boot; dbus's copy goes.  No file is made where there is none.
SEAL: Final = ("sh", "-c", "[ ! -e /etc/machine-id ] || : > /etc/machine-id; rm -f /var/lib/dbus/machine-id")


class VolatileProvisionWarning(UserWarning):
    """A provision hook wrote under /tmp or /run, which the clones tests get do not keep."""


def volatile_message(noted: Sequence[str]) -> str:
    """The warning for provision hooks whose commands named ``/tmp`` or ``/run`` (``noted``)."""
    more = f" (and {len(noted) - 1} more)" if len(noted) > 1 else ""
    return (
        f"pytest_orbstack_provision ran a command that names /tmp or /run: {noted[0]}{more}. "
        "Machines are clones of the provisioned base and boot afresh: /tmp and /run start empty "
        "and services started by hand are not running; keep files tests need elsewhere "
        "(/var/tmp, /opt, the home) and enable services (systemctl enable) or start them in "
        "pytest_orbstack_machine_ready"
    )


#: How long a base may stay ``stopping`` after ``orbctl stop`` returned (its stop kills after 5 s).
STOPPED_WAIT: Final = 30.0


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


# --- what a base is: its key ---------------------------------------------------------------------


def _source_of(function: Callable[..., object]) -> str:
    """The source code of a hook implementation, or failing that its compiled code."""
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        code = getattr(function, "__code__", None)
        return code.co_code.hex() if code is not None else repr(function)


def hook_sources(hookimpls: Iterable[Any]) -> list[str]:
    """One text per ``pytest_orbstack_provision`` implementation: where it lives and its source.

    ``hookimpls`` are pluggy ``HookImpl`` objects (``config.hook.pytest_orbstack_provision.get_hookimpls()``),
    given in call order, which is part of what a base is.
    """
    texts = []
    for impl in hookimpls:
        function = impl.function
        where = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"
        texts.append(f"{where}\n{_source_of(function)}")
    return texts


def _file_digest(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:  # validated earlier; a file removed since then still gets a distinct key
        return f"unreadable: {exc.strerror}"


def base_key(spec: MachineSpec, sources: Sequence[str]) -> str:
    """The hex key of the base for ``spec`` provisioned by hooks with ``sources``."""
    payload = {
        "image": spec.image,
        "arch": spec.arch,
        "user": spec.user,
        "user_data": _file_digest(spec.user_data),
        "provision": list(sources),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_KEY_CHARS]


def reused_base_name(key: str) -> str:
    """The name of the base kept across runs (``--orb-reuse``) for ``key``."""
    return f"{REUSE_PREFIX}{key}"


def clone_decision(mode: Clone, version: Optional[OrbVersion]) -> tuple[bool, Optional[str]]:
    """(clone?, note) for ``--orb-clone mode`` with OrbStack ``version`` (``None``: unknown).

    ``note`` is the one header line that explains a fallback to ``create``.
    ``always`` with a version known to be too old raises :class:`ValueError`
    (the caller turns it into a usage error).
    """
    if mode == Clone.NEVER:
        return False, None
    if version is not None and version < CLONE_SINCE:
        if mode == Clone.ALWAYS:
            raise ValueError(
                f"OrbStack {version} has no 'orbctl clone' (needs {CLONE_SINCE}+); "
                "update OrbStack or use --orb-clone auto"
            )
        return False, (
            f"OrbStack {version} has no 'orbctl clone' ({CLONE_SINCE}+): every machine is created "
            "with 'orbctl create' (slower)"
        )
    return True, None


# --- the records the builder leaves for the other workers ----------------------------------------


@dataclass(frozen=True)
class _Record:
    run_id: str
    key: str
    name: str
    worker: str
    error: Optional[str] = None
    reused: bool = False

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def load(cls, path: Path) -> Optional[_Record]:
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


# --- building and cloning ------------------------------------------------------------------------


class BaseManager:
    """Builds (or finds) the base of each key, once per run, and remembers it in this process."""

    def __init__(
        self,
        provisioner: Provisioner,
        *,
        lock_dir: Path,
        sources: Callable[[], Sequence[str]],
        reuse: Reuse = Reuse.OFF,
        state_dir: Optional[Path] = None,
        lock_timeout: float = 1800.0,
    ) -> None:
        if reuse not in tuple(Reuse):
            raise ValueError(f"reuse must be one of {', '.join(map(str, Reuse))}, got {reuse!r}")
        self._p = provisioner
        self._lock_dir = lock_dir
        self._sources = sources
        self.reuse = reuse
        self._state_dir = state_dir
        self._lock_timeout = lock_timeout
        self._guard = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        #: key -> base name, for bases ready in this process
        self._known: dict[str, str] = {}
        #: run-scoped bases this process built (the controller reports their deletion)
        self.built: list[str] = []
        self._source_texts: Optional[tuple[str, ...]] = None
        #: key -> descriptor holding a shared flock on the users file of a reused base
        self._users: dict[str, int] = {}
        #: the /tmp-or-/run warning was given (once per process)
        self._volatile_warned = False

    def key(self, spec: MachineSpec) -> str:
        with self._guard:
            if self._source_texts is None:  # hooks are registered before any machine is made
                self._source_texts = tuple(self._sources())
            texts = self._source_texts
        return base_key(spec, texts)

    def base_for(self, spec: MachineSpec) -> str:
        """The name of the stopped, provisioned base for ``spec``; builds it if this run has none yet."""
        key = self.key(spec)
        with self._guard:
            known = self._known.get(key)
            if known is not None:
                return known
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # threads of one process (create_many) wait for one build
            with self._guard:
                if key in self._known:
                    return self._known[key]
            name = self._obtain_shared(spec, key)
            with self._guard:
                self._known[key] = name
            return name

    def close(self) -> None:
        """The session ends: stop being a user of the reused bases (others may refresh them now)."""
        with self._guard:
            fds, self._users = list(self._users.values()), {}
        for fd in fds:
            os.close(fd)

    # --- across processes --------------------------------------------------------------------

    def _obtain_shared(self, spec: MachineSpec, key: str) -> str:
        p = self._p
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        stem = f"orbstack-base-{key}-{p.run_id}"
        record_path = self._lock_dir / f"{stem}.json"
        lock = filelock.FileLock(str(self._lock_dir / f"{stem}.lock"), timeout=self._lock_timeout)
        start = p.clock()
        try:
            lock.acquire()
        except filelock.Timeout:
            raise BaseBuildError(
                spec,
                f"for key {key}",
                f"waited {self._lock_timeout:g}s for another worker to build it (lock {lock.lock_file})",
            ) from None
        try:
            record = _Record.load(record_path)
            if record is not None and record.run_id == p.run_id:
                if record.error is not None:
                    raise BaseBuildError(spec, record.name, record.error, record.worker)
                waited = p.clock() - start
                if waited >= 1.0:
                    p.stats.event(
                        f"waited {waited:.1f}s for base {record.name} built by {record.worker}", verbose=True
                    )
                if record.reused:
                    self._use(key)
                return record.name
            reused = self.reuse != Reuse.OFF
            try:
                name = self._obtain_reused(spec, key) if reused else self._build(spec, p.new_name())
            except BaseBuildError as exc:
                _write_atomic(record_path, _Record(p.run_id, key, exc.name, p.worker, exc.reason).dump())
                raise
            if not reused:
                with self._guard:
                    self.built.append(name)
            _write_atomic(record_path, _Record(p.run_id, key, name, p.worker, reused=reused).dump())
            return name
        finally:
            lock.release()

    def _bases_dir(self) -> Path:
        directory = (self._state_dir if self._state_dir is not None else self._lock_dir) / "bases"
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _users_fd(self, key: str) -> int:
        return os.open(self._bases_dir() / f"{key}.users", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _use(self, key: str) -> None:
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

    def _take_over(self, spec: MachineSpec, key: str, name: str) -> int:
        """The exclusive lock of reused base ``key``, needed to delete it; fails if another run uses it."""
        fd = self._users_fd(key)
        if not try_lock(fd, fcntl.LOCK_EX):
            os.close(fd)
            raise BaseBuildError(
                spec,
                name,
                "another live run clones machines from it, so it is not deleted now",
                hint="run again with --orb-reuse=refresh once that run has ended",
            )
        return fd

    def _obtain_reused(self, spec: MachineSpec, key: str) -> str:
        """The base kept across runs: found, or (re)built under a lock in the state directory."""
        name = reused_base_name(key)
        lock = filelock.FileLock(str(self._bases_dir() / f"{key}.lock"), timeout=self._lock_timeout)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise BaseBuildError(
                spec,
                name,
                f"waited {self._lock_timeout:g}s for another run to build it (lock {lock.lock_file})",
            ) from None
        try:
            state = self._state_of(spec, name)
            # Only a stopped base is a finished one: a base is renamed to its reuse name
            # after it was provisioned and stopped (below), so anything else is suspect.
            if state is not None and self.reuse == Reuse.ON and state == "stopped":
                self._use(key)
                self._p.stats.event(f"reusing base {name} ({spec.describe()})", verbose=True)
                return name
            if state is None:
                built = self._build_renamed(spec, name)
                self._use(key)
                return built
            fd = self._take_over(spec, key, name)  # nobody clones from it while we rebuild
            try:
                why = "--orb-reuse=refresh" if self.reuse == Reuse.REFRESH else f"it is {state}"
                self._p.stats.event(f"rebuilding base {name} ({why})")
                self._p.delete_name(name)
                built = self._build_renamed(spec, name)
            except BaseException:
                os.close(fd)
                raise
            fcntl.flock(fd, fcntl.LOCK_SH)  # from builder to user, like every other run
            with self._guard:
                self._users[key] = fd
            return built
        finally:
            lock.release()

    def _build_renamed(self, spec: MachineSpec, name: str) -> str:
        """Build under a name of this run (purged if we die meanwhile), then take ``name``."""
        building = self._build(spec, self._p.new_name())
        try:
            self._p.client.rename(building, name)
        except OrbstackError as exc:
            with contextlib.suppress(Exception):
                self._p.delete_name(building)
            raise BaseBuildError(spec, name, f"rename {building} failed: {first_line(exc)}") from exc
        return name

    def _state_of(self, spec: MachineSpec, name: str) -> Optional[str]:
        try:
            for info in self._p.client.list():
                if info.name == name:
                    return str(info.state)
        except OrbctlCommandError as exc:
            raise BaseBuildError(spec, name, f"orbctl list failed: {first_line(exc)}") from None
        return None

    # --- the build ---------------------------------------------------------------------------

    def _build(self, spec: MachineSpec, name: str) -> str:
        """Create ``name``, run the provision hooks on it, stop it.  Deleted again on any failure.

        A base is a machine too: its create, readiness and stop keep within its overall
        deadline (``--orb-machine-timeout``); cloud-init and the provision hooks are not
        charged to it (they are the user's, with their own timeouts).
        """
        p = self._p
        start = p.clock()
        deadline = p.deadline(name)
        p.stats.waiting(f"building base machine {name} ({spec.describe()}): create, provision hooks, stop")
        try:
            made = CreateSource(p).make(spec, name, deadline=deadline)
        except OrbstackError as exc:
            raise BaseBuildError(spec, name, f"{type(exc).__name__}: {first_line(exc)}") from exc
        machine = Machine(p, name, spec, made.info)
        try:
            with deadline.excluding():
                if spec.user_data is not None:
                    cloudinit.check(machine, p.ready_timeout - made.ready_seconds, p.stats.event)
                machine.watch_volatile()
                p.hooks.provision(machine)
                self._warn_volatile(machine.volatile_commands())
                machine.run(list(SEAL), user="root", workdir="/")
            p.with_retry(f"stop of {name}", lambda: p.client.stop(name), deadline=deadline)
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            if isinstance(exc, Exception):  # the console log, gathered before the machine goes
                reason = with_logs(reason, p.client, name)
            with contextlib.suppress(Exception):
                p.delete_name(name)
            if isinstance(exc, cloudinit.CloudInitError):
                raise BaseBuildError(spec, name, str(exc)) from exc
            if isinstance(exc, Exception):
                raise BaseBuildError(spec, name, reason) from exc
            raise
        self._check_stopped(spec, name)
        p.stats.event(
            f"built base {name} ({spec.describe()}) in {p.clock() - start:.1f}s: "
            "provisioned and stopped; machines are clones of it",
            verbose=True,
        )
        return name

    def _warn_volatile(self, noted: Sequence[str]) -> None:
        """Warn (once per process) that provision hooks named /tmp or /run."""
        with self._guard:
            if not noted or self._volatile_warned:
                return
            self._volatile_warned = True
        message = volatile_message(noted)
        self._p.stats.event(message)
        warnings.warn(VolatileProvisionWarning(message), stacklevel=2)

    def _check_stopped(self, spec: MachineSpec, name: str) -> None:
        """After its stop, the base must exist and be ``stopped`` before anything is cloned from it.

        OrbStack 1.8 deleted a machine stopped soon after its create (its issue #1583), and a
        stop may return while the machine is still ``stopping``: wait up to
        :data:`STOPPED_WAIT` seconds for ``stopped``.  A base that vanished, or that does not
        stop (then deleted), is a :class:`BaseBuildError`: building it again would meet the
        same fate.  One ``orbctl info`` per base build.
        """
        p = self._p
        deadline = p.clock() + STOPPED_WAIT
        while True:
            try:
                state = str(p.client.info(name).state)
            except MachineNotFoundError:
                raise BaseBuildError(
                    spec,
                    name,
                    "it vanished when it was stopped (OrbStack 1.8 deleted machines stopped soon "
                    "after their create: update OrbStack)",
                    hint="--orb-clone never creates every machine instead",
                ) from None
            except OrbctlCommandError as exc:
                state = f"unknown (orbctl info: {first_line(exc)})"
            if state == "stopped":
                return
            if p.clock() >= deadline:
                with contextlib.suppress(Exception):
                    p.delete_name(name)
                raise BaseBuildError(
                    spec,
                    name,
                    f"it is {state}, not stopped, {STOPPED_WAIT:g}s after orbctl stop",
                    hint="--orb-clone never creates every machine instead",
                )
            p.sleep(0.2)


class CloneSource:
    """A :class:`~pytest_orbstack.provisioner.MachineSource`: ``orbctl clone`` of the spec's base, started
    by its first command (``orbctl run`` starts a stopped machine), which is also the readiness probe.

    A clone that fails or times out is deleted; transient failures of clone and
    start are retried like create's.  Clone, start and readiness keep within the
    machine's overall deadline (``--orb-machine-timeout``), which starts once the
    base is there (the base is a machine of its own, with its own deadline).  The
    machine is handed out already provisioned (the hooks ran on the base); the
    ready hook still runs on it.
    """

    def __init__(self, provisioner: Provisioner, bases: BaseManager) -> None:
        self._p = provisioner
        self.bases = bases

    def close(self, *, wait: bool = True) -> None:
        """Let go of the reused bases (run-scoped bases end with the run's purge)."""
        self.bases.close()

    def make(self, spec: MachineSpec, name: str) -> Made:
        p = self._p
        base = self.bases.base_for(spec)
        start = p.clock()
        deadline = p.deadline(name)

        def clone() -> None:
            p.client.clone(base, name, **deadline.cap_kwargs(clone_timeout(p.client)))

        try:
            p.with_retry(f"clone of {base} as {name}", clone, kind="clone", deadline=deadline)
        except OrbctlTimeoutError as exc:
            p.delete_name(name)  # a killed clone may have left the copy behind
            deadline.check(exc)
            raise
        except MachineDeadlineError:
            with contextlib.suppress(Exception):
                p.delete_name(name)  # a failed attempt may have left the copy behind
            raise
        except MachineNotFoundError as exc:
            raise BaseBuildError(
                spec,
                base,
                f"it vanished ({first_line(exc)}); was it deleted by hand?",
                hint="--orb-clone never creates every machine instead",
            ) from exc
        cloned = p.clock()
        try:
            # `orbctl run` starts a stopped machine: the first command is the start, and the probe
            homes: list[Optional[str]] = []
            p.with_retry(
                f"start of {name}",
                lambda: homes.append(wake(p.client, name, deadline.cap(p.ready_timeout))),
                deadline=deadline,
            )
            info = wait_ready(
                p.client,
                name,
                deadline.cap(p.ready_timeout),
                probed=True,
                home=homes[-1],
                clock=p.clock,
                sleep=p.sleep,
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                p.delete_name(name)
            if isinstance(exc, OrbstackError):
                deadline.check(exc)
            raise
        return Made(info, cloned - start, p.clock() - cloned, provisioned=True)


def provision_sources(hook_caller: Any) -> list[str]:
    """:func:`hook_sources` of the implementations registered on ``config.hook.pytest_orbstack_provision``."""
    return hook_sources(hook_caller.get_hookimpls())


def install(
    provisioner: Provisioner,
    *,
    clone: Clone,
    version: Optional[OrbVersion],
    reuse: Reuse,
    lock_dir: Path,
    sources: Callable[[], Sequence[str]],
    state_dir: Optional[Path] = None,
    lock_timeout: float = 1800.0,
) -> Optional[BaseManager]:
    """Switch ``provisioner`` to cloning (when :func:`clone_decision` says so); the manager, or ``None``.

    Raises :class:`ValueError` for ``clone="always"`` with an OrbStack without clone.
    """
    on, _ = clone_decision(clone, version)
    if not on:
        return None
    manager = BaseManager(
        provisioner,
        lock_dir=lock_dir,
        sources=sources,
        reuse=reuse,
        state_dir=state_dir,
        lock_timeout=lock_timeout,
    )
    provisioner.source = CloneSource(provisioner, manager)
    return manager


def wait_seconds(create_timeout: Optional[float], ready_timeout: float, retries: int) -> float:
    """How long a worker waits for another one's build: every attempt of create + readiness, + slack."""
    per_attempt = (create_timeout if create_timeout is not None else 600.0) + ready_timeout
    return per_attempt * (retries + 1) + 300.0
