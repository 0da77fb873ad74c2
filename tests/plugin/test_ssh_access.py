"""Machine.ssh_destination and Machine.ssh_config() against orbsim's sshd: a real ``ssh ... true``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="openssh-client is not installed")

SSH_TESTS = """
import shlex
import subprocess

def ssh(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

def test_ssh(orb_vm, tmp_path):
    cfg = orb_vm.ssh_config()
    assert cfg.destination == orb_vm.ssh_destination == f"{orb_vm.user}@{orb_vm.name}@orb"
    assert (cfg.host, cfg.hostname, cfg.port) == ("orb", "127.0.0.1", 32222)
    assert cfg.user == f"{orb_vm.user}@{orb_vm.name}"
    assert cfg.identity_file is not None and cfg.identity_file.is_file()
    assert cfg.proxy_command and cfg.proxy_use_fdpass
    proc = ssh(cfg.ssh_args("true"))
    assert proc.returncode == 0, proc.stderr
    # what Ansible's ssh connection runs with the inventory variables
    v = cfg.ansible_vars()
    common = shlex.split(v["ansible_ssh_common_args"])
    argv = ["ssh", *common, "-o", "User=" + v["ansible_user"], v["ansible_host"]]
    proc = ssh([*argv, "id -un; hostname"])
    assert proc.stdout.split() == [orb_vm.user, orb_vm.name], proc.stderr
    # a Host block of its own, for tools that want a host name per machine
    own = tmp_path / "ssh_config"
    own.write_text(cfg.host_block("box"))
    proc = ssh(["ssh", "-F", str(own), "box", "cat /etc/hostname"])
    assert proc.stdout == orb_vm.name + "\\n", proc.stderr
"""


def test_ssh_config_reaches_the_machine(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[[], None],
) -> None:
    monkeypatch.setenv("PYTEST_ORBSTACK_SSH_CONFIG", str(Path(orbsim_env["ORBSIM_HOME"]) / "ssh" / "config"))
    pytester.makepyfile(test_ssh=SSH_TESTS)
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert_no_leftovers()


def test_a_missing_ssh_config_is_one_clear_error(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[[], None],
) -> None:
    missing = tmp_path / "nowhere" / "config"
    monkeypatch.setenv("PYTEST_ORBSTACK_SSH_CONFIG", str(missing))
    pytester.makepyfile(
        test_missing="""
import pytest
from pytest_orbstack.ssh import SshConfigError

def test_missing(orb_vm):
    with pytest.raises(SshConfigError, match="cannot read OrbStack's ssh config") as info:
        orb_vm.ssh_config()
    assert "PYTEST_ORBSTACK_SSH_CONFIG" in str(info.value)
"""
    )
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert_no_leftovers()
