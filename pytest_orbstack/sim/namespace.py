"""The namespace engine: orbsim machines that are real, isolated Linux environments.

Longer than most modules on purpose: one engine class whose methods are the
life of an isolated machine (prepare, boot, enter, halt, destroy); what can
stand alone already does (``guest``, ``network``, ``transfer``, ``rootfs``,
``fsutil``, ``enter``).

A machine (``mdir`` = ``$ORBSIM_HOME/machines/<id>/``):

- ``upper/`` and ``work/``: its overlay layers over the shared, read-only
  image (``rootfs.py``); ``merged/`` is the mount point, used only inside the
  machine's own mount namespace, so the host's mount table never shows it;
- ``engine.json``: the default user (name, uid, gid);
- ``runtime.json`` while it runs: host pid and start time of its init, its pid
  namespace, address and veth;
- ``console.log``: output of its init.

Boot: ``unshare`` makes new mount, uts, ipc, pid and net namespaces; a host
``sh`` script mounts the overlay, ``/proc``, a read-only ``/sys``, a small
tmpfs ``/dev`` (with a private ``/dev/pts`` and ``/dev/shm``), tmpfs ``/run``
and ``/tmp``, sets the hostname, ``pivot_root``s into the overlay (the host's
tree is then unreachable and the machine's mount table lists only its own
mounts), says it is ready and waits: orbsim makes ``/dev``'s nodes (null,
zero, full, random, urandom, tty) and links through its root and says go.
The script then execs the init: the image's ``/bin/sh`` looping on ``wait``,
which reaps every orphan of the machine.  orbsim attaches the network from
the host (``network.py``); then come the boot jobs an init system would run
(machine-id, sshd, cloud-init: ``guest.py``).

Commands: ``nsenter`` into every namespace and the machine's root as the
user's uid/gid, then the image's ``/bin/sh`` changes to the working directory
(``/`` if it is missing) and execs the command (127 if not found, as a shell).
Where it can (root, setns), ``exec`` does the same without those programs:
orbsim's child enters the machine itself (``enter.py``).
Output handling: ``relay.interactive``.

Halt: SIGKILL to the init ends every process of the pid namespace at once;
the mount namespace and its mounts vanish with the last process, the veth
with the net namespace.  orbsim then checks that no process of that pid
namespace is left, releases the address and removes the bridge if no
machine uses it.  (On a host whose PID 1 does not reap orphans, the exited
``unshare`` parent stays a zombie: no longer a process, only a table entry.)

Start-up time: every ``orbctl list`` or ``info`` asks this engine whether
machines run (``running``: ``/proc`` and ``runtime.json``), and the plugin polls
``info`` while a machine gets ready.  The modules that make, boot, halt or copy
into machines (``rootfs``, ``guest``, ``network``, ``runner``, ``transfer``) are
imported by the methods that use them, and nothing here uses ``shutil``, ``signal``,
``json`` or ``pathlib`` (docs/orbsim.md, "Every other command").  Over 350 lines: one engine class
with its boot script; what it delegates lives in those modules.

There is no ``/mnt/mac``: a host bind-mount inside test machines would let
any test (root in the machine is root on the host) change the host.  Files
move only through ``push``/``pull``.
"""

from __future__ import annotations

import os
import select
import stat
import sys
import time

from . import enter, fsutil, imagecache, procs, relay
from .engineapi import NOT_ROOT, EngineError
from .jsontext import dumps, load_object

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Callable, Optional

    from .engineapi import EngineInfo, Runtime

DEFAULT_UID = 501
#: ``signal.SIGKILL`` on Linux (``import signal`` loads ``enum``: start-up time of every delete)
SIGKILL = 9
BOOT_TIMEOUT = 20.0

#: The device nodes of a machine's ``/dev`` (name, major, minor), all mode 0666, and its symlinks:
#: made from the host through the machine's root while its boot script waits (as ``mknod`` and
#: ``ln`` in the script they were 11 of its ~30 programs).
DEV_NODES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)

#: Tools the engine runs, and the Debian package that has each.
TOOLS = {
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "pivot_root": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "ip": "iproute2",
    "cp": "coreutils",
    "tar": "tar",
}

BOOT_SCRIPT = r"""set -e
L=$1 U=$2 W=$3 M=$4 H=$5
exec 3>&1 1>&2
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$L,upperdir=$U,workdir=$W" "$M"
mount -t proc -o nosuid,nodev,noexec proc "$M/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"
mount -t tmpfs -o mode=755,size=1024k,nosuid tmpfs "$M/dev"
cd "$M/dev"
mkdir pts shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs shm
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$M/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$M/tmp"
hostname "$H"
read -r hostpid rest < /proc/self/stat
cd "$M"
pivot_root . .
umount -l .
cd /
echo "ready $hostpid" >&3
exec 3>&-
read -r go  # orbsim fills /dev from the host, then says go (end of input: it gave up)
exec </dev/null
exec /bin/sh -c 'trap "exit 0" TERM; while :; do sleep 2147483647 & wait; done' orbsim-init
"""


def _populate_dev(pid: int) -> None:
    """Device nodes and symlinks of the new machine's ``/dev``, a fresh tmpfs: its boot script
    waits for them before it starts the init, so nothing in the machine runs yet."""
    try:
        fd = os.open(f"/proc/{pid}/root/dev", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise EngineError(f"machine did not start: its /dev is gone ({exc})") from None
    umask = os.umask(0)  # mode 0666 as given, with no chmod that could follow a symlink
    try:
        for name, major, minor in DEV_NODES:
            os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=fd)
        for name, target in DEV_LINKS:
            os.symlink(target, name, dir_fd=fd)
    except OSError as exc:
        raise EngineError(f"machine did not start: cannot make its /dev nodes ({exc})") from None
    finally:
        os.umask(umask)
        os.close(fd)


def _write_json(path: str, data: Mapping[str, object]) -> None:
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(dumps(data, indent=1, ensure_ascii=True) + "\n")
    os.replace(tmp, path)


def _makedirs(mdir: str, *subs: str) -> None:
    for sub in subs:
        os.makedirs(os.path.join(mdir, sub), exist_ok=True)


def _int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int):
        raise EngineError(f"orbsim machine record lacks {key!r}: delete the machine and create it again")
    return value


def preflight_problem(
    *, euid: int, image_ready: bool, can_build: bool, missing_tools: Mapping[str, str]
) -> Optional[str]:
    """The one line that says why machines cannot be made here, or None.  Pure, for tests."""
    if euid != 0:
        return NOT_ROOT
    if missing_tools:
        names = ", ".join(sorted(missing_tools))
        pkgs = " ".join(sorted(set(missing_tools.values())))
        return f"orbsim needs {names}: install them (`apt-get install {pkgs}`)"
    if not image_ready and not can_build:
        return (
            "no machine image: run `orbsim image build` (needs root and Debian's mirror, a few minutes; "
            "`apt-get install debootstrap` first)"
        )
    return None


class NamespaceEngine:
    """Isolated machines: overlay + namespaces + a bridge (see the module docstring)."""

    kind = "namespace"

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)

    # ------------------------------------------------------------ preflight

    def preflight(self) -> None:
        """Raise EngineError if machines cannot be made; build the image on first need."""
        from . import runner  # start-up time: see the module docstring

        path = self.environ.get("PATH")
        missing = {tool: pkg for tool, pkg in TOOLS.items() if runner.which(tool, path) is None}
        ready = imagecache.ready(self.environ)
        if not missing and ready and os.geteuid() == 0:
            return  # the usual case, without rootfs (start-up time of every create)
        from . import rootfs  # start-up time: see the module docstring

        installable = runner.which("apt-get", path) is not None
        if missing and os.geteuid() == 0 and installable:
            packages = sorted(set(missing.values()))
            rootfs.install_packages(
                packages, why="to run machines", say=rootfs.to_stderr, environ=self.environ
            )
            missing = {tool: pkg for tool, pkg in missing.items() if runner.which(tool, path) is None}
        autobuild = self.environ.get("ORBSIM_IMAGE_AUTOBUILD", "1") != "0"
        problem = preflight_problem(
            euid=os.geteuid(),
            image_ready=ready,
            missing_tools=missing,
            can_build=autobuild and (runner.which("debootstrap", path) is not None or installable),
        )
        if problem:
            raise EngineError(problem)
        if not ready:
            rootfs.build(self.environ)

    def _image(self) -> str:
        if not imagecache.ready(self.environ):
            self.preflight()
        return imagecache.path(self.environ)

    # ------------------------------------------------------------ filesystem

    def prepare(self, mdir: str, *, hostname: str, username: str) -> None:
        image = self._image()
        fsutil.check_username(username)
        _makedirs(mdir, "upper", "work", "merged")
        upper = os.path.join(mdir, "upper")
        uid, gid = fsutil.add_user(image, upper, username, DEFAULT_UID)
        info: EngineInfo = {"username": username, "uid": uid, "gid": gid}
        _write_json(os.path.join(mdir, "engine.json"), info)
        self._write_hostname_files(upper, image, hostname)

    def _write_hostname_files(self, upper: str, image: str, hostname: str) -> None:
        fsutil.safe_write(upper, "etc/hostname", f"{hostname}\n".encode())
        fsutil.safe_write(upper, "etc/hosts", fsutil.hosts_file(hostname).encode())

    def set_hostname(self, mdir: str, hostname: str) -> None:
        from . import guest  # start-up time: see the module docstring

        if self.running(mdir):
            script = (
                'printf "%s\\n" "$1" > /etc/hostname && hostname "$1" && '
                'sed -i "s/^127\\.0\\.1\\.1[[:space:]].*/127.0.1.1\\t$1/" /etc/hosts'
            )
            code = self._run_in(mdir, ["/bin/sh", "-c", script, "sh", hostname], user="root")
            if code != 0:
                raise EngineError(f"cannot set the hostname of the running machine to {hostname!r}")
            guest.renamed(self, mdir, hostname)
            return
        self._write_hostname_files(os.path.join(mdir, "upper"), self._image(), hostname)

    def clone(self, src: str, dst: str, *, hostname: str) -> None:
        from . import runner  # start-up time: see the module docstring

        os.makedirs(dst, exist_ok=True)
        upper = os.path.join(dst, "upper")
        if os.path.lexists(upper):  # left by a clone that failed half-way (cp would copy into it)
            _remove_tree(upper)
        runner.run(
            ["cp", "-a", "--reflink=auto", os.path.join(src, "upper"), os.path.join(dst, "upper")],
            timeout=1800,
        )
        _makedirs(dst, "work", "merged")
        info = load_object(os.path.join(src, "engine.json"))
        if info is None:
            raise EngineError(f"cannot clone: {os.path.join(src, 'engine.json')} is missing or broken")
        _write_json(os.path.join(dst, "engine.json"), info)
        self._write_hostname_files(os.path.join(dst, "upper"), self._image(), hostname)

    # ------------------------------------------------------------ life cycle

    def _runtime(self, mdir: str) -> Optional[Runtime]:
        rt = load_object(os.path.join(mdir, "runtime.json"))
        if rt is None:
            return None
        pid, start = rt.get("pid"), rt.get("start")
        if isinstance(pid, int) and isinstance(start, int) and procs.start_time(pid) == start:
            return rt  # type: ignore[return-value]
        return None

    def running(self, mdir: str) -> bool:
        return self._runtime(mdir) is not None

    def ip4(self, mdir: str) -> Optional[str]:
        rt = self._runtime(mdir)
        ip = rt.get("ip") if rt else None
        return ip if isinstance(ip, str) else None

    def boot(self, mdir: str, *, hostname: str) -> str:
        """Start the machine, then its boot jobs (machine-id, sshd, cloud-init: ``guest.py``)."""
        from . import guest  # start-up time: see the module docstring

        with fsutil.flocked(os.path.join(mdir, "engine.lock")):
            rt = self._runtime(mdir)
            if rt is not None:
                return str(rt["ip"])
            image = self._image()
            self._halt_locked(mdir)  # leftovers of a crash, if any
            try:
                ip = self._boot_locked(mdir, image, hostname)
            except BaseException:
                self._halt_locked(mdir)
                raise
        try:
            guest.on_boot(self, mdir, hostname=hostname)
        except BaseException:
            self.halt(mdir)
            raise
        return ip

    def seed_cloud_init(self, mdir: str, *, user_data: bytes, instance_id: str, hostname: str) -> None:
        """Seed cloud-init's NoCloud datasource of a machine that has not booted yet."""
        from . import guest  # start-up time: see the module docstring

        guest.seed_nocloud(
            os.path.join(mdir, "upper"), user_data=user_data, instance_id=instance_id, hostname=hostname
        )

    def runtime(self, mdir: str) -> Optional[Runtime]:
        """Pid, address, ... of the running machine's init, or None when it is not running."""
        return self._runtime(mdir)

    def enter_argv(
        self, mdir: str, user: str, workdir: Optional[str], env: Mapping[str, str], argv: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        """The host argv (and its environment) that runs ``argv`` in the machine as ``user``."""
        return self._enter_argv(mdir, user, workdir, env, argv)

    def _boot_locked(self, mdir: str, image: str, hostname: str) -> str:
        from . import network, runner  # start-up time: see the module docstring

        _makedirs(mdir, "upper", "work", "merged")
        r, w = os.pipe()
        go_r, go_w = os.pipe()  # the script waits on it for /dev (``_populate_dev``)
        try:
            # A file rather than `sh -c SCRIPT`: `ps` then shows a readable command line.
            with open(os.path.join(mdir, "boot.sh"), "w", encoding="utf-8") as fh:
                fh.write(BOOT_SCRIPT)
            argv = [
                "unshare",
                "--mount",
                "--uts",
                "--ipc",
                "--pid",
                "--net",
                "--fork",
                "--kill-child",
                "--",
                "/bin/sh",
                os.path.join(mdir, "boot.sh"),
                image,
                os.path.join(mdir, "upper"),
                os.path.join(mdir, "work"),
                os.path.join(mdir, "merged"),
                hostname,
            ]
            with open(os.path.join(mdir, "console.log"), "ab") as log:
                log.write(f"--- boot {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
            # The script reports readiness on its stdout (then fd 3), a pipe to us.
            outer = runner.spawn_daemon(
                argv, log_path=os.path.join(mdir, "console.log"), stdout=w, stdin=go_r
            )
        except BaseException:
            os.close(r)
            os.close(go_w)
            raise
        finally:
            os.close(w)
            os.close(go_r)
        try:
            outer_start = procs.start_time(outer)
            _write_json(os.path.join(mdir, "runtime.json"), {"outer": outer, "outer_start": outer_start})
            try:
                line = _read_line(r, BOOT_TIMEOUT)
            finally:
                os.close(r)
            if not line.startswith("ready "):
                tail = _tail(os.path.join(mdir, "console.log"))
                raise EngineError(
                    f"machine did not start: {tail or 'no output'} (see {os.path.join(mdir, 'console.log')})"
                )
            pid = int(line.split()[1])
            start = procs.start_time(pid)
            ns = procs.pid_namespace(pid)
            if start is None or ns is None or procs.parent(pid) != outer:
                raise EngineError(
                    f"machine init exited during boot (see {os.path.join(mdir, 'console.log')})"
                )
            _populate_dev(pid)
            os.write(go_w, b"go\n")
        finally:
            os.close(go_w)  # before a go, the script reads the end of input and gives up
        record: Runtime = {
            "outer": outer,
            "outer_start": outer_start,
            "pid": pid,
            "start": start,
            "pidns": ns,
        }
        _write_json(os.path.join(mdir, "runtime.json"), record)
        ip, veth = network.attach(os.path.realpath(mdir), pid, start, self.environ)
        _write_json(os.path.join(mdir, "runtime.json"), {**record, "ip": ip, "veth": veth})
        return ip

    def halt(self, mdir: str) -> None:
        if not os.path.exists(mdir):
            return
        with fsutil.flocked(os.path.join(mdir, "engine.lock")):
            self._halt_locked(mdir)

    def _halt_locked(self, mdir: str) -> None:
        from . import network  # start-up time: see the module docstring

        rt = load_object(os.path.join(mdir, "runtime.json")) or {}
        pid, start = rt.get("pid"), rt.get("start")
        outer = rt.get("outer")
        ns_fd = None  # held open, the pid namespace cannot be freed and its inode reused meanwhile
        if isinstance(pid, int) and isinstance(start, int) and procs.start_time(pid) == start:
            try:
                ns_fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY)
            except OSError:
                pass
            if procs.start_time(pid) != start and ns_fd is not None:  # exited meanwhile
                os.close(ns_fd)
                ns_fd = None
            _kill(pid)
        elif isinstance(outer, int) and procs.start_time(outer) == rt.get("outer_start"):
            _kill(outer)  # died mid-boot: --kill-child takes the init along
        try:
            ns = os.readlink(f"/proc/self/fd/{ns_fd}") if ns_fd is not None else None
            deadline = time.monotonic() + 10
            while (ns is not None and procs.pids_in_namespace(ns)) or (
                isinstance(outer, int) and procs.start_time(outer) == rt.get("outer_start")
            ):
                if time.monotonic() > deadline:
                    left = procs.pids_in_namespace(ns) if ns is not None else []
                    raise EngineError(
                        f"machine processes {left or [outer]} survived SIGKILL: look for D-state processes"
                    )
                time.sleep(0.005)
        finally:
            if ns_fd is not None:
                os.close(ns_fd)
        network.release(os.path.realpath(mdir), self.environ)
        network.cleanup_if_unused(self.environ)
        try:
            os.unlink(os.path.join(mdir, "runtime.json"))
        except FileNotFoundError:
            pass

    def destroy(self, mdir: str) -> None:
        from . import network  # start-up time: see the module docstring

        if not os.path.exists(mdir):
            network.release(os.path.realpath(mdir), self.environ)
            return
        self.halt(mdir)
        _check_nothing_mounted(mdir)
        _remove_tree(mdir)

    # ------------------------------------------------------------ commands

    def _user_ids(self, mdir: str, pid: int, user: str) -> tuple[int, int, str]:
        """(uid, gid, home) of ``user`` from the running machine's /etc/passwd."""
        if user == "root":
            return 0, 0, "/root"
        info = load_object(os.path.join(mdir, "engine.json")) or {}
        if info.get("username") == user and isinstance(info.get("uid"), int):
            return _int(info, "uid"), _int(info, "gid"), f"/home/{user}"
        entry = fsutil.passwd_entry(f"/proc/{pid}/root", user)
        if entry is None:
            raise EngineError(f"user {user!r} does not exist in the machine")
        return entry

    def default_user(self, mdir: str) -> str:
        info = load_object(os.path.join(mdir, "engine.json")) or {}
        name = info.get("username")
        if not isinstance(name, str):
            raise EngineError(f"no default user recorded in {mdir}: delete the machine and create it again")
        return name

    def _enter_argv(
        self, mdir: str, user: str, workdir: Optional[str], env: Mapping[str, str], argv: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        cmd, full_env, _ = self._enter(mdir, user, workdir, env, argv, direct=False)
        return cmd, full_env

    def _enter(
        self,
        mdir: str,
        user: str,
        workdir: Optional[str],
        env: Mapping[str, str],
        argv: list[str],
        *,
        direct: bool,
    ) -> tuple[list[str], dict[str, str], Optional[enter.Entry]]:
        """(argv, env, entry): with ``direct`` and an entry, ``argv`` is the command itself, for the entry."""
        rt = self._runtime(mdir)
        if rt is None:
            raise EngineError("the machine is not running: start it first")
        pid = _int(rt, "pid")
        uid, gid, home = self._user_ids(mdir, pid, user)
        full_env = enter.command_env(user, uid, home, env)
        cwd = workdir if workdir is not None else home
        entry = enter.prepare(pid, _int(rt, "start"), uid, gid, cwd) if direct else None
        if entry is not None:
            return list(argv), full_env, entry
        return enter.nsenter_argv(pid, uid, gid, cwd, argv), full_env, None

    def exec(
        self,
        mdir: str,
        argv: list[str],
        *,
        user: str,
        workdir: Optional[str],
        env: dict[str, str],
        replace: bool = False,
    ) -> int:
        """Run ``argv`` in the machine (see the module docstring).

        With ``replace`` orbsim's process may be replaced by the command when no
        output relay is needed (callers that do nothing afterwards).  Where it can,
        orbsim enters the machine itself (``enter.py``) instead of through nsenter.
        """
        cmd, full_env, entry = self._enter(mdir, user, workdir, env, argv, direct=True)
        code = relay.interactive(cmd, full_env, exec_ok=replace, entry=entry)
        return 128 - code if code < 0 else code

    def _run_in(
        self,
        mdir: str,
        argv: list[str],
        *,
        user: str,
        input: Optional[bytes] = None,
        stdout_file: Optional[str] = None,
        timeout: float = 3600,
    ) -> int:
        from . import runner  # start-up time: see the module docstring

        cmd, full_env = self._enter_argv(mdir, user, None, {}, argv)
        if stdout_file is not None:
            with open(stdout_file, "wb") as out:
                res = runner.run(cmd, env=full_env, input=input, stdout=out, check=False, timeout=timeout)
        else:
            res = runner.run(cmd, env=full_env, input=input, check=False, timeout=timeout)
            sys.stdout.write(res.stdout)
        sys.stderr.write(res.stderr)
        return res.returncode

    def push(self, mdir: str, *, user: str, sources: list[str], dest: Optional[str]) -> int:
        from . import transfer  # start-up time: see the module docstring

        return transfer.push(self, mdir, user=self.default_user(mdir), sources=sources, dest=dest)

    def pull(self, mdir: str, *, user: str, sources: list[str], dest: Optional[str]) -> int:
        from . import transfer  # start-up time: see the module docstring

        return transfer.pull(self, mdir, user=self.default_user(mdir), sources=sources, dest=dest)


def _read_line(fd: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 256)
        if not chunk:
            break
        buf += chunk
    return buf.decode("ascii", "replace").strip()


def _tail(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _check_nothing_mounted(mdir: str) -> None:
    prefix = os.path.realpath(mdir)
    with open("/proc/self/mounts") as fh:
        for line in fh:
            target = line.split()[1].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                raise EngineError(f"{target} is still mounted: unmount it, then delete the machine again")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        pass


def _remove_tree(path: str) -> None:
    """``shutil.rmtree(path)`` without ``shutil`` (start-up time: every delete).

    Symlinks are removed, never followed.  What cannot be removed is passed over, and if
    ``path`` is still there at the end, one ``EngineError`` says so.
    """
    # each dir_fd is valid only until the walk moves on: work inside the loop
    for _, dirs, files, dir_fd in os.fwalk(path, topdown=False):
        for name in files:
            _quietly(os.unlink, name, dir_fd)
        for name in dirs:
            # fwalk lists a symlink to a directory among the directories, without entering it
            try:
                link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            except OSError:
                continue
            _quietly(os.unlink if link else os.rmdir, name, dir_fd)
    try:
        os.rmdir(path)
    except NotADirectoryError:
        _quietly(os.unlink, path, None)
    except OSError:
        pass
    if os.path.lexists(path):
        raise EngineError(f"cannot remove {path}: remove it by hand")


def _quietly(remove: Callable[..., None], name: str, dir_fd: Optional[int]) -> None:
    try:
        remove(name, dir_fd=dir_fd)
    except OSError:
        pass
