"""Namespace machines are isolated from each other and from the host."""

from __future__ import annotations

import socket
from pathlib import Path


def test_file_written_in_one_machine_is_invisible_elsewhere(make_machine, tmp_path: Path) -> None:
    a, b = make_machine("iso-a"), make_machine("iso-b")
    marker = "/tmp/orbsim-isolation-marker"
    home_marker = "orbsim-home-marker"
    assert a.sh(f"echo from-a > {marker} && echo from-a > ~/{home_marker}").returncode == 0
    assert a.sh(f"cat {marker}").stdout == "from-a\n"
    assert b.sh(f"test -e {marker} || test -e ~/{home_marker} || echo absent").stdout == "absent\n"
    assert not Path(marker).exists()
    assert not Path("/home/alice", home_marker).exists()
    # The file lives in a's upper layer only (home is on the overlay, /tmp is the machine's tmpfs).
    assert (a.mdir / "upper/home/alice" / home_marker).read_text() == "from-a\n"
    assert not (b.mdir / "upper/home/alice" / home_marker).exists()


def test_processes_are_isolated(make_machine) -> None:
    a, b = make_machine("proc-a"), make_machine("proc-b")
    assert a.sh("sleep 1234 >/dev/null 2>&1 &").returncode == 0
    seen_a = a.run("ps", "-eo", "pid,args").stdout
    seen_b = b.run("ps", "-eo", "pid,args").stdout
    assert "sleep 1234" in seen_a
    assert "sleep 1234" not in seen_b
    assert "pytest" not in seen_a  # no host process is visible
    first = seen_b.splitlines()[1].split()
    assert first[0] == "1"  # the machine's own init is pid 1


def test_hostname_and_mounts_are_the_machines_own(make_machine) -> None:
    a, b = make_machine("host-a"), make_machine("host-b")
    assert a.run("hostname").stdout == "host-a\n"
    assert b.run("hostname").stdout == "host-b\n"
    assert socket.gethostname() not in ("host-a", "host-b")
    mounts = a.run("cat", "/proc/mounts").stdout
    targets = {line.split()[1] for line in mounts.splitlines()}
    assert targets == {"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/tmp"}
    sys_line = next(line for line in mounts.splitlines() if line.split()[1] == "/sys")
    assert "ro" in sys_line.split()[3].split(",")


def test_init_reaps_orphans(make_machine) -> None:
    m = make_machine("reaper")
    assert m.sh("(sleep 0.1 &) ; sleep 0.5").returncode == 0
    states = m.run("ps", "-eo", "stat=,comm=").stdout.split("\n")
    assert not [s for s in states if s.startswith("Z")], states


def test_default_user_home_and_passwordless_sudo(make_machine) -> None:
    m = make_machine("user-m", user="bob")
    res = m.sh('id -un; id -u; pwd; echo "$HOME"; sudo -n id -u')
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["bob", "501", "/home/bob", "/home/bob", "0"]
    assert m.run("id", "-u", user="root").stdout == "0\n"
    assert m.run("touch", "/etc/x").returncode != 0  # the user is not root
