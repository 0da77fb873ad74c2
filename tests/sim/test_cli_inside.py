"""Inside a machine as on OrbStack: real cloud-init, machine-id at boot, isolated push/pull, SSH."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from orbsim_cli_helpers import Sim, make_sim, namespace_ready

WHY = namespace_ready()
pytestmark = pytest.mark.skipif(WHY is not None, reason=WHY or "")

M = "pytest-test-inside"

USER_DATA = """#cloud-config
users:
  - default
  - name: bob
    shell: /bin/bash
write_files:
  - path: /etc/orbsim-cloud.txt
    content: written by cloud-init
runcmd:
  - [sh, -c, "echo ran > /var/tmp/runcmd-ran"]
"""

FAILING_USER_DATA = """#cloud-config
runcmd:
  - [sh, -c, "echo before-failure > /var/tmp/runcmd-ran; exit 3"]
"""


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    yield from make_sim(tmp_path, mode="namespace")


def _user_data(tmp_path: Path, text: str) -> str:
    path = tmp_path / "user-data.yml"
    path.write_text(text)
    return str(path)


def test_cloud_init_applies_users_files_and_runcmd(sim: Sim, tmp_path: Path) -> None:
    sim.ok("create", "-c", _user_data(tmp_path, USER_DATA), "debian", M)
    status = sim("run", "-m", M, "-u", "root", "cloud-init", "status", "--wait", "--long")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "status: done" in status.stdout
    assert sim.ok("run", "-m", M, "id", "-un", "bob").stdout == "bob\n"
    assert sim.ok("run", "-m", M, "cat", "/etc/orbsim-cloud.txt").stdout == "written by cloud-init"
    assert sim.ok("run", "-m", M, "cat", "/var/tmp/runcmd-ran").stdout == "ran\n"
    assert "cloud-init finished" in sim.ok("logs", M).stdout
    sim.ok("delete", "-f", M)


def test_a_failing_cloud_init_only_warns(sim: Sim, tmp_path: Path) -> None:
    create = sim("create", "-c", _user_data(tmp_path, FAILING_USER_DATA), "debian", M)
    assert create.returncode == 0, create.stderr  # OrbStack: a cloud-init failure is only a warning
    assert create.stdout == ""
    status = sim("run", "-m", M, "-u", "root", "cloud-init", "status", "--wait", "--long")
    assert status.returncode == 1, status.stdout
    assert "status: error" in status.stdout
    assert sim.ok("run", "-m", M, "cat", "/var/tmp/runcmd-ran").stdout == "before-failure\n"
    tail = sim.ok("run", "-m", M, "-u", "root", "tail", "-n", "20", "/var/log/cloud-init-output.log").stdout
    assert "runcmd" in tail or "scripts-user" in tail
    assert "warning: cloud-init failed" in sim.ok("logs", M).stdout
    sim.ok("delete", "-f", M)


def test_a_machine_without_user_data_runs_no_cloud_init(sim: Sim) -> None:
    sim.ok("create", "debian", M)
    status = sim("run", "-m", M, "-u", "root", "cloud-init", "status")
    assert "status: not run" in status.stdout
    sim.ok("delete", "-f", M)


def _machine_id(sim: Sim, name: str) -> str:
    text = sim.ok("run", "-m", name, "cat", "/etc/machine-id").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", text), text
    return text


def test_machine_id_kept_by_clones_of_an_unsealed_machine_and_new_after_sealing(sim: Sim) -> None:
    sim.ok("create", "debian", M)
    first = _machine_id(sim, M)
    sim.ok("stop", M)
    sim.ok("clone", M, f"{M}-c1")
    sim.ok("start", f"{M}-c1")
    assert _machine_id(sim, f"{M}-c1") == first  # unsealed: the clone shares the id
    sim.ok("start", M)
    sim.ok("run", "-m", M, "-u", "root", "sh", "-c", ": > /etc/machine-id")
    sim.ok("stop", M)
    sim.ok("clone", M, f"{M}-c2")
    sim.ok("clone", M, f"{M}-c3")
    sim.ok("start", f"{M}-c2", f"{M}-c3", M)
    ids = {_machine_id(sim, name) for name in (M, f"{M}-c2", f"{M}-c3")}
    assert len(ids) == 3
    assert first not in ids
    sim.ok("delete", "-f", M, f"{M}-c1", f"{M}-c2", f"{M}-c3")


def test_a_booted_machine_has_its_devices_machine_id_sshd_files_and_ssh_aliases(sim: Sim) -> None:
    sim.ok("create", "debian", M)
    devices = sim.ok(
        "run", "-m", M, "stat", "-c", "%n %F %a %t:%T",
        "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
    ).stdout.splitlines()  # fmt: skip
    assert devices == [
        "/dev/null character special file 666 1:3",
        "/dev/zero character special file 666 1:5",
        "/dev/full character special file 666 1:7",
        "/dev/random character special file 666 1:8",
        "/dev/urandom character special file 666 1:9",
        "/dev/tty character special file 666 5:0",
    ]
    links = sim.ok(
        "run", "-m", M, "readlink", "/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/ptmx"
    )
    assert links.stdout.split() == [
        "/proc/self/fd",
        "/proc/self/fd/0",
        "/proc/self/fd/1",
        "/proc/self/fd/2",
        "pts/ptmx",
    ]
    assert (
        sim.ok("run", "-m", M, "sh", "-c", "echo hi > /dev/null && head -c 4 /dev/zero | wc -c").stdout
        == "4\n"
    )
    machine_id = sim.ok("run", "-m", M, "stat", "-c", "%a %U", "/etc/machine-id").stdout
    assert machine_id == "444 root\n"  # as systemd writes it
    assert re.fullmatch(r"[0-9a-f]{32}\n", sim.ok("run", "-m", M, "cat", "/etc/machine-id").stdout)
    files = sim.ok(
        "run", "-m", M, "-u", "root", "stat", "-c", "%n %a %U:%G",
        "/etc/ssh/orbsim_host_ed25519_key", "/etc/ssh/orbsim_authorized_keys", "/etc/ssh/orbsim_sshd_config",
        "/etc/passwd", "/run/sshd",
    ).stdout.splitlines()  # fmt: skip
    assert files == [
        "/etc/ssh/orbsim_host_ed25519_key 600 root:root",
        "/etc/ssh/orbsim_authorized_keys 644 root:root",
        "/etc/ssh/orbsim_sshd_config 644 root:root",
        "/etc/passwd 644 root:root",
        "/run/sshd 755 root:root",
    ]
    aliases = [
        line.split(":")[0] for line in sim.ok("run", "-m", M, "cat", "/etc/passwd").stdout.splitlines()
    ]
    assert sorted(a for a in aliases if "@" in a) == [f"root@{M}", f"tester@{M}"]  # daemon etc. have nologin
    assert sim.ok("logs", M).stdout.count("sshd listening on port 22") == 1
    first_id = sim.ok("run", "-m", M, "cat", "/etc/machine-id").stdout
    sim.ok("run", "-m", M, "-u", "root", "chmod", "640", "/etc/passwd")
    sim.ok("restart", M)  # a second boot keeps the machine-id, one alias each and passwd's mode
    assert sim.ok("run", "-m", M, "cat", "/etc/machine-id").stdout == first_id
    passwd = sim.ok("run", "-m", M, "-u", "root", "cat", "/etc/passwd").stdout
    assert [line.split(":")[0] for line in passwd.splitlines()] == aliases
    assert sim.ok("run", "-m", M, "stat", "-c", "%a", "/etc/passwd").stdout == "640\n"
    assert sim.ok("logs", M).stdout.count("sshd listening on port 22") == 2
    assert "cannot open /dev/null" not in sim.ok("logs", M).stdout  # the init starts after /dev
    sim.ok("delete", "-f", M)


def test_a_symlink_in_the_machine_cannot_make_the_boot_write_on_the_host(sim: Sim, tmp_path: Path) -> None:
    host_dir = tmp_path / "host-ssh"
    host_dir.mkdir()
    sim.ok("create", "debian", M)
    sim.ok("run", "-m", M, "-u", "root", "sh", "-c", f"rm -rf /etc/ssh && ln -s {host_dir} /etc/ssh")
    sim.ok("restart", M)
    assert list(host_dir.iterdir()) == []  # nothing written through the machine's symlink
    assert sim.ok("run", "-m", M, "true").returncode == 0  # the machine still boots, without sshd
    assert "warning: boot setup failed" in sim.ok("logs", M).stdout
    sim.ok("delete", "-f", M)


@pytest.mark.parametrize("version", ["2.1.3", "2.2.0"])
def test_push_and_pull_on_isolated_machines(sim: Sim, tmp_path: Path, version: str) -> None:
    env = {"ORBSIM_VERSION": version}
    sim.ok("create", "--isolated", "debian", M, env=env)
    local = tmp_path / "local.txt"
    local.write_text("pushed\n")
    push = sim("push", "-m", M, str(local), "in-machine.txt", env=env)
    pull = sim("pull", "-m", M, "/etc/hostname", str(tmp_path / "pulled"), env=env)
    if version == "2.1.3":  # orbstack/orbstack#2469: cp goes through the blocked /mnt/mac
        assert (push.returncode, push.stderr) == (
            1,
            f"cp: cannot stat '/mnt/mac{local}': Permission denied\n",
        )
        expected = f"cp: cannot create regular file '/mnt/mac{tmp_path / 'pulled'}': Permission denied\n"
        assert (pull.returncode, pull.stderr) == (1, expected)
        assert not (tmp_path / "pulled").exists()
    else:  # fixed in 2.2.0
        assert push.returncode == 0, push.stderr
        assert pull.returncode == 0, pull.stderr
        assert sim.ok("run", "-m", M, "sh", "-c", "cat ~/in-machine.txt", env=env).stdout == "pushed\n"
        assert (tmp_path / "pulled").read_text() == f"{M}\n"
    sim.ok("delete", "-f", M, env=env)


needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="openssh-client is not installed")


@needs_ssh
def test_ssh_with_the_written_config_reaches_the_machine_as_each_user(sim: Sim) -> None:
    sim.ok("create", "debian", M)
    config = sim.ok("ssh-config").stdout.strip()
    assert "Host orb" in Path(config).read_text()

    def ssh(dest: str, *command: str) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-F", config, "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", dest, *command]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL
        )

    assert ssh(f"tester@{M}@orb", "true").returncode == 0
    whoami = ssh(f"tester@{M}@orb", "id -un; hostname")
    assert whoami.stdout.split() == ["tester", M], whoami.stderr
    assert ssh(f"root@{M}@orb", "id -u").stdout == "0\n"
    assert ssh(f"nobody-here@{M}@orb", "true").returncode == 255  # no such account
    sim.ok("stop", M)
    stopped = ssh(f"tester@{M}@orb", "true")
    assert stopped.returncode == 255
    assert "not running" in stopped.stderr
    sim.ok("delete", "-f", M)


@needs_ssh
def test_clone_and_rename_of_a_cloud_init_machine_keep_their_new_names(sim: Sim, tmp_path: Path) -> None:
    sim.ok("create", "-c", _user_data(tmp_path, USER_DATA), "debian", M)
    sim.ok("stop", M)
    sim.ok("clone", M, f"{M}-c")
    sim.ok("start", f"{M}-c")  # cloud-init runs again at this boot and keeps the new hostname
    assert sim.ok("run", "-m", f"{M}-c", "hostname").stdout == f"{M}-c\n"
    assert sim.ok("run", "-m", f"{M}-c", "cat", "/etc/orbsim-cloud.txt").stdout == "written by cloud-init"
    sim.ok("rename", f"{M}-c", f"{M}-r")
    config = sim.ok("ssh-config").stdout.strip()
    argv = ["ssh", "-F", config, "-o", "BatchMode=yes", f"bob@{M}-r@orb", "id -un; hostname"]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL
    )
    assert proc.stdout.split() == ["bob", f"{M}-r"], proc.stderr  # a user cloud-init made, after a rename
    sim.ok("restart", f"{M}-r")
    assert sim.ok("run", "-m", f"{M}-r", "hostname").stdout == f"{M}-r\n"
    sim.ok("delete", "-f", M, f"{M}-r")
