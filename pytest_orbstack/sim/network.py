"""orbsim's host network: one bridge, one veth and one address per running machine.

Host-global, shared by every ``ORBSIM_HOME`` on the host (tests run many at
once): the bridge ``orbsim0`` with ``198.19.249.1/24`` and the address table
``$ORBSIM_RUN_DIR/ips.json`` (default ``/run/orbsim``), always changed under
the exclusive lock ``$ORBSIM_RUN_DIR/net.lock``.  Every orbsim on a host must
use the same run directory.  Machines get ``.2`` to ``.254``; an address is
reused once released, or once the machine that held it is gone.  The bridge
exists only while some machine uses it.  Machines have no default route:
they reach the host and each other, nothing else (no NAT, no forwarding).
A machine's MAC address is derived from its IPv4 address (as Docker does), so
a neighbour entry cached for an address stays right when the address passes
to another machine: a fresh veth MAC would leave the host and other machines
sending to the old one for up to ~30 s.
"""

from __future__ import annotations

import os

from . import fsutil, runner
from .engineapi import EngineError
from .jsontext import dumps, load_object
from .procs import start_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional, TypedDict

    class Holder(TypedDict):
        """Who holds an address in ``ips.json``: the machine (its directory), its init, its veth."""

        owner: str
        pid: int
        start: int
        veth: str

    #: ``ips.json``: address -> holder.
    Table = dict[str, Holder]

BRIDGE = "orbsim0"
SUBNET = "198.19.249"
HOST_IP = f"{SUBNET}.1"
PREFIXLEN = 24
FIRST, LAST = 2, 254


def mac_for(ip: str) -> str:
    """The MAC address of the machine holding ``ip``: locally administered, ``02:0b`` + the four octets."""
    return ":".join(["02", "0b", *(f"{int(octet):02x}" for octet in ip.split("."))])


def run_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("ORBSIM_RUN_DIR") or "/run/orbsim"


class _locked:
    """The address table, read and written back (if changed, and no error) under the host-wide lock.

    A class, not ``contextlib.contextmanager``: start-up time.
    """

    def __init__(self, environ: Optional[Mapping[str, str]]) -> None:
        self.dir = run_dir(environ)
        self.file = os.path.join(self.dir, "ips.json")
        self.lock = fsutil.flocked(os.path.join(self.dir, "net.lock"))
        self.table: Table = {}
        self.before = ""

    def __enter__(self) -> Table:
        os.makedirs(self.dir, exist_ok=True)
        self.lock.__enter__()
        try:
            self.table = load_object(self.file) or {}
            self.before = dumps(self.table, sort_keys=True)
        except BaseException:
            self.lock.__exit__()
            raise
        return self.table

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        try:
            if exc is None and dumps(self.table, sort_keys=True) != self.before:
                tmp = os.path.join(self.dir, f".ips.{os.getpid()}.tmp")
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(dumps(self.table, indent=1, sort_keys=True, ensure_ascii=True) + "\n")
                os.replace(tmp, self.file)
        finally:
            self.lock.__exit__()


def _owner_alive(entry: Holder) -> bool:

    pid, start = entry.get("pid"), entry.get("start")
    if not isinstance(pid, int) or not isinstance(start, int):
        return False
    return start_time(pid) == start


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def bridge_ports() -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/class/net/{BRIDGE}/brif"))
    except OSError:
        return []


def _ip(*args: str, check: bool = True) -> None:

    runner.run(["ip", *args], timeout=15, check=check)


def _ensure_bridge() -> None:
    if link_exists(BRIDGE):
        return
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{HOST_IP}/{PREFIXLEN}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def attach(owner: str, pid: int, start: int, environ: Optional[Mapping[str, str]] = None) -> tuple[str, str]:
    """Give the machine whose init is ``pid`` an address; return ``(ip4, host veth name)``.

    ``owner`` identifies the machine (its directory).  Inside the machine the
    link is ``eth0`` and ``lo`` is up.
    """

    with _locked(environ) as table:
        for ip, entry in list(table.items()):
            if entry.get("owner") == owner or not _owner_alive(entry):
                _drop(table, ip)
        free = [n for n in range(FIRST, LAST + 1) if f"{SUBNET}.{n}" not in table]
        if not free:
            raise EngineError(f"no free address in {SUBNET}.0/24: halt some orbsim machines")
        ip = f"{SUBNET}.{free[0]}"
        veth = "orbv" + os.urandom(4).hex()  # 12 characters: within IFNAMSIZ
        _ensure_bridge()
        table[ip] = {"owner": owner, "pid": pid, "start": start, "veth": veth}
        try:
            host = (  # one ip process for both host-side steps; -batch stops at the first error
                f"link add {veth} type veth peer name eth0 netns {pid}\nlink set {veth} master {BRIDGE} up\n"
            ).encode()
            runner.run(["ip", "-batch", "-"], input=host, timeout=15)
            script = (
                f"link set lo up\nlink set eth0 address {mac_for(ip)}\n"
                f"addr add {ip}/{PREFIXLEN} dev eth0\nlink set eth0 up\n"
            ).encode()
            runner.run(["nsenter", "-t", str(pid), "-n", "ip", "-batch", "-"], input=script, timeout=15)
        except runner.RunError as exc:
            _drop(table, ip)
            raise EngineError(f"cannot attach the machine to {BRIDGE}: {exc}") from exc
    return ip, veth


def _drop(table: Table, ip: str) -> None:
    entry = table.pop(ip, None)
    veth = entry.get("veth") if entry else None
    if isinstance(veth, str) and veth.startswith("orbv") and link_exists(veth):
        _ip("link", "del", veth, check=False)


def release(owner: str, environ: Optional[Mapping[str, str]] = None) -> None:
    """Free the address of machine ``owner`` and remove its veth (if still there)."""
    with _locked(environ) as table:
        for ip, entry in list(table.items()):
            if entry.get("owner") == owner:
                _drop(table, ip)


def usage(environ: Optional[Mapping[str, str]] = None) -> tuple[Table, bool, list[str]]:
    """A consistent view, under the lock: (address table, bridge exists, bridge ports)."""
    with _locked(environ) as table:
        return dict(table), link_exists(BRIDGE), bridge_ports()


def cleanup_if_unused(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Remove the bridge when no live machine holds an address and no port is attached; True if removed."""
    with _locked(environ) as table:
        for ip, entry in list(table.items()):
            if not _owner_alive(entry):
                _drop(table, ip)
        if table or not link_exists(BRIDGE) or bridge_ports():
            return False
        _ip("link", "del", BRIDGE, check=False)
        return not link_exists(BRIDGE)
