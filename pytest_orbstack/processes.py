"""Is a process of this host still the one that started a run?  Read from the process table.

Every run on one OrbStack shares two things whatever its ``HOME`` or state
directory: the machine names and the host's process table.  A run id
encodes the pid of the process that owns the run's machines and a
fingerprint of that process's start time (see :mod:`pytest_orbstack.naming`).
The run is alive while a process with that pid exists and started at that
time; a pid reused by another process has another start time.

The answer errs on the safe side only: a process that exists but whose
start time cannot be read (another user's process under ``hidepid``, an
unknown platform) counts as alive; a run is dead only when its pid does
not exist or provably started at another time.

* Linux: ``/proc/PID/stat`` field 22 (start time in clock ticks since boot)
  with the boot id (``/proc/sys/kernel/random/boot_id``), so a process of an
  earlier boot that had the same pid and tick is not the same process.
* macOS: ``sysctl kern.proc.pid.PID`` (``struct kinfo_proc``; its first field
  is the start time as a ``struct timeval``) through ``ctypes``: no
  subprocess, no parsing of ``ps`` output.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final, Optional

__all__ = [
    "UNKNOWN_FINGERPRINT",
    "fingerprint",
    "owner_is_alive",
    "pid_exists",
    "start_identity",
]

#: How many base-36 characters a fingerprint has.
FINGERPRINT_LENGTH: Final = 4
#: The fingerprint of a process whose start time could not be read: alive while its pid exists.
UNKNOWN_FINGERPRINT: Final = "z" * FINGERPRINT_LENGTH
_DIGITS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
#: ``struct kinfo_proc`` on 64-bit macOS; its first member ``kp_proc.p_un.__p_starttime`` is a timeval.
_KINFO_PROC_SIZE: Final = 648
_CTL_KERN: Final = 1
_KERN_PROC: Final = 14
_KERN_PROC_PID: Final = 1

#: ``sysctl(mib) -> bytes`` (macOS): the raw answer, empty when there is no such process.
Sysctl = Callable[[list[int]], bytes]


def pid_exists(pid: int) -> bool:
    """True if a process ``pid`` exists on this host (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno != errno.ESRCH  # EPERM: it exists, it belongs to someone else
    return True


def _linux_identity(pid: int, proc: Path) -> Optional[str]:
    try:
        stat = (proc / str(pid) / "stat").read_text()
        boot_id = (proc / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and ')', so split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None
    return f"linux:{boot_id}:{fields[19]}"  # field 22 of the whole line: starttime


def _libc_sysctl(mib: list[int]) -> bytes:  # pragma: no cover (macOS only)
    import ctypes  # noqa: PLC0415 (start-up time: macOS only)
    import ctypes.util  # noqa: PLC0415

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    array = (ctypes.c_int * len(mib))(*mib)
    buffer = ctypes.create_string_buffer(_KINFO_PROC_SIZE)
    size = ctypes.c_size_t(_KINFO_PROC_SIZE)
    if libc.sysctl(array, len(mib), buffer, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
        raise OSError(ctypes.get_errno(), "sysctl kern.proc.pid failed")
    return buffer.raw[: size.value]


def _darwin_identity(pid: int, sysctl: Sysctl) -> Optional[str]:
    try:
        raw = sysctl([_CTL_KERN, _KERN_PROC, _KERN_PROC_PID, pid])
    except OSError:
        return None
    if len(raw) < 16:
        return None  # no such process (sysctl answers with nothing) or an answer we cannot read
    seconds, microseconds = struct.unpack_from("=qi", raw, 0)
    if seconds <= 0:
        return None
    return f"darwin:{seconds}.{microseconds:06d}"


def start_identity(
    pid: int,
    *,
    platform: Optional[str] = None,
    proc: Path = Path("/proc"),
    sysctl: Optional[Sysctl] = None,
) -> Optional[str]:
    """What tells process ``pid`` apart from any later process with the same pid, or ``None``.

    ``None`` when the process does not exist or its start time cannot be read.
    ``platform``, ``proc`` and ``sysctl`` exist for tests.
    """
    platform = sys.platform if platform is None else platform
    if platform.startswith("linux"):
        return _linux_identity(pid, proc)
    if platform == "darwin":
        return _darwin_identity(pid, sysctl or _libc_sysctl)
    return None


def fingerprint(identity: Optional[str]) -> str:
    """A short base-36 digest of a start identity; :data:`UNKNOWN_FINGERPRINT` for ``None``."""
    if identity is None:
        return UNKNOWN_FINGERPRINT
    value = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big")
    value %= len(_DIGITS) ** FINGERPRINT_LENGTH - 1  # never UNKNOWN_FINGERPRINT
    digits = ""
    for _ in range(FINGERPRINT_LENGTH):
        value, digit = divmod(value, len(_DIGITS))
        digits = _DIGITS[digit] + digits
    return digits


def owner_is_alive(
    pid: int,
    expected: str,
    *,
    exists: Callable[[int], bool] = pid_exists,
    identity: Callable[[int], Optional[str]] = start_identity,
) -> bool:
    """True unless process ``pid`` with fingerprint ``expected`` has provably ended.

    Dead: no process ``pid``, or one whose start-time fingerprint differs.
    Alive: the fingerprint matches, or it cannot be read (a wrong "alive" only
    delays a purge; a wrong "dead" would delete a live run's machines).
    """
    if not exists(pid):
        return False
    found = identity(pid)
    if found is None or expected == UNKNOWN_FINGERPRINT:
        return True
    return fingerprint(found) == expected
