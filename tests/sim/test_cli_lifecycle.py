"""Life cycle: lookups, delete all-or-nothing, clone, rename, start/stop, default, config, logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from orbsim_cli_helpers import Sim, expect_service_error, make_sim


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    yield from make_sim(tmp_path)


def _state(sim: Sim, name: str) -> str:
    return str(json.loads(sim.ok("info", name, "-f", "json").stdout)["record"]["state"])


def test_create_returns_a_running_machine_and_the_user_is_recorded(sim: Sim) -> None:
    sim.ok("create", "-u", "alice", "ubuntu", "pytest-test-c")
    info = json.loads(sim.ok("info", "pytest-test-c", "-f", "json").stdout)
    assert info["record"]["state"] == "running"
    assert info["record"]["config"]["default_username"] == "alice"
    sim.ok("delete", "pytest-test-c")


def test_default_user_comes_from_orbsim_user_then_sudo_user(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-u1", env={"ORBSIM_USER": "", "SUDO_USER": "bob"})
    sim.ok("create", "ubuntu", "pytest-test-u2")
    users = {m["name"]: m["config"]["default_username"] for m in sim.machines()}
    assert users == {"pytest-test-u1": "bob", "pytest-test-u2": "tester"}
    sim.ok("delete", "-a")


def test_lookup_by_id_first_then_name(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-a")
    mid = sim.machines()[0]["id"]
    info = json.loads(sim.ok("info", mid, "-f", "json").stdout)
    assert info["record"]["name"] == "pytest-test-a"
    sim.ok("stop", mid)
    assert _state(sim, "pytest-test-a") == "stopped"
    sim.ok("delete", mid)
    assert sim.names() == []


def test_delete_is_all_or_nothing(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-d1")
    sim.ok("create", "ubuntu", "pytest-test-d2")
    proc = sim("delete", "-f", "pytest-test-d1", "pytest-test-gone", "pytest-test-d2")
    expect_service_error(proc, "machine not found: 'pytest-test-gone'")
    assert sim.names() == ["pytest-test-d1", "pytest-test-d2"]
    sim.ok("delete", "-f", "pytest-test-d1", "pytest-test-d2")
    assert sim.names() == []


def test_delete_all(sim: Sim) -> None:
    for n in ("pytest-test-1a", "pytest-test-1b"):
        sim.ok("create", "debian", n)
    sim.ok("stop", "pytest-test-1a")
    sim.ok("delete", "-a")
    assert sim.names() == []


def test_clone_makes_a_stopped_copy_with_the_same_image(sim: Sim) -> None:
    sim.ok("create", "-u", "carol", "ubuntu:22.04", "pytest-test-src")
    sim.ok("run", "-m", "pytest-test-src", "sh", "-c", "echo kept > marker")
    sim.ok("clone", "pytest-test-src", "pytest-test-dst")
    recs = {m["name"]: m for m in sim.machines()}
    dst, src = recs["pytest-test-dst"], recs["pytest-test-src"]
    assert dst["state"] == "stopped"
    assert dst["image"] == src["image"]
    assert dst["config"] == src["config"]
    assert dst["id"] != src["id"]
    proc = sim.ok("run", "-m", "pytest-test-dst", "cat", "marker")  # starts it
    assert proc.stdout == "kept\n"
    assert _state(sim, "pytest-test-dst") == "running"
    expect_service_error(
        sim("clone", "pytest-test-src", "pytest-test-dst"),
        "clone 'pytest-test-dst': machine already exists: 'pytest-test-dst'",
    )
    sim.ok("delete", "pytest-test-src", "pytest-test-dst")


def test_rename_keeps_the_id(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-old")
    mid = sim.machines()[0]["id"]
    sim.ok("rename", "pytest-test-old", "pytest-test-new")
    assert [(m["id"], m["name"]) for m in sim.machines()] == [(mid, "pytest-test-new")]
    expect_service_error(sim("info", "pytest-test-old"), "machine not found: 'pytest-test-old'")
    sim.ok("delete", "pytest-test-new")


def test_start_and_stop_are_no_ops_when_already_there(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-s")
    sim.ok("start", "pytest-test-s")
    assert _state(sim, "pytest-test-s") == "running"
    sim.ok("stop", "pytest-test-s")
    sim.ok("stop", "pytest-test-s")
    assert _state(sim, "pytest-test-s") == "stopped"
    sim.ok("restart", "pytest-test-s")
    assert _state(sim, "pytest-test-s") == "running"
    sim.ok("stop", "-a")
    assert _state(sim, "pytest-test-s") == "stopped"
    sim.ok("start", "-a")
    assert _state(sim, "pytest-test-s") == "running"
    sim.ok("delete", "pytest-test-s")


def test_stop_without_names_stops_orbstack_and_any_command_starts_it_again(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-v")
    sim.ok("stop")
    proc = sim("status")
    assert (proc.returncode, proc.stdout) == (1, "Stopped\n")
    assert _state(sim, "pytest-test-v") == "stopped"  # info started OrbStack, not the machine
    assert sim.ok("status").stdout == "Running\n"
    sim.ok("delete", "pytest-test-v")


def test_default_machine_is_used_by_run(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-first")
    sim.ok("create", "ubuntu", "pytest-test-second")
    assert sim.ok("default").stdout == "pytest-test-first\n"
    sim.ok("default", "pytest-test-second")
    assert sim.ok("default").stdout == "pytest-test-second\n"
    sim.ok("run", "sh", "-c", "echo here > where")
    assert sim.ok("run", "-m", "pytest-test-second", "cat", "where").stdout == "here\n"
    sim.ok("delete", "-a")


def test_config_show_get_set_and_per_machine_username(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-cfg")
    shown = sim.ok("config", "show").stdout.splitlines()
    assert "machine.pytest-test-cfg.username: tester" in shown
    assert all(": " in line for line in shown)
    sim.ok("config", "set", "machine.pytest-test-cfg.username", "dave")
    assert sim.ok("config", "get", "machine.pytest-test-cfg.username").stdout == "dave\n"
    rec = sim.machines()[0]
    assert rec["config"]["default_username"] == "dave"
    sim.ok("delete", "pytest-test-cfg")


def test_logs_show_the_console(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-log")
    proc = sim.ok("logs", "pytest-test-log")
    assert "pytest-test-log" in proc.stdout
    sim.ok("delete", "pytest-test-log")


def test_export_import_say_they_are_not_implemented(sim: Sim) -> None:
    proc = sim("export", "x1", "out.tar.zst")
    assert proc.returncode == 1
    assert "orbsim does not implement export/import" in proc.stderr
