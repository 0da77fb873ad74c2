"""The machine registry of one ``$ORBSIM_HOME``, safe for many concurrent orbsim processes.

Layout of ``$ORBSIM_HOME`` (default ``$XDG_DATA_HOME/orbsim``, else
``~/.local/share/orbsim``)::

    state.json        the registry (machines, default machine, config, fault counters)
    state.lock        flock(2) guarding state.json: every read-modify-write holds it
    machines/<id>/    one directory per machine, owned by the engine
    argv.log          every argv orbsim received, one JSON array per line

``state.json`` is replaced atomically (write a temporary file, fsync, rename), so a
reader never sees a half-written registry and a killed orbsim never corrupts it.
Long work (making, booting, deleting a machine) runs *outside* the lock: the
machine is first put in a transitional state (``creating``, ``starting``, ...)
owned by the orbsim process doing the work (``op_pid`` + its start time), so
other processes see that state, refuse conflicting transitions, and can tell
when the owner died.
"""

from __future__ import annotations

import os
import time

from .fastrun import home_dir
from .fsutil import flocked
from .jsontext import dumps, loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional, TypedDict

    class _Machine(TypedDict):
        id: str
        name: str
        #: the image as OrbStack records it (``ubuntu``, ``jammy``, ``amd64``, ``default``/``cloud``)
        distro: str
        version: str
        arch: str
        variant: str
        isolated: bool
        #: the default user
        username: str
        created_at: float
        #: ``running``, ``stopped`` or a transitional state (``TRANSITIONAL``)
        state: str

    class Record(_Machine, total=False):
        """One machine of ``state.json``, keyed by its id (a ULID)."""

        #: the orbsim process that owns a transitional state, and its start time (``claim``)
        op_pid: int
        op_token: Optional[str]
        #: set by a delete while the create is still running: the create gives up
        cancel: bool
        #: the address, and the UNIX time ``info`` starts showing it
        ip4: Optional[str]
        ip_at: float
        started_at: float
        ready_at: Optional[float]
        stopped_at: float
        #: started under a ``no-ip`` fault: ``info`` shows no address
        no_ip: bool
        cpu_limit: int
        memory_limit_mib: int
        disk_limit_bytes: int

    class Data(TypedDict):
        """``state.json``: the registry of one ``$ORBSIM_HOME``."""

        machines: dict[str, Record]
        #: the id of the machine ``orbctl default`` set
        default: Optional[str]
        config: dict[str, str]
        #: how many calls each ``ORBSIM_FAULTS`` rule had (by the rule's text)
        faults: dict[str, int]
        #: ``running``, or ``stopped`` after ``orbctl stop``
        vm: str


TRANSITIONAL = frozenset({"creating", "provisioning", "starting", "stopping", "deleting"})
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def home(environ: Optional[Mapping[str, str]] = None) -> str:
    return home_dir(environ)


def new_ulid(now: Optional[float] = None) -> str:
    """A 26-character ULID: 48 bits of milliseconds, 80 random bits, Crockford base32."""
    ms = int((time.time() if now is None else now) * 1000)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def proc_token(pid: int) -> Optional[str]:
    """The start time of process ``pid`` (a pid-reuse-proof identity), ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return "?"
        return "?" if not os.path.isdir("/proc") else None
    fields = raw[raw.rfind(b")") + 2 :].split()
    if fields and fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode() if len(fields) > 19 else "?"


def owner_alive(rec: Record) -> bool:
    pid = rec.get("op_pid")
    if not isinstance(pid, int):
        return False
    token = proc_token(pid)
    return token is not None and token == rec.get("op_token", token)


def empty() -> Data:
    return {"machines": {}, "default": None, "config": {}, "faults": {}, "vm": "running"}


class Store:
    """``$ORBSIM_HOME``'s registry.  ``with store.locked() as data:`` reads, and writes back changes."""

    def __init__(self, root: str) -> None:
        self.root = os.fspath(root)
        self.path = os.path.join(self.root, "state.json")
        self.lock_path = os.path.join(self.root, "state.lock")
        self.machines_dir = os.path.join(self.root, "machines")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Store:
        return cls(home(environ))

    def mdir(self, machine_id: str) -> str:
        return os.path.join(self.machines_dir, machine_id)

    def _load(self) -> Data:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = loads(fh.read())
        except FileNotFoundError:
            return empty()
        base = empty()
        base.update(data)
        return base

    def _save(self, data: Data) -> None:
        tmp = os.path.join(self.root, f"state.json.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(dumps(data, indent=1, sort_keys=True, ensure_ascii=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def locked(self) -> _Locked:
        return _Locked(self)

    def read(self) -> Data:
        """A consistent snapshot (no write-back)."""
        with self.locked() as data:
            copy: Data = loads(dumps(data))
            return copy


class _Locked:
    """``Store.locked()``: flock ``state.lock``, read ``state.json``; on the way out write it back if
    changed.  A class, not ``contextlib.contextmanager``: start-up time (``contextlib`` and what it loads)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = flocked(store.lock_path)
        self.before = ""
        self.data: Optional[Data] = None

    def __enter__(self) -> Data:
        os.makedirs(self.store.root, exist_ok=True)
        self.lock.__enter__()
        try:
            self.data = self.store._load()
            self.before = dumps(self.data, sort_keys=True)
        except BaseException:
            self.lock.__exit__()
            raise
        return self.data

    def __exit__(self, kind: object, exc: Optional[BaseException], tb: object) -> None:
        try:
            assert self.data is not None
            # A deliberate error (a service error, an injected fault) keeps what was
            # recorded before it, e.g. a used fault counter; anything else changes nothing.
            keep = exc is None or getattr(exc, "keeps_state", False)
            if keep and dumps(self.data, sort_keys=True) != self.before:
                self.store._save(self.data)
        finally:
            self.lock.__exit__()


# --------------------------------------------------------------------------- lookups


def find(data: Data, ref: str) -> Optional[Record]:
    """By ID (a 26-char ULID) first, then by name."""
    machines = data["machines"]
    if ref in machines:
        return machines[ref]
    for rec in machines.values():
        if rec["name"] == ref:
            return rec
    return None


def by_name(data: Data) -> list[Record]:
    return sorted(data["machines"].values(), key=lambda r: r["name"])


def claim(rec: Record, state: str) -> None:
    """Put ``rec`` in a transitional ``state`` owned by this process."""
    pid = os.getpid()
    rec["state"] = state
    rec["op_pid"] = pid
    rec["op_token"] = proc_token(pid)


def settle(rec: Record, state: str) -> None:
    rec["state"] = state
    rec.pop("op_pid", None)
    rec.pop("op_token", None)
