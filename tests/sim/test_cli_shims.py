"""orbsim as orbctl and orb (the shims), its own commands, and argv.log."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from orbsim_cli_helpers import Sim, expect_usage_error, make_sim

N = "pytest-test-shim"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    yield from make_sim(tmp_path)


def test_shims_are_executables_that_answer_as_orbctl(sim: Sim) -> None:
    sim.ok("shims", str(sim.shim_dir))
    for name in ("orbctl", "orb"):
        assert os.access(sim.shim_dir / name, os.X_OK)
    assert sim.ok("version", prog="orbctl").stdout.startswith("Version: 2.0.4 ")
    sim.ok("create", "ubuntu", N, prog="orbctl")
    assert sim.ok("list", "-q", prog="orbctl").stdout == f"{N}\n"
    sim.ok("delete", N, prog="orbctl")


def test_orbsim_only_commands_are_unknown_to_orbctl(sim: Sim) -> None:
    for word in ("shims", "reset", "image", "timeline"):
        expect_usage_error(sim(word, prog="orbctl"), f'unknown command "{word}" for "orbctl"')


def test_orb_runs_a_subcommand_or_falls_back_to_run(sim: Sim) -> None:
    sim.ok("create", "ubuntu", N, prog="orb")
    assert sim.ok("list", "-q", prog="orb").stdout == f"{N}\n"
    assert sim.ok("-m", N, "echo", "via", "orb", prog="orb").stdout == "via orb\n"
    assert sim.ok("echo", "default", "machine", prog="orb").stdout == "default machine\n"
    assert sim("sh", "-c", "exit 7", prog="orb").returncode == 7
    sim.ok("delete", N, prog="orb")


def test_aliases(sim: Sim) -> None:
    sim.ok("add", "ubuntu", N)
    sim.ok("new", "debian", "pytest-test-shim2")
    assert json.loads(sim.ok("i", N, "-f", "json").stdout)["record"]["name"] == N
    assert sim.ok("exec", "-m", N, "echo", "x").stdout == "x\n"
    assert sim.ok("shell", "-m", N, "echo", "y").stdout == "y\n"
    sim.ok("delete", N, "pytest-test-shim2")


def test_help_goes_to_stdout(sim: Sim) -> None:
    proc = sim.ok("create", "--help")
    assert "Usage:" in proc.stdout
    assert "create, add, new" in proc.stdout
    assert proc.stderr == ""


def test_every_argv_is_logged(sim: Sim) -> None:
    sim.ok("list", "-f", "json")
    sim("info", "pytest-test-nope")
    sim.ok("version", prog="orbctl")
    log = sim.argv_log()
    assert ["orbsim", "list", "-f", "json"] in log
    assert ["orbsim", "info", "pytest-test-nope"] in log
    assert ["orbctl", "version"] in log


def test_reset_deletes_every_machine_of_the_home(sim: Sim) -> None:
    sim.ok("create", "ubuntu", N)
    sim.ok("create", "ubuntu", "pytest-test-shim3")
    sim.ok("reset")
    assert sim.names() == []
