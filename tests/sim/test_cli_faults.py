"""ORBSIM_FAULTS: failures with the real texts, counted across orbsim processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from orbsim_cli_helpers import Sim, expect_service_error, make_sim, orbsim_bin

from pytest_orbstack.sim.faults import FaultSyntaxError, parse

N = "pytest-test-f"
SETUP = f"create '{N}': setup: machine didn't start in 30s (missing IP address)"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    yield from make_sim(tmp_path)


def test_fail_the_next_two_creates_across_processes(sim: Sim) -> None:
    env = {"ORBSIM_FAULTS": "create=setup-timeout*2"}
    expect_service_error(sim("create", "ubuntu", N, env=env), SETUP)
    assert sim.names() == []  # the half-made machine was deleted
    expect_service_error(sim("create", "ubuntu", N, env=env), SETUP)
    sim.ok("create", "ubuntu", N, env=env)
    assert sim.names() == [N]
    sim.ok("delete", N)


def test_setup_timeout_keep_leaves_the_machine(sim: Sim) -> None:
    env = {"ORBSIM_FAULTS": "create=setup-timeout-keep*1"}
    expect_service_error(sim("create", "ubuntu", N, env=env), SETUP)
    assert [(m["name"], m["state"]) for m in sim.machines()] == [(N, "running")]
    expect_service_error(sim("create", "ubuntu", N, env=env), f"create '{N}': machine already exists: '{N}'")
    sim.ok("delete", N)


def test_download_502(sim: Sim) -> None:
    env = {"ORBSIM_FAULTS": "create@pytest-test-*=download-502*1"}
    expect_service_error(
        sim("create", "ubuntu", N, env=env),
        f"create '{N}': make rootfs: download metadata: GET download status: 502 Bad Gateway",
    )
    assert sim.names() == []
    sim.ok("create", "ubuntu", N, env=env)
    sim.ok("delete", N)


def test_glob_limits_a_rule_to_matching_machines(sim: Sim) -> None:
    env = {"ORBSIM_FAULTS": "create@pytest-test-bad*=download-502"}
    sim.ok("create", "ubuntu", "pytest-test-good", env=env)
    assert sim("create", "ubuntu", "pytest-test-bad1", env=env).returncode == 1
    sim.ok("delete", "pytest-test-good")


def test_fail_a_delete_once(sim: Sim) -> None:
    sim.ok("create", "ubuntu", N)
    env = {"ORBSIM_FAULTS": "delete=conflict*1"}
    expect_service_error(sim("delete", N, env=env), "cannot transition from running to deleting")
    assert sim.names() == [N]
    sim.ok("delete", N, env=env)
    assert sim.names() == []


def test_service_and_vm_timeouts(sim: Sim) -> None:
    proc = sim("list", env={"ORBSIM_FAULTS": "any=service-timeout*1"})
    assert (proc.returncode, proc.stderr) == (1, "timed out waiting for services to start\n")
    proc = sim("info", "x1", env={"ORBSIM_FAULTS": "info=vm-timeout*1"})
    assert (proc.returncode, proc.stderr) == (1, "start VM: timed out waiting for VM to start\n")
    sim.ok("list")


def test_orbstack_reported_stopped(sim: Sim) -> None:
    env = {"ORBSIM_FAULTS": "vm=stopped"}
    proc = sim("status", env=env)
    assert (proc.returncode, proc.stdout) == (1, "Stopped\n")
    proc = sim("list", env=env)
    assert (proc.returncode, proc.stderr) == (1, "start VM: timed out waiting for VM to start\n")
    assert sim("version", env=env).returncode == 0
    proc = sim("status", env={"ORBSIM_FAULTS": "vm=starting"})
    assert (proc.returncode, proc.stdout) == (2, "Starting\n")


def test_error_kind_substitutes_the_name(sim: Sim) -> None:
    sim.ok("create", "ubuntu", N)
    proc = sim("stop", N, env={"ORBSIM_FAULTS": "stop=error:stop '{name}': device busy*1"})
    expect_service_error(proc, f"stop '{N}': device busy")
    sim.ok("delete", N)


def _wait(predicate: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def test_hang_then_succeed_outlives_the_caller(sim: Sim) -> None:
    env = {**sim.env, "ORBSIM_FAULTS": "create=hang:3600*1"}
    proc = subprocess.Popen([orbsim_bin(), "create", "ubuntu", N], env=env)
    try:
        _wait(
            lambda: [(m["name"], m["state"]) for m in sim.machines()] == [(N, "running")], "machine running"
        )
        assert proc.poll() is None  # still hanging although the machine is ready
    finally:
        proc.kill()
        proc.wait(timeout=30)
    expect_service_error(sim("create", "ubuntu", N), f"create '{N}': machine already exists: '{N}'")
    sim.ok("delete", N)


def test_stall_without_creating(sim: Sim) -> None:
    env = {**sim.env, "ORBSIM_FAULTS": "create=stall:3600*1"}
    proc = subprocess.Popen([orbsim_bin(), "create", "ubuntu", N], env=env)
    try:
        _wait(
            lambda: (
                (sim.home / "state.json").exists() and sim.state()["faults"].get("create=stall:3600*1") == 1
            ),
            "the stall rule used",
        )
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert sim.names() == []


def test_killed_create_is_cleaned_up_by_the_next_call(sim: Sim) -> None:
    env = {**sim.env, "ORBSIM_PROFILE": "orbstack", "ORBSIM_SCALE": "100"}
    proc = subprocess.Popen([orbsim_bin(), "create", "ubuntu", N], env=env)
    try:
        _wait(lambda: [m["state"] for m in sim.machines()] == ["creating"], "state creating")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert sim.names() == []  # the dead create is settled like a failed create


def test_reset_rearms_counters(sim: Sim) -> None:
    env = {"ORBSIM_FAULTS": "create=download-502*1"}
    assert sim("create", "ubuntu", N, env=env).returncode == 1
    sim.ok("reset")
    assert sim("create", "ubuntu", N, env=env).returncode == 1
    assert json.loads((sim.home / "state.json").read_text())["faults"] == {"create=download-502*1": 1}


def test_rule_syntax() -> None:
    rules = parse(" create=setup-timeout*2 ; delete@pytest-test-*=conflict:creating*1;vm=stopped ")
    assert [(r.op, r.glob, r.kind, r.arg, r.count) for r in rules] == [
        ("create", None, "setup-timeout", None, 2),
        ("delete", "pytest-test-*", "conflict", "creating", 1),
        ("vm", None, "stopped", None, None),
    ]
    for bad in ("create", "create=explode", "fly=stall", "create=hang*x"):
        with pytest.raises(FaultSyntaxError, match="ORBSIM_FAULTS rule"):
            parse(bad)


@pytest.mark.parametrize("op", ["list", "info", "run", "push", "config"])
def test_error_kind_applies_to_every_op(sim: Sim, op: str, tmp_path: Path) -> None:
    sim.ok("create", "ubuntu", N)
    payload = tmp_path / "payload.txt"
    payload.write_text("x\n")
    argv = {
        "list": ["list"],
        "info": ["info", N],
        "run": ["run", "-m", N, "true"],
        "push": ["push", "-m", N, str(payload)],
        "config": ["config", "show"],
    }[op]
    env = {"ORBSIM_FAULTS": f"{op}=error:{op} broke*1"}
    expect_service_error(sim(*argv, env=env), f"{op} broke")
    assert sim(*argv, env=env).returncode == 0
    sim.ok("delete", N)


def _info(sim: Sim, name: str) -> dict[str, object]:
    info: dict[str, object] = json.loads(sim.ok("info", name, "-f", "json").stdout)
    return info


def test_no_ip_create_fails_with_the_setup_text_and_leaves_nothing(sim: Sim) -> None:
    env = {"ORBSIM_FAULTS": "create=no-ip*1"}
    expect_service_error(sim("create", "ubuntu", N, env=env), SETUP)
    assert sim.names() == []
    sim.ok("create", "ubuntu", N, env=env)  # the rule is used up
    assert "ip4" in _info(sim, N)
    sim.ok("delete", N)


def test_no_ip_start_runs_without_an_address_until_started_again(sim: Sim) -> None:
    sim.ok("create", "ubuntu", N)
    sim.ok("stop", N)
    sim.ok("start", N, env={"ORBSIM_FAULTS": f"start@{N}=no-ip*1"})
    info = _info(sim, N)
    assert info["record"]["state"] == "running"  # type: ignore[index]
    assert "ip4" not in info
    assert sim.ok("run", "-m", N, "true").returncode == 0  # it runs commands all the same
    sim.ok("restart", N)
    deadline = time.monotonic() + 10
    while "ip4" not in _info(sim, N):  # a later start without the fault brings the address
        assert time.monotonic() < deadline, "no address after a restart without the fault"
        time.sleep(0.05)
    sim.ok("delete", N)


def test_undeletable_machine_stays_stopped_and_blocks_its_call(sim: Sim) -> None:
    other = "pytest-test-g"
    sim.ok("create", "ubuntu", N)
    sim.ok("create", "ubuntu", other)
    env = {"ORBSIM_FAULTS": f"delete@{N}=undeletable"}
    proc = sim("delete", "-f", N, other, env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("[-32098] delete rootfs: remove all x2: unlinkat /data/scon/containers/")
    assert proc.stderr.rstrip().endswith("/rootfs/swapfile: operation not permitted")
    assert {m["name"]: m["state"] for m in sim.machines()} == {N: "stopped", other: "running"}
    sim.ok("delete", "-f", other, env=env)  # a machine the rule does not match is deleted
    expect_service_error(
        sim("delete", "-f", N, env={"ORBSIM_FAULTS": f"delete@{N}=undeletable:stuck {{name}}"}), f"stuck {N}"
    )
    sim.ok("delete", "-f", N)  # without the fault it goes
    assert sim.names() == []


def test_download_stall_stays_creating_and_finishes_after_the_caller_is_killed(sim: Sim) -> None:
    env = {**sim.env, "ORBSIM_FAULTS": "create=download-stall:2*1"}
    proc = subprocess.Popen([orbsim_bin(), "create", "ubuntu", N], env=env, start_new_session=True)
    try:
        _wait(lambda: [m["state"] for m in sim.machines()] == ["creating"], "state creating")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # as the plugin kills a create that timed out
        proc.wait(timeout=30)
    assert [m["state"] for m in sim.machines()] == ["creating"]  # the service goes on
    _wait(lambda: [m["state"] for m in sim.machines()] == ["running"], "state running", timeout=60)
    sim.ok("run", "-m", N, "true")
    sim.ok("delete", N)


def test_download_stall_caller_that_waits_gets_the_result(sim: Sim) -> None:
    sim.ok("create", "ubuntu", N, env={"ORBSIM_FAULTS": "create=download-stall:0.5*1"})
    assert [m["state"] for m in sim.machines()] == ["running"]
    sim.ok("delete", N)
