"""Host-side file work on a machine's tree that no symlink inside the machine can redirect.

A machine's upper layer is written by whatever ran in the machine, so any
component of a path in it may be a symlink pointing at the host (``/etc``).
Every path here is walked one component at a time with ``O_NOFOLLOW``, and a
file is replaced by renaming a new file over it (which replaces a symlink
instead of writing through it).
"""

from __future__ import annotations

import fcntl
import os
import stat
import time

from .engineapi import EngineError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Union

    #: a path on the host: orbsim passes strings (``pathlib`` costs start-up time), tests may pass Paths
    StrPath = Union[str, "os.PathLike[str]"]

#: shadow's rule (lib/chkname.c), as OrbStack's macOS users need: ``john.doe`` and ``John`` are valid.
_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def check_username(name: str) -> None:

    # ``^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$`` without ``re`` (start-up time)
    valid = 1 <= len(name) <= 32 and name[0] != "-" and all(c in _USERNAME_CHARS for c in name)
    if not valid or name.isdigit() or name in (".", ".."):
        raise EngineError(
            f"invalid user name {name!r}: use letters, digits, '_', '.' and '-', not starting "
            "with '-', not all digits (at most 32 characters)"
        )


class flocked:
    """``with flocked(path):`` holds an exclusive flock on ``path`` (created if missing).

    A class, not ``contextlib.contextmanager``: start-up time.
    """

    def __init__(self, path: StrPath) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing drops the lock


def _open_dir(root: StrPath, parts: list[str], create: bool) -> int:
    """An fd of ``root/parts...``, refusing symlinks below ``root``; creates missing dirs if asked."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            if part in ("", ".", ".."):
                raise ValueError(f"bad path component {part!r}")
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _parent(root: StrPath, rel: str) -> Optional[tuple[int, str]]:
    """(fd of ``root/rel``'s directory, last component), or None if missing or under a symlink."""
    parts = rel.strip("/").split("/")
    try:
        return _open_dir(root, parts[:-1], create=False), parts[-1]
    except (OSError, ValueError):
        return None


def safe_write(
    root: StrPath, rel: str, data: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0
) -> None:
    """Write ``root/rel`` atomically without following any symlink under ``root``."""
    parts = rel.strip("/").split("/")
    dfd = _open_dir(root, parts[:-1], create=True)
    try:
        tmp = f".orbsim-{os.getpid()}-{parts[-1]}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dfd)
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)
            os.fchown(fd, uid, gid)
        finally:
            os.close(fd)
        os.rename(tmp, parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)


def safe_read(root: StrPath, rel: str) -> Optional[bytes]:
    """Contents of the regular file ``root/rel``; None if missing, not a regular file or under a symlink."""
    found = _parent(root, rel)
    if found is None:
        return None
    dfd, name = found
    try:
        # O_NONBLOCK: a FIFO planted there must not block the open (no effect on a regular file)
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # a FIFO or a device: not a file to read
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def safe_stat(root: StrPath, rel: str) -> Optional[os.stat_result]:
    """``stat`` of ``root/rel`` itself (a symlink is not followed); None if missing or under a symlink."""
    found = _parent(root, rel)
    if found is None:
        return None
    dfd, name = found
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(dfd)


def safe_mkdir(root: StrPath, rel: str, mode: int) -> None:
    """``mkdir -p root/rel`` without following symlinks under ``root``; the last directory gets ``mode``."""
    fd = _open_dir(root, rel.strip("/").split("/"), create=True)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def passwd_entry(root: StrPath, user: str) -> Optional[tuple[int, int, str]]:
    """(uid, gid, home) of ``user`` in ``root/etc/passwd``."""
    data = safe_read(root, "etc/passwd")
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and fields[0] == user:
            try:
                return int(fields[2]), int(fields[3]), fields[5] or "/"
            except ValueError:
                return None
    return None


def hosts_file(hostname: str) -> str:
    return (
        "127.0.0.1\tlocalhost\n"
        f"127.0.1.1\t{hostname}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    )


def _lines(image: StrPath, rel: str) -> list[str]:
    with open(os.path.join(image, rel), encoding="utf-8") as fh:
        return fh.read().splitlines()


def add_user(image: StrPath, upper: StrPath, name: str, uid: int) -> tuple[int, int]:
    """Write the default user (home, group, passwordless sudo) into a fresh upper layer; (uid, gid).

    Faster than ``useradd`` in a chroot: the account files of the image plus
    one line each.  ``root`` needs nothing.
    """
    if name == "root":
        return 0, 0
    passwd = _lines(image, "etc/passwd")
    group = _lines(image, "etc/group")
    existing = {line.split(":")[0] for line in passwd}
    gid = uid
    for line in group:
        fields = line.split(":")
        if fields[0] == name:
            gid = int(fields[2])
    if name not in existing:
        passwd.append(f"{name}:x:{uid}:{gid}:{name}:/home/{name}:/bin/bash")
        shadow = [*_lines(image, "etc/shadow"), f"{name}:*:20000:0:99999:7:::"]
        safe_write(upper, "etc/passwd", ("\n".join(passwd) + "\n").encode())
        safe_write(upper, "etc/shadow", _text(shadow), mode=0o640, gid=_gid_of(group, "shadow"))
    if not any(line.split(":")[0] == name for line in group):
        group.append(f"{name}:x:{gid}:")
        gshadow = [*_lines(image, "etc/gshadow"), f"{name}:!::"]
        safe_write(upper, "etc/gshadow", _text(gshadow), mode=0o640, gid=_gid_of(group, "shadow"))
    group = [_add_member(line, "sudo", name) for line in group]
    safe_write(upper, "etc/group", ("\n".join(group) + "\n").encode())
    safe_write(upper, "etc/sudoers.d/orbsim", f"{name} ALL=(ALL:ALL) NOPASSWD: ALL\n".encode(), mode=0o440)
    _make_home(image, upper, name, uid, gid)
    return uid, gid


def _text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _gid_of(group: list[str], name: str) -> int:
    for line in group:
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    return 0


def _add_member(line: str, group: str, user: str) -> str:
    fields = line.split(":")
    if fields[0] != group or len(fields) < 4:
        return line
    members = [m for m in fields[3].split(",") if m]
    if user not in members:
        members.append(user)
    fields[3] = ",".join(members)
    return ":".join(fields)


def _make_home(image: StrPath, upper: StrPath, name: str, uid: int, gid: int) -> None:
    dfd = _open_dir(upper, ["home"], create=True)
    try:
        try:
            os.mkdir(name, 0o750, dir_fd=dfd)
        except FileExistsError:
            pass
        os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
    finally:
        os.close(dfd)
    skel = os.path.join(image, "etc/skel")
    if os.path.isdir(skel):
        with os.scandir(skel) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    with open(entry.path, "rb") as fh:
                        data = fh.read()
                    safe_write(upper, f"home/{name}/{entry.name}", data, uid=uid, gid=gid)


def console(mdir: StrPath, message: str) -> None:
    """Append a time-stamped line to the machine's console log (what ``orbctl logs`` prints)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    try:
        with open(os.path.join(mdir, "console.log"), "a", encoding="utf-8") as fh:
            fh.write(f"[{stamp}] {message}\n")
    except OSError:
        pass
