"""The process-table check behind run liveness, on Linux for real and on macOS through a fake sysctl."""

from __future__ import annotations

import errno
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_orbstack import processes
from pytest_orbstack.processes import (
    UNKNOWN_FINGERPRINT,
    fingerprint,
    owner_is_alive,
    pid_exists,
    start_identity,
)


def _fake_proc(root: Path, pid: int, comm: str, starttime: int, boot_id: str = "b00t") -> Path:
    (root / str(pid)).mkdir(parents=True, exist_ok=True)
    # fields after "(comm)": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice num_threads itrealvalue starttime(22) vsize ...
    rest = ["S", "1", *["0"] * 17, str(starttime), "4096", "12"]
    (root / str(pid) / "stat").write_text(f"{pid} ({comm}) {' '.join(rest)}\n")
    (root / "sys" / "kernel" / "random").mkdir(parents=True, exist_ok=True)
    (root / "sys" / "kernel" / "random" / "boot_id").write_text(boot_id + "\n")
    return root


def test_linux_reads_field_22_and_the_boot_id(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 4242, "evil) 1 2 (name", 987654)  # ')' and spaces in comm
    assert start_identity(4242, platform="linux", proc=proc) == "linux:b00t:987654"
    assert start_identity(4243, platform="linux", proc=proc) is None


def test_linux_on_this_machine_tells_two_processes_apart() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads the real /proc")
    own = start_identity(os.getpid())
    assert own is not None
    assert own == start_identity(os.getpid())  # stable
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        other = start_identity(child.pid)
        assert other is not None
        assert other != own
    finally:
        child.kill()
        child.wait(10)
    assert start_identity(child.pid) is None


def _kinfo_proc(seconds: int, microseconds: int) -> bytes:
    """A ``struct kinfo_proc`` as sysctl answers: the start timeval first, then the rest."""
    return struct.pack("=qi", seconds, microseconds) + b"\0" * (648 - 12)


def test_macos_reads_the_start_time_from_sysctl_kern_proc_pid() -> None:
    asked: list[list[int]] = []

    def sysctl(mib: list[int]) -> bytes:
        asked.append(mib)
        return _kinfo_proc(1764500000, 123456) if mib[3] == 501 else b""

    assert start_identity(501, platform="darwin", sysctl=sysctl) == "darwin:1764500000.123456"
    assert asked == [[1, 14, 1, 501]]  # CTL_KERN, KERN_PROC, KERN_PROC_PID, pid
    assert start_identity(502, platform="darwin", sysctl=sysctl) is None  # no such process


def test_macos_sysctl_errors_and_short_answers_are_unknown() -> None:
    def failing(mib: list[int]) -> bytes:
        raise OSError(errno.EPERM, "denied")

    assert start_identity(7, platform="darwin", sysctl=failing) is None
    assert start_identity(7, platform="darwin", sysctl=lambda mib: b"\1\2\3") is None
    assert start_identity(7, platform="darwin", sysctl=lambda mib: _kinfo_proc(0, 0)) is None


def test_an_unknown_platform_cannot_read_start_times() -> None:
    assert start_identity(os.getpid(), platform="sunos5") is None


def test_fingerprints_are_short_stable_and_never_the_unknown_one() -> None:
    prints = {fingerprint(f"linux:b:{tick}") for tick in range(5000)}
    assert len(prints) > 4900  # collisions only delay a purge; they are rare
    assert all(re.fullmatch(r"[a-z0-9]{4}", p) for p in prints)
    assert UNKNOWN_FINGERPRINT not in prints
    assert fingerprint("darwin:1.000001") == fingerprint("darwin:1.000001")
    assert fingerprint(None) == UNKNOWN_FINGERPRINT


def test_a_process_of_another_user_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    def kill(pid: int, sig: int) -> None:
        raise PermissionError(errno.EPERM, "not yours")

    monkeypatch.setattr(processes.os, "kill", kill)
    assert pid_exists(1234)


def test_pid_exists_for_ours_and_not_for_an_ended_process() -> None:
    assert pid_exists(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)
    assert not pid_exists(child.pid)
    assert not pid_exists(0)
    assert not pid_exists(-1)


@pytest.mark.parametrize(
    ("exists", "identity", "expected", "alive"),
    [
        (False, "linux:b:1", fingerprint("linux:b:1"), False),  # no such pid: dead
        (True, "linux:b:1", fingerprint("linux:b:1"), True),  # same process: alive
        (True, "linux:b:2", fingerprint("linux:b:1"), False),  # pid reused: dead
        (True, None, fingerprint("linux:b:1"), True),  # cannot tell: alive (only delays a purge)
        (True, "linux:b:2", UNKNOWN_FINGERPRINT, True),  # run made without a start time: alive
        (False, None, UNKNOWN_FINGERPRINT, False),
    ],
)
def test_owner_is_alive_errs_only_towards_alive(
    exists: bool, identity: str | None, expected: str, alive: bool
) -> None:
    assert owner_is_alive(9, expected, exists=lambda pid: exists, identity=lambda pid: identity) is alive
