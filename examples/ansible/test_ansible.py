"""Deploy with an Ansible playbook, check with testinfra: both on a fresh OrbStack machine.

Ansible has no connection for OrbStack, so this example brings a small one,
``connection_plugins/orbctl.py`` (``orbctl run``, no SSH).  The inventory is
one line per machine: ``NAME ansible_connection=orbctl ansible_orbctl=PATH``.

Run:  pip install ansible-core 'pytest-orbstack[testinfra]' && pytest examples/ansible
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack import Machine

pytest.importorskip("ansible", reason="needs ansible-core: pip install ansible-core")
pytest.importorskip("testinfra", reason="needs pytest-testinfra: pip install 'pytest-orbstack[testinfra]'")

HERE = Path(__file__).resolve().parent


def inventory(machines: list[Machine], orbctl: str) -> str:
    """An INI inventory of ``machines`` reached through the orbctl connection."""
    lines = [
        f"{m.name} ansible_connection=orbctl ansible_orbctl={orbctl} "
        "ansible_python_interpreter=/usr/bin/python3"
        for m in machines
    ]
    return "[orbstack]\n" + "\n".join(lines) + "\n"


def run_playbook(inventory_file: Path, deb: Path, work: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LC_ALL": "C.UTF-8",  # ansible refuses to run without a UTF-8 locale
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
        "ANSIBLE_CONNECTION_PLUGINS": str(HERE / "connection_plugins"),
        "ANSIBLE_NOCOLOR": "1",
    }
    argv = [
        *(sys.executable, "-m", "ansible.cli.playbook"),
        *("-i", str(inventory_file), "-e", f"orb_hello_deb={deb}", str(HERE / "playbook.yml")),
    ]
    return subprocess.run(  # noqa: S603 - argv list, no shell
        argv, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_deploy_with_ansible_then_check_with_testinfra(
    orb_vm_fresh: Machine, orb_client: Any, hello_deb: Path, tmp_path: Path
) -> None:
    inventory_file = tmp_path / "inventory.ini"
    inventory_file.write_text(inventory([orb_vm_fresh], orb_client.binary))

    deployed = run_playbook(inventory_file, hello_deb, tmp_path)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "failed=0" in deployed.stdout

    host = orb_vm_fresh.host
    assert host.package("orb-hello").is_installed
    config = host.file("/etc/orb-hello.conf")
    assert (config.user, config.mode) == ("root", 0o644)
    assert host.user("hello").home == "/srv/hello"
    assert host.check_output("orb-hello") == "hello from ansible"
    # the package went through the connection's put_file byte for byte
    assert host.file("/tmp/orb-hello.deb").sha256sum == hashlib.sha256(hello_deb.read_bytes()).hexdigest()
