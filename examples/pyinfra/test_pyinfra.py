"""Deploy with pyinfra, check with testinfra: both on a fresh OrbStack machine.

pyinfra reaches the machine through the ``@orbstack`` connector of the
pyinfra-orbstack package (``orbctl run``/``push``; no SSH).  That connector
runs the ``orbctl`` it finds on PATH, so the test puts the orbctl
pytest-orbstack uses first on PATH under that name.

Run:  pip install pyinfra-orbstack 'pytest-orbstack[testinfra]' && pytest examples/pyinfra
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack import Machine

pytest.importorskip("pyinfra_orbstack", reason="needs pyinfra-orbstack: pip install pyinfra-orbstack")
pytest.importorskip("testinfra", reason="needs pytest-testinfra: pip install 'pytest-orbstack[testinfra]'")

HERE = Path(__file__).resolve().parent


def run_pyinfra(machine: Machine, orbctl: str, deb: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    (bin_dir / "orbctl").symlink_to(orbctl)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "ORB_HELLO_DEB": str(deb)}
    argv = [sys.executable, "-m", "pyinfra", "-y", f"@orbstack/{machine.name}", str(HERE / "deploy.py")]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603


def test_deploy_with_pyinfra_then_check_with_testinfra(
    orb_vm_fresh: Machine, orb_client: Any, hello_deb: Path, tmp_path: Path
) -> None:
    deployed = run_pyinfra(orb_vm_fresh, orb_client.binary, hello_deb, tmp_path)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    host = orb_vm_fresh.host
    assert host.package("orb-hello").is_installed
    config = host.file("/etc/orb-hello.conf")
    assert (config.user, config.mode) == ("root", 0o644)
    assert config.content_string == (HERE / "orb-hello.conf").read_text()
    assert host.user("hello").home == "/srv/hello"
    assert host.check_output("orb-hello") == "hello from pyinfra"
