"""The CLI over real isolated machines (the namespace engine): end to end, and nothing left behind.

Needs root and the machine image (``orbsim image build``); skipped with that reason otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from orbsim_cli_helpers import Sim, make_sim, namespace_ready

N = "pytest-test-ns"
WHY = namespace_ready()


@pytest.fixture
def nsim(tmp_path: Path) -> Iterator[Sim]:
    if WHY is not None:
        pytest.skip(WHY)
    yield from make_sim(tmp_path, mode="namespace")


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    yield from make_sim(tmp_path)


def _info(sim: Sim, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(sim.ok("info", name, "-f", "json").stdout)
    return data


def test_isolated_machine_end_to_end(nsim: Sim) -> None:
    nsim.ok("create", "-u", "alice", "ubuntu:22.04", N)
    info = _info(nsim, N)
    assert str(info["ip4"]).startswith("198.19.249.")
    assert nsim.ok("run", "-m", N, "hostname").stdout == f"{N}\n"
    assert nsim.ok("run", "-m", N, "id", "-un").stdout == "alice\n"
    assert nsim.ok("run", "-m", N, "-w", "/tmp", "pwd").stdout == "/tmp\n"
    assert nsim.ok("run", "-m", N, "pwd", cwd="/").stdout == "/\n"
    nsim.ok("stop", N)
    assert "ip4" not in _info(nsim, N)
    nsim.ok("clone", N, "pytest-test-ns2")
    assert nsim.ok("run", "-m", "pytest-test-ns2", "hostname").stdout == "pytest-test-ns2\n"
    nsim.ok("delete", N, "pytest-test-ns2")


def test_machine_whose_init_died_shows_stopped_and_restarts(nsim: Sim) -> None:
    nsim.ok("create", "debian", N)
    mid = nsim.machines()[0]["id"]
    runtime = json.loads((nsim.home / "machines" / mid / "runtime.json").read_text())
    os.kill(int(runtime["pid"]), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while nsim.machines()[0]["state"] != "stopped":
        assert time.monotonic() < deadline, "never reported stopped"
        time.sleep(0.05)
    assert nsim.ok("run", "-m", N, "true").returncode == 0  # auto-started again
    assert nsim.machines()[0]["state"] == "running"
    nsim.ok("delete", N)


def test_plain_machine_whose_init_died_shows_stopped(sim: Sim) -> None:
    sim.ok("create", "debian", N)
    mid = sim.machines()[0]["id"]
    (sim.home / "machines" / mid / "plain-running").unlink()  # what the plain engine calls its init
    assert [m["state"] for m in sim.machines()] == ["stopped"]
    sim.ok("delete", N)
