"""``orbctl create``: the CLI's checks, the service's checks, then the slow part (download, boot).

The same shape as the rest of the life cycle (``lifecycle.py``): the new record
is reserved in state ``creating`` under the lock, the machine is made without
it, and the record settles ``running`` (or is forgotten when the create fails).
"""

from __future__ import annotations

import os
import sys
import time

from .cobra import Command, UsageError
from .common import SERVICE_PREFIX, Ctx, ServiceError, fault_error, reconcile, vm_gate
from .faults import Fault
from .fsutil import console
from .images import ARCHES, IMAGE_NAMES, host_arch, resolve, split_image, valid_name
from .lifecycle import Cancelled, forget, update
from .profile import DOWNLOAD_SHARE
from .state import claim, find, new_ulid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional

    from .cobra import Opts
    from .state import Data, Record

DOWNLOAD_502 = "make rootfs: download metadata: GET download status: 502 Bad Gateway"
SETUP_TIMEOUT = "setup: machine didn't start in 30s (missing IP address)"


class CreateOptions:
    """What ``create``'s flags and arguments ask for, checked by the CLI.

    A plain class, not a ``NamedTuple``: ``typing`` costs start-up time.
    """

    __slots__ = (
        "arch",
        "cpu_limit",
        "disk_limit_bytes",
        "distro",
        "isolated",
        "memory_limit_mib",
        "name",
        "user_data",
        "username",
        "variant",
        "ver",
    )

    def __init__(
        self,
        *,
        name: str,
        distro: str,
        ver: Optional[str],
        arch: str,
        variant: str,
        username: str,
        isolated: bool,
        user_data: Optional[bytes] = None,
        cpu_limit: Optional[int] = None,
        memory_limit_mib: Optional[int] = None,
        disk_limit_bytes: Optional[int] = None,
    ) -> None:
        self.name = name
        self.distro = distro
        #: the version as given (``22.04``), None for the distro's default
        self.ver = ver
        self.arch = arch
        #: ``cloud`` with user-data, else ``default``
        self.variant = variant
        self.username = username
        self.isolated = isolated
        self.user_data = user_data
        self.cpu_limit = cpu_limit
        self.memory_limit_mib = memory_limit_mib
        self.disk_limit_bytes = disk_limit_bytes


def default_username() -> str:
    """``$ORBSIM_USER``, else ``$SUDO_USER``, else the invoking user's login name."""
    for key in ("ORBSIM_USER", "SUDO_USER"):
        value = os.environ.get(key, "").strip()
        if value:
            return value
    import getpass  # start-up time: only when neither variable names the user

    return getpass.getuser()


def _size_mib(text: str, flag: str, cmd: Command) -> int:
    units = {"": 1 / (1 << 20), "B": 1 / (1 << 20), "K": 1 / 1024, "M": 1, "G": 1024, "T": 1 << 20}
    raw = text.strip().upper().removesuffix("IB").removesuffix("B") if text.strip().upper() != "B" else "B"
    number, unit = raw.rstrip("KMGT"), raw[len(raw.rstrip("KMGT")) :]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise UsageError(f'invalid argument "{text}" for "--{flag}" flag: invalid size', cmd) from None
    return int(value)


def _read_user_data(path: str, cmd: Command) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(1 << 20)  # cloud-init user-data is small; OrbStack passes the file as is
    except OSError as exc:
        raise UsageError(f"open {path}: {(exc.strerror or 'error').lower()}", cmd) from None


def _create_options(ctx: Ctx, opts: Opts, args: list[str]) -> CreateOptions:
    """Everything the CLI itself checks before asking the service (usage errors)."""
    distro, ver = split_image(args[0])
    if distro not in IMAGE_NAMES:
        raise UsageError(f"invalid distro: {distro}", ctx.command)
    arch = str(opts.get("arch") or host_arch())
    if arch not in ARCHES:
        raise UsageError(f"invalid architecture: {arch}", ctx.command)
    variant = "default"
    user_data = opts.get("user-data")
    if user_data:
        try:
            with open(str(user_data), "rb"):
                pass
        except OSError as exc:
            reason = (exc.strerror or "error").lower()
            raise UsageError(f"open {user_data}: {reason}", ctx.command) from None
        variant = "cloud"
    content = _read_user_data(str(user_data), ctx.command) if user_data else None
    username = str(opts.get("user") or default_username())
    cpu_limit = None
    if opts.get("cpus") is not None:
        cpus = str(opts["cpus"])
        if not cpus.isdigit():
            raise UsageError(
                f'invalid argument "{cpus}" for "--cpus" flag: strconv.ParseUint: parsing '
                f'"{cpus}": invalid syntax',
                ctx.command,
            )
        cpu_limit = int(cpus)
    memory = _size_mib(str(opts["memory"]), "memory", ctx.command) if opts.get("memory") is not None else None
    disk = _size_mib(str(opts["disk"]), "disk", ctx.command) << 20 if opts.get("disk") is not None else None
    return CreateOptions(
        name=args[1] if len(args) > 1 else distro,
        distro=distro,
        ver=ver,
        arch=arch,
        variant=variant,
        username=username,
        isolated=bool(opts.get("isolated")),
        user_data=content,
        cpu_limit=cpu_limit,
        memory_limit_mib=memory,
        disk_limit_bytes=disk,
    )


def _reserve(ctx: Ctx, data: Data, o: CreateOptions) -> tuple[Record, Optional[Fault]]:
    """Under the lock: the service's checks, then the new record in state ``creating``."""
    name = o.name
    fault = vm_gate(ctx, data, "create", [name])
    reconcile(ctx, data)
    if not valid_name(name):
        raise ServiceError(f"create '{name}': invalid machine name '{name}'")
    if find(data, name) is not None:
        raise ServiceError(f"create '{name}': machine already exists: '{name}'")
    if fault is not None and fault.kind == "download-502":
        raise ServiceError(f"create '{name}': {DOWNLOAD_502}")
    if fault is not None and fault.kind == "error":
        fault_error(fault, None, "creating")
    image, codename, exists = resolve(o.distro, o.ver, o.arch, o.variant)
    if not exists:
        raise ServiceError(
            f"create '{name}': make rootfs: image not found: {{{IMAGE_NAMES[o.distro]} {codename} "
            f"{o.arch} {o.variant}}}"
        )
    now = time.time()
    rec: Record = {
        "id": new_ulid(now),
        "name": name,
        "distro": image,
        "version": codename,
        "arch": o.arch,
        "variant": o.variant,
        "isolated": o.isolated,
        "username": o.username,
        "created_at": now,
        "state": "creating",
    }
    if o.cpu_limit is not None:
        rec["cpu_limit"] = o.cpu_limit
    if o.memory_limit_mib is not None:
        rec["memory_limit_mib"] = o.memory_limit_mib
    if o.disk_limit_bytes is not None:
        rec["disk_limit_bytes"] = o.disk_limit_bytes
    claim(rec, "creating")
    data["machines"][rec["id"]] = rec
    return rec, fault


def cmd_create(ctx: Ctx, opts: Opts, args: list[str]) -> int:
    o = _create_options(ctx, opts, args)
    ctx.engine.preflight()
    with ctx.store.locked() as data:
        rec, fault = _reserve(ctx, data, o)
    if fault is not None and fault.kind == "download-stall":
        return _detached(ctx, rec, lambda: _make(ctx, o, rec, fault))
    return _make(ctx, o, rec, fault)


def _make(ctx: Ctx, o: CreateOptions, rec: Record, fault: Optional[Fault]) -> int:
    """The slow part of a create: download (stalled by a fault), boot, first-boot setup."""
    mid, name = rec["id"], rec["name"]
    mdir = ctx.store.mdir(mid)
    keep = False
    try:
        if fault is not None and fault.kind == "download-stall":
            time.sleep(fault.seconds())
            update(ctx, mid)  # deleted meanwhile: cancelled
        os.makedirs(mdir, exist_ok=True)
        ctx.engine.prepare(mdir, hostname=name, username=o.username)
        if o.user_data is not None:
            ctx.engine.seed_cloud_init(mdir, user_data=o.user_data, instance_id=mid, hostname=name)
        console(mdir, f"orbsim: created {name} ({rec['distro']}:{rec['version']})")
        ctx.profile.download(os.path.join(ctx.store.root, "downloads"))
        update(ctx, mid, state="provisioning")
        ip = ctx.engine.boot(mdir, hostname=name)
        console(mdir, f"orbsim: {name} booted, ip4 {ip}")
        ctx.profile.sleep("create", 1 - DOWNLOAD_SHARE)
        now = time.time()
        no_ip = fault is not None and fault.kind == "no-ip"
        update(ctx, mid, state="running", ip4=ip, ip_at=now, started_at=now, ready_at=now, no_ip=no_ip)
        if fault is not None and no_ip:
            console(mdir, f"orbsim: {name} got no IP address")
            time.sleep(fault.seconds(0.0))
            raise ServiceError(f"create '{name}': {SETUP_TIMEOUT}")
        if fault is not None and fault.kind in ("setup-timeout", "setup-timeout-keep"):
            keep = fault.kind == "setup-timeout-keep"
            raise ServiceError(f"create '{name}': {SETUP_TIMEOUT}")
    except BaseException as exc:
        if not keep:
            ctx.engine.destroy(mdir)
            forget(ctx, mid)
        if isinstance(exc, Cancelled):
            raise ServiceError(f"create '{name}': context canceled") from None
        raise
    if fault is not None and fault.kind == "hang":
        time.sleep(fault.seconds())
    return 0


def _detached(ctx: Ctx, rec: Record, work: Callable[[], int]) -> int:
    """Run ``work`` in a new session that outlives this process, as OrbStack's service outlives orbctl.

    The child owns the machine's ``creating`` state; this process waits for it and relays its
    exit code and error text (through a pipe).  Killed, it leaves the child going: the machine
    ends ``running``.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            import signal  # start-up time: only the download-stall fault detaches a create

            os.setsid()
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # the caller may be gone
            os.close(read_end)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(write_end, 2)
            with ctx.store.locked() as data:
                if rec["id"] in data["machines"]:
                    claim(data["machines"][rec["id"]], "creating")
            code = work()
        except ServiceError as exc:
            _say(SERVICE_PREFIX + exc.message + "\n")
        except BaseException as exc:
            _say(f"orbsim: {exc}\n")
        finally:
            _say("")
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read(1 << 16)
    _, status = os.waitpid(pid, 0)
    sys.stderr.write(said.decode("utf-8", "replace"))
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 1


def _say(text: str) -> None:
    """Write ``text`` to stderr and flush; the reader may be gone (the detached create's caller)."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except OSError:
        pass
