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
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Optional

from .engineapi import EngineError

#: shadow's rule (lib/chkname.c), as OrbStack's macOS users need: ``john.doe`` and ``John`` are valid.
_USERNAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$")


def check_username(name: str) -> None:

    if not _USERNAME.match(name) or name.isdigit() or name in (".", ".."):
        raise EngineError(
            f"invalid user name {name!r}: use letters, digits, '_', '.' and '-', not starting "
            "with '-', not all digits (at most 32 characters)"
        )


@contextmanager
def flocked(path: Path) -> Iterator[None]:

    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _open_dir(root: Path, parts: list[str], create: bool) -> int:
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


def _parent(root: Path, rel: str) -> Optional[tuple[int, str]]:
    """(fd of ``root/rel``'s directory, last component), or None if missing or under a symlink."""
    parts = rel.strip("/").split("/")
    try:
        return _open_dir(root, parts[:-1], create=False), parts[-1]
    except (OSError, ValueError):
        return None


def safe_write(root: Path, rel: str, data: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
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


def safe_read(root: Path, rel: str) -> Optional[bytes]:
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


def safe_stat(root: Path, rel: str) -> Optional[os.stat_result]:
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


def safe_mkdir(root: Path, rel: str, mode: int) -> None:
    """``mkdir -p root/rel`` without following symlinks under ``root``; the last directory gets ``mode``."""
    fd = _open_dir(root, rel.strip("/").split("/"), create=True)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def passwd_entry(root: Path, user: str) -> Optional[tuple[int, int, str]]:
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


def _lines(image: Path, rel: str) -> list[str]:
    return (image / rel).read_text().splitlines()


def add_user(image: Path, upper: Path, name: str, uid: int) -> tuple[int, int]:
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


def _make_home(image: Path, upper: Path, name: str, uid: int, gid: int) -> None:
    dfd = _open_dir(upper, ["home"], create=True)
    try:
        with suppress(FileExistsError):
            os.mkdir(name, 0o750, dir_fd=dfd)
        os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
    finally:
        os.close(dfd)
    skel = image / "etc/skel"
    if skel.is_dir():
        for entry in skel.iterdir():
            if entry.is_file() and not entry.is_symlink():
                safe_write(upper, f"home/{name}/{entry.name}", entry.read_bytes(), uid=uid, gid=gid)


def console(mdir: Path, message: str) -> None:
    """Append a time-stamped line to the machine's console log (what ``orbctl logs`` prints)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    try:
        with open(mdir / "console.log", "a", encoding="utf-8") as fh:
            fh.write(f"[{stamp}] {message}\n")
    except OSError:
        pass
