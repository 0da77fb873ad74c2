"""Reading /proc: process start times (so a recycled pid is never taken for a machine's init)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


def _stat_fields(pid: int) -> Optional[list[str]]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # "pid (comm) state ppid ..." - comm may hold spaces and parentheses.
    return raw[raw.rfind(")") + 2 :].split()


def start_time(pid: int) -> Optional[int]:
    """Start time (clock ticks since boot) of a live, non-zombie ``pid``; None otherwise."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def parent(pid: int) -> Optional[int]:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def pid_namespace(pid: int) -> Optional[str]:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def pids_in_namespace(ns: str) -> list[int]:
    """Live (non-zombie) host pids whose pid namespace is ``ns`` (``pid:[inode]``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid_namespace(pid) == ns and start_time(pid) is not None:
            found.append(pid)
    return found
