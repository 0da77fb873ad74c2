"""The orbctl contract: which orbctl the contract tests talk to.

By default they run against orbsim (through its ``orbctl`` shim, with a private
``ORBSIM_HOME``; isolated machines when root and the image are available, else
``ORBSIM_MODE=plain``; ``ORBSIM_VERSION`` chooses the emulated version; default user
``john.doe``: a Mac's is not root).
``ORBSTACK_CONTRACT=real`` runs them against the real ``orbctl`` on PATH (a Mac
with OrbStack); without one they are skipped, saying why.  Every machine they
make is named ``pytest-test-contract-<run>-...`` and is deleted at the end; the
session fails if one is left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from orbctl_contract import Orb

from pytest_orbstack.sim import rootfs


def _orbsim_shims(base: Path) -> str:
    orbsim = Path(sys.executable).with_name("orbsim")
    subprocess.run([str(orbsim), "shims", str(base / "bin")], check=True, timeout=60)
    return str(base / "bin" / "orbctl")


def _orbsim_mode() -> str:
    if os.environ.get("ORBSIM_MODE"):
        return os.environ["ORBSIM_MODE"]
    if os.geteuid() != 0:
        return "plain"
    return "namespace" if rootfs.is_ready() else "plain"


@pytest.fixture(scope="session")
def orb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orb]:
    target = os.environ.get("ORBSTACK_CONTRACT", "orbsim").strip().lower()
    if target == "real":
        binary = shutil.which("orbctl")
        if binary is None or Path(binary).resolve() == Path(sys.executable).with_name("orbsim").resolve():
            pytest.skip(
                "ORBSTACK_CONTRACT=real needs the real orbctl on PATH (macOS with OrbStack installed)"
            )
        env = dict(os.environ)
        kind = "real"
    elif target == "orbsim":
        base = tmp_path_factory.mktemp("contract")
        binary = _orbsim_shims(base)
        # ORBSIM_VERSION passes: the contract can be run against each emulated OrbStack version.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORBSIM_") or k == "ORBSIM_VERSION"}
        env.update({"ORBSIM_HOME": str(base / "home"), "ORBSIM_MODE": _orbsim_mode()})
        env["ORBSIM_USER"] = "john.doe"  # a Mac's default user: its macOS short name, not root
        kind = "orbsim"
    else:
        raise pytest.UsageError(f"ORBSTACK_CONTRACT={target!r}: use 'orbsim' (the default) or 'real'")
    orb = Orb(binary, env, kind)
    yield orb
    left = orb.ours()
    if left:
        orb("delete", "-f", *left)
    assert orb.ours() == [], "contract machines left behind"
    assert left == [], f"a contract test left machines behind: {left}"


@pytest.fixture(scope="session")
def base(orb: Orb) -> Iterator[str]:
    """One running ubuntu:22.04 machine shared by the read-only contract tests."""
    name = orb.name("base")
    proc = orb("create", "ubuntu:22.04", name, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    yield name
    orb("delete", "-f", name)
