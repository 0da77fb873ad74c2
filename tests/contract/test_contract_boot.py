"""Inside a machine, as a test sees it: cloud-init status, machine-id after clone, isolated push, SSH.

Identical on orbsim (isolated machines only: the plain mode has no cloud-init,
machine-id or sshd) and on OrbStack with ``ORBSTACK_CONTRACT=real``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from orbctl_contract import Orb

GOOD = """#cloud-config
write_files:
  - path: /etc/contract-cloud.txt
    content: contract
runcmd:
  - [sh, -c, "echo ran > /var/tmp/contract-runcmd"]
"""
FAILING = """#cloud-config
runcmd:
  - [sh, -c, "exit 3"]
"""


@pytest.fixture
def machines(orb: Orb) -> Iterator[list[str]]:
    """Names the test made; deleted at the end whatever happens."""
    if orb.kind == "orbsim" and orb.env.get("ORBSIM_MODE") == "plain":
        pytest.skip(
            "orbsim's plain mode runs no init jobs (cloud-init, machine-id, sshd): needs root and the image"
        )
    made: list[str] = []
    yield made
    left = [n for n in made if n in orb.ours()]
    if left:
        orb("delete", "-f", *left)


def _create(orb: Orb, made: list[str], suffix: str, *flags: str) -> str:
    name = orb.name(suffix)
    made.append(name)
    proc = orb("create", *flags, "debian:bookworm", name, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return name


@pytest.mark.parametrize(("user_data", "code", "status"), [(GOOD, 0, "done"), (FAILING, 1, "error")])
def test_cloud_init_status(
    orb: Orb, machines: list[str], tmp_path: Path, user_data: str, code: int, status: str
) -> None:
    path = tmp_path / "user-data.yml"
    path.write_text(user_data)
    name = _create(orb, machines, f"ci-{code}", "-c", str(path))  # a failure only warns: create succeeds
    proc = orb("run", "-m", name, "-u", "root", "cloud-init", "status", "--wait", "--long", timeout=900)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert f"status: {status}" in proc.stdout
    if code == 0:
        assert orb.ok("run", "-m", name, "cat", "/etc/contract-cloud.txt").stdout == "contract"
        assert orb.ok("run", "-m", name, "cat", "/var/tmp/contract-runcmd").stdout == "ran\n"
    orb.ok("delete", "-f", name)


def _machine_id(orb: Orb, name: str) -> str:
    text = orb.ok("run", "-m", name, "cat", "/etc/machine-id").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", text), text
    return text


def test_machine_id_after_clone(orb: Orb, machines: list[str]) -> None:
    if orb.version() < (2, 0, 0):
        pytest.skip("clone needs OrbStack 2.0+")
    src = _create(orb, machines, "mid")
    first = _machine_id(orb, src)
    orb.ok("stop", src)
    same = orb.name("mid-same")
    machines.append(same)
    orb.ok("clone", src, same, timeout=600)
    orb.ok("start", same)
    assert _machine_id(orb, same) == first  # an unsealed source: the clone shares its id
    orb.ok("run", "-m", src, "-u", "root", "sh", "-c", ": > /etc/machine-id; rm -f /var/lib/dbus/machine-id")
    orb.ok("stop", src)
    sealed = orb.name("mid-sealed")
    machines.append(sealed)
    orb.ok("clone", src, sealed, timeout=600)
    orb.ok("start", sealed)
    assert _machine_id(orb, sealed) != first  # an empty machine-id gets a new one at boot
    orb.ok("delete", "-f", src, same, sealed)


def test_push_and_pull_on_an_isolated_machine(orb: Orb, machines: list[str], tmp_path: Path) -> None:
    if orb.version() < (2, 1, 0):
        pytest.skip("--isolated needs OrbStack 2.1+")
    name = _create(orb, machines, "iso", "--isolated")
    src = tmp_path / "payload.txt"
    src.write_text("payload\n")
    push = orb("push", "-m", name, str(src), "payload.txt")
    pull = orb("pull", "-m", name, "/etc/hostname", str(tmp_path / "pulled"))
    if orb.version() < (2, 2, 0):  # orbstack/orbstack#2469, fixed in 2.2.0
        assert push.returncode == 1
        assert "/mnt/mac" in push.stderr
        assert "Permission denied" in push.stderr
        assert pull.returncode == 1
        assert "/mnt/mac" in pull.stderr
    else:
        assert push.returncode == 0, push.stderr
        assert pull.returncode == 0, pull.stderr
        assert (tmp_path / "pulled").read_text().strip() == name
    orb.ok("delete", "-f", name)


def _ssh_config(orb: Orb) -> Path:
    """The contract's own orbsim writes its config into its ORBSIM_HOME; OrbStack into ~/.orbstack."""
    if orb.kind == "orbsim":
        return Path(orb.env["ORBSIM_HOME"]) / "ssh" / "config"
    override = os.environ.get("PYTEST_ORBSTACK_SSH_CONFIG")
    return Path(override) if override else Path("~/.orbstack/ssh/config").expanduser()


def test_ssh_user_at_machine_at_orb(orb: Orb, machines: list[str]) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client (install openssh-client)")
    name = _create(orb, machines, "ssh")
    user = orb.record(name)["config"]["default_username"]
    config = _ssh_config(orb)
    assert "Host orb" in config.read_text()
    argv = ["ssh", "-F", str(config), "-o", "BatchMode=yes", f"{user}@{name}@orb", "id -un; hostname"]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [user, name]
    orb.ok("delete", "-f", name)


APPENDING = """#cloud-config
write_files:
  - path: /var/tmp/contract-written
    content: first
runcmd:
  - [sh, -c, "echo ran >> /var/tmp/contract-runs"]
"""


def test_cloud_init_user_data_runs_once_per_instance(orb: Orb, machines: list[str], tmp_path: Path) -> None:
    """runcmd and write_files are once-per-instance modules: a restart does not run them again."""
    path = tmp_path / "user-data.yml"
    path.write_text(APPENDING)
    name = _create(orb, machines, "ci-once", "-c", str(path))
    wait = ["run", "-m", name, "-u", "root", "cloud-init", "status", "--wait"]
    orb.ok(*wait, timeout=900)
    assert orb.ok("run", "-m", name, "cat", "/var/tmp/contract-runs").stdout == "ran\n"
    orb.ok("run", "-m", name, "-u", "root", "sh", "-c", "echo changed > /var/tmp/contract-written")
    orb.ok("restart", name)
    assert orb.record(name)["state"] == "running"
    orb.ok(*wait, timeout=900)
    assert orb.ok("run", "-m", name, "cat", "/var/tmp/contract-runs").stdout == "ran\n"
    assert orb.ok("run", "-m", name, "cat", "/var/tmp/contract-written").stdout == "changed\n"
    orb.ok("delete", "-f", name)
