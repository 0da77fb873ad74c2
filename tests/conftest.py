"""Shared fixtures of the project's own test suite: an orbsim per test session.

Every test process (each xdist worker too) gets its own ``ORBSIM_HOME`` and
its own pytest-orbstack state directory, and ``ORBCTL`` points at orbsim, so
pytester runs inside the tests use orbsim without any option.  Tests that
create machines end with ``assert_no_leftovers()``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from pytest_orbstack.sim.simcmds import write_launcher

PREFIX = "pytest-test-"


def _orbsim_path() -> str:
    beside = Path(sys.executable).with_name("orbsim")
    if beside.exists():
        return str(beside)
    found = shutil.which("orbsim")
    if found is None:
        raise RuntimeError("orbsim is not installed: pip install -e '.[test]' installs it")
    return found


@pytest.fixture(scope="session")
def orbsim_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of the orbsim executable: a launcher like ``orbsim shims`` writes, named ``orbsim``.

    Same program and mode as the console script (the name decides the mode), but
    ``python -I -S``: without site's import hooks every call starts in half the time.
    """
    _orbsim_path()  # installed, as the plugin's own fallback needs
    path = tmp_path_factory.mktemp("orbsim-bin") / "orbsim"
    write_launcher(path, "orbsim")
    return str(path)


@pytest.fixture(scope="session", autouse=True)
def orbsim_env(tmp_path_factory: pytest.TempPathFactory, orbsim_bin: str) -> Iterator[dict[str, str]]:
    """ORBSIM_HOME, ORBCTL, PYTEST_ORBSTACK_STATE_DIR and PYTEST_ORBSTACK_SSH_CONFIG for this test process."""
    base = tmp_path_factory.mktemp("orbsim-session")
    values = {
        "ORBSIM_HOME": str(base / "home"),
        "ORBCTL": orbsim_bin,
        "PYTEST_ORBSTACK_STATE_DIR": str(base / "state"),
        # orbsim's equivalent of ~/.orbstack/ssh/config (Machine.ssh_config() reads it)
        "PYTEST_ORBSTACK_SSH_CONFIG": str(base / "home" / "ssh" / "config"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        yield values
    # The whole session's machines: anything left here is a leak of some test.
    leftovers = _list_names(orbsim_bin, values)
    if leftovers:
        subprocess.run(
            [orbsim_bin, "delete", "-f", *leftovers],
            env={**os.environ, **values},
            timeout=120,
            check=False,
            capture_output=True,
        )
        raise AssertionError(f"machines left behind by the test session (now deleted): {leftovers}")


def _list_names(orbsim_bin: str, env: dict[str, str], prefix: str = "") -> list[str]:
    proc = subprocess.run(
        [orbsim_bin, "list", "-f", "json"],
        env={**os.environ, **env},
        timeout=60,
        check=True,
        capture_output=True,
        text=True,
    )
    return [m["name"] for m in json.loads(proc.stdout) if m["name"].startswith(prefix)]


@pytest.fixture
def orbsim_machines(orbsim_bin: str, orbsim_env: dict[str, str]) -> Callable[[str], list[str]]:
    """``orbsim_machines(prefix="")``: names of orbsim machines that start with prefix."""

    def names(prefix: str = "") -> list[str]:
        return _list_names(orbsim_bin, orbsim_env, prefix)

    return names


@pytest.fixture
def assert_no_leftovers(
    orbsim_machines: Callable[[str], list[str]],
) -> Callable[..., None]:
    """``assert_no_leftovers(prefix="pytest-test-", within=10.0)``: poll until none is left."""

    def check(prefix: str = PREFIX, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        left = orbsim_machines(prefix)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = orbsim_machines(prefix)
        assert left == [], f"orbsim still lists {left} {within:g}s after the run"

    return check
