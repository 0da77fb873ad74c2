"""Entering a running machine with setns(2), without ``nsenter``, ``setpriv`` or a shell.

The engine's portable way into a machine is a chain of programs::

    nsenter -t PID -m -u -i -n -p -r -w -- [setpriv --reuid U --regid G --init-groups] \\
        /bin/sh -c 'cd -- "$1" 2>/dev/null || cd /; shift; exec "$@"' orbsim-run DIR CMD...

This module does the same in orbsim's own process and one child, which then
becomes the command: a few milliseconds less per command.  Same semantics:

- the parent opens the init's namespaces and root first (and checks that the
  init is still the same process, so a recycled pid is never entered); it
  joins the machine's pid namespace *for its children only* (setns on a pid
  namespace applies to processes forked afterwards), forks, and goes back to
  its own, so the parent and anything else it forks stay on the host;
- the child joins the ipc, uts, net and mount namespaces in nsenter's order,
  ``chroot``s into the init's root, takes the user's groups (``--init-groups``:
  the primary group and every group of the machine's ``/etc/group`` that lists
  the user), gid and uid (root keeps orbsim's own, as with nsenter alone),
  changes to the working directory as the user (``/`` if it cannot), sets
  ``PWD`` and ``OLDPWD`` as the shell's ``cd`` did, and execs the command the way the
  shell's ``exec`` did: a search of the given ``PATH`` for a bare name, a
  file without ``#!`` run by ``/bin/sh``, 127 and ``exec: NAME: not found``
  for a missing command, 126 for one that cannot be executed.

Used only where it can work: root, and ``os.setns`` (Python 3.12+) or libc's
``setns`` through ctypes.  Anything unusual (a uid the machine does not know,
a machine whose init is gone) makes :func:`prepare` return None and the engine
uses the nsenter chain.  ``ORBSIM_ENTER=nsenter`` always uses the chain.

Only ``errno``, ``os`` and ``sys`` are imported at module level: ``orbsim run`` imports
this module on its fast path.
"""

from __future__ import annotations

import errno
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Callable, NoReturn, Optional

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: The namespaces joined by the child, in nsenter's order (the pid namespace is the parent's job).
CHILD_NAMESPACES = (("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET), ("mnt", CLONE_NEWNS))

ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/games"

#: Runs inside the machine as the target user: working directory, then the command.
ENTER_SCRIPT = 'cd -- "$1" 2>/dev/null || cd /; shift; exec "$@"'

#: ``$0`` of the shell the nsenter chain runs: its error messages start with it.
SHELL_NAME = "orbsim-run"

_found: dict[str, Callable[[int, int], None]] = {}


def _find_setns() -> Optional[Callable[[int, int], None]]:
    if "setns" in _found:
        return _found["setns"]
    native: Optional[Callable[[int, int], None]] = getattr(os, "setns", None)
    if native is not None:
        _found["setns"] = native
        return native
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.setns
    except (ImportError, OSError, AttributeError):
        return None

    def setns(fd: int, nstype: int) -> None:
        if fn(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    _found["setns"] = setns
    return setns


def command_env(user: str, uid: int, home: str, given: Mapping[str, str]) -> dict[str, str]:
    """The environment of a command run in a machine: a login-like base, then the forwarded variables."""
    env = {
        "PATH": ROOT_PATH if uid == 0 else USER_PATH,
        "HOME": home,
        "USER": user,
        "LOGNAME": user,
        "SHELL": "/bin/bash",
    }
    term = os.environ.get("TERM")
    if term and os.isatty(0):
        env["TERM"] = term  # an interactive session, as with orbctl's terminal
    env.update(given)
    return env


def nsenter_argv(pid: int, uid: int, gid: int, workdir: str, argv: Sequence[str]) -> list[str]:
    """The nsenter chain that runs ``argv`` in the machine whose init is ``pid`` (module docstring)."""
    cmd = ["/usr/bin/nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--"]
    if uid != 0:
        # The image's setpriv: the user's uid, gid and supplementary groups (sudo, ...).
        cmd += ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups"]
    return [*cmd, "/bin/sh", "-c", ENTER_SCRIPT, SHELL_NAME, workdir, *argv]


def available(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when this process can enter machines itself (root, setns, not turned off)."""
    env = os.environ if environ is None else environ
    if env.get("ORBSIM_ENTER", "").strip().lower() == "nsenter":
        return False
    return os.geteuid() == 0 and sys.platform.startswith("linux") and _find_setns() is not None


def start_time(pid: int) -> Optional[int]:
    """Start time of a live, non-zombie ``pid`` (same as ``procs.start_time``, without importing it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _read_root_file(root_fd: int, rel: str) -> Optional[str]:
    """``rel`` under the machine's root, without following a symlink out of it (None if unsafe/missing)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = -1
    try:
        dir_fd = os.open("etc", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
        try:
            fd = os.open(rel, flags, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            if sum(len(c) for c in chunks) > 8 << 20:
                return None
        return b"".join(chunks).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def init_groups(root_fd: int, uid: int, gid: int) -> Optional[list[int]]:
    """What ``setpriv --init-groups`` gives ``uid`` in the machine: None if the uid has no name there."""
    passwd = _read_root_file(root_fd, "passwd")
    group = _read_root_file(root_fd, "group")
    if passwd is None or group is None:
        return None
    name = None
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and fields[2] == str(uid):
            name = fields[0]
            break
    if name is None:
        return None
    groups = [gid]
    for line in group.splitlines():
        fields = line.split(":")
        if len(fields) < 4 or not fields[2].isdigit():
            continue
        if name in fields[3].split(",") and int(fields[2]) not in groups:
            groups.append(int(fields[2]))
    return groups


class Entry:
    """Open handles on a running machine, ready to run one command in it (see the module docstring)."""

    def __init__(self, pid: int, fds: dict[str, int], root: int, own_pid_ns: int) -> None:
        self.pid = pid
        self.workdir = "/"
        self._fds = fds
        self._root = root
        self._own_pid_ns = own_pid_ns
        self.uid = 0
        self.gid = 0
        self.groups: Optional[list[int]] = None

    def close(self) -> None:
        fds = [*self._fds.values(), self._root, self._own_pid_ns]
        self._fds, self._root, self._own_pid_ns = {}, -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def fork(self) -> int:
        """``os.fork()`` with the child in the machine's pid namespace (the parent stays outside)."""
        setns = _find_setns()
        assert setns is not None
        setns(self._fds["pid"], CLONE_NEWPID)
        try:
            child = os.fork()
        except OSError:
            setns(self._own_pid_ns, CLONE_NEWPID)
            raise
        if child:
            setns(self._own_pid_ns, CLONE_NEWPID)
        return child

    def become(self, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
        """In the forked child: enter, drop to the user, change directory, exec ``argv``.  Never returns."""
        try:
            self._become(argv, env)
        except BaseException as exc:  # never let the child return into orbsim's own code
            os.write(2, f"orbsim: cannot run {argv[0] if argv else ''}: {exc}\n".encode(errors="replace"))
        os._exit(126)

    def _become(self, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
        try:
            setns = _find_setns()
            assert setns is not None
            for name, kind in CHILD_NAMESPACES:
                setns(self._fds[name], kind)
            os.fchdir(self._root)
            os.chroot(".")
            os.chdir("/")
            if self.uid != 0:
                os.setgroups(self.groups or [self.gid])
                os.setresgid(self.gid, self.gid, self.gid)
                os.setresuid(self.uid, self.uid, self.uid)
        except OSError as exc:
            os.write(2, f"orbsim: cannot enter the machine: {exc.strerror}\n".encode())
            os._exit(126)
        env = dict(env)
        workdir = self.workdir
        try:
            os.chdir(workdir)
        except (OSError, ValueError):
            os.chdir("/")
            workdir = "/"
        env["PWD"] = _logical(workdir)
        env["OLDPWD"] = "/"  # the shell started in the init's directory, /
        _exec_like_sh(list(argv), env)


def _logical(path: str) -> str:
    """The ``PWD`` the shell's ``cd`` (logical mode) records for ``path``."""
    if not path.startswith("/"):
        path = "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _exec_like_sh(argv: list[str], env: dict[str, str]) -> NoReturn:
    """dash's ``exec "$@"``: PATH search, a file without ``#!`` run by /bin/sh, exit codes, messages."""
    name = argv[0]
    error = errno.ENOENT
    if not name:
        error = errno.EACCES  # every candidate is a directory ("DIR/")
    elif "/" in name:
        error = _try_exec(name, argv, env)
    else:
        for d in env.get("PATH", "").split(":"):
            e = _try_exec(f"{d}/{name}" if d else name, argv, env)
            if e not in (errno.ENOENT, errno.ENOTDIR):
                error = e
    code = 127 if error in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG) else 126
    what = "not found" if error in (errno.ENOENT, errno.ENOTDIR) else os.strerror(error)
    os.write(2, f"{SHELL_NAME}: 1: exec: {name}: {what}\n".encode(errors="replace"))
    os._exit(code)


def _try_exec(path: str, argv: list[str], env: dict[str, str]) -> int:
    """execve ``path``; on return, the errno (a file the kernel cannot run is run by /bin/sh)."""
    try:
        os.execve(path, argv, env)
    except OSError as exc:
        if exc.errno != errno.ENOEXEC:
            return exc.errno or errno.ENOENT
    try:
        os.execve("/bin/sh", ["/bin/sh", path, *argv[1:]], env)
    except OSError as exc:
        return exc.errno or errno.ENOENT
    raise AssertionError("unreachable")


def prepare(pid: int, start: int, uid: int, gid: int, workdir: str) -> Optional[Entry]:
    """An :class:`Entry` into the machine whose init is ``pid`` (started at ``start``), None to use nsenter.

    The command will run as ``uid``/``gid`` in ``workdir`` (``/`` if it cannot change there).
    """
    if not available():
        return None
    fds: dict[str, int] = {}
    root = own = -1
    try:
        own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        for name in ("ipc", "uts", "net", "pid", "mnt"):
            fds[name] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        for fd in [*fds.values(), root, own]:
            if fd >= 0:
                os.close(fd)
        return None
    entry = Entry(pid, fds, root, own)
    if start_time(pid) != start:  # the init exited, its pid may be another process's now
        entry.close()
        return None
    entry.uid, entry.gid, entry.workdir = uid, gid, workdir
    if uid != 0:
        entry.groups = init_groups(root, uid, gid)
        if entry.groups is None:
            entry.close()
            return None
    return entry
