"""OrbStack's failure modes on orbsim: a shared machine that dies, machines without an address,
a create that stays ``creating``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

HOOKS = """
from pathlib import Path

import pytest

LOG = Path(__file__).with_name("hooks.log")


def pytest_orbstack_provision(machine, config):
    with LOG.open("a") as fh:
        fh.write(f"provision {machine.name}\\n")


def pytest_orbstack_machine_ready(machine, config):
    with LOG.open("a") as fh:
        fh.write(f"ready {machine.name}\\n")


@pytest.fixture(scope="session")
def vm_name(orb_vm):
    return orb_vm.name
"""

SHARED_TESTS = """
NAMES = []


def test_1_deletes_it(orb_vm, vm_name):
    NAMES.append(vm_name)
    orb_vm.delete()


def test_2_gets_a_new_one(orb_vm, vm_name):
    assert orb_vm.name != NAMES[0]
    assert vm_name == orb_vm.name  # a session fixture built on orb_vm is built again
    assert orb_vm.run("true").ok
    NAMES.append(orb_vm.name)


def test_3_kills_its_init(orb_vm):
    # the command dies with the machine (a bare `kill` that returns 0 first leaves no sign)
    result = orb_vm.run(["sh", "-c", "kill -TERM 1; sleep 30"], user="root", check=False)
    assert result.returncode != 0


def test_4_same_machine_running_again(orb_vm):
    assert orb_vm.name == NAMES[1]
    assert orb_vm.state == "running"
    assert orb_vm.run("true").ok


def test_5_stops_it(orb_vm):
    orb_vm.stop()


def test_6_running_again(orb_vm):
    assert orb_vm.name == NAMES[1]
    assert orb_vm.state == "running"


def test_7_untouched(orb_vm):
    assert orb_vm.name == NAMES[1]
"""


def _log(pytester: pytest.Pytester) -> list[tuple[str, str]]:
    path = Path(pytester.path) / "hooks.log"
    return [tuple(line.split()) for line in path.read_text().splitlines()]  # type: ignore[misc]


@pytest.mark.parametrize(
    ("clone", "workers"),
    [
        ("never", ["-p", "no:xdist"]),
        ("always", ["-p", "no:xdist"]),  # one orb_vm would be created directly with auto
        ("never", ["-n", "2", "--dist", "loadfile"]),
    ],
    ids=["create", "clone", "create-n2"],
)
def test_a_dead_shared_machine_is_replaced_and_a_restarted_one_announced_again(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    clone: str,
    workers: list[str],
) -> None:
    pytester.makeconftest(HOOKS)
    pytester.makepyfile(test_shared=SHARED_TESTS)
    result = run_pytest(*workers, "-p", "no:randomly", "--orb-clone", clone)
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        [
            "*orb_vm machine pytest-test-* is gone during test_shared.py::test_1_deletes_it"
            " (the test deleted it): a new one replaces it, made and provisioned*",
            "*orb_vm machine pytest-test-* restarted during test_shared.py::test_3_kills_its_init"
            " (*exited with *): pytest_orbstack_machine_ready runs again*",
            "*orb_vm machine pytest-test-* restarted during test_shared.py::test_5_stops_it"
            " (the test stopped it): pytest_orbstack_machine_ready runs again*",
        ]
    )
    ready = [name for kind, name in _log(pytester) if kind == "ready"]
    first, second = ready[0], ready[1]
    assert first != second
    assert ready == [first, second, second, second]  # made, replaced, killed, stopped
    provisioned = [name for kind, name in _log(pytester) if kind == "provision"]
    if clone == "never":
        assert provisioned == [first, second]  # the replacement is provisioned again
    else:
        assert len(provisioned) == 1  # on the base, which the replacement is cloned from too
    assert_no_leftovers()


@pytest.mark.parametrize("ready_hook", [False, True], ids=["no-ready-hook", "ready-hook"])
def test_a_healthy_shared_machine_costs_no_extra_call(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_env: dict[str, str],
    assert_no_leftovers: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    ready_hook: bool,
) -> None:
    """Between tests that went well, nothing is asked of orbctl (counted through a wrapper); with a
    ready hook, one `run` a test reads the init's start time, so a restart without a sign is seen."""
    calls = tmp_path / "calls.log"
    wrapper = tmp_path / "orbctl"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {calls}\nexec {orbsim_env["ORBCTL"]} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("ORBCTL", str(wrapper))
    hooks = HOOKS if ready_hook else HOOKS.replace("def pytest_orbstack_machine_ready(", "def _not_a_hook(")
    pytester.makeconftest(hooks)
    pytester.makepyfile("def test_a(orb_vm):\n    pass\n\n\ndef test_b(orb_vm):\n    pass\n")
    pytester.makepyfile(test_more="\n\n".join(f"def test_{i}(orb_vm):\n    pass" for i in range(6)))
    run_pytest("-p", "no:xdist", "--orb-clone", "never", "--orb-no-prefetch").assert_outcomes(passed=8)
    ops = calls.read_text().split()
    # create, the readiness probes and infos, delete: none per test; with the ready hook, one
    # `run` for the init's start time at hand-out and one before each test after the first
    runs = [op for op in ops if op == "run"]
    assert len(runs) <= (2 + 8 if ready_hook else 2), ops
    if ready_hook:
        assert len(runs) >= 8, ops
    assert ops.count("info") <= 4, ops
    print(f"orbctl calls for 8 tests on one shared machine: {len(ops)} ({ops})")
    assert_no_leftovers()


def _fault_count(orbsim_env: dict[str, str], rule: str) -> int:
    state = json.loads((Path(orbsim_env["ORBSIM_HOME"]) / "state.json").read_text())
    return int(state.get("faults", {}).get(rule, 0))


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_machines_without_an_address_trip_the_breaker(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    orbsim_env: dict[str, str],
    assert_no_leftovers: Callable[..., None],
    workers: list[str],
) -> None:
    rule = f"create=no-ip*{100 + len(workers)}"  # its own counter in this session's orbsim
    monkeypatch.setenv("ORBSIM_FAULTS", rule)
    pytester.makepyfile("\n\n".join(f"def test_{i}(orb_vm_fresh):\n    pass" for i in range(8)))
    args = ["--orb-clone", "never", "--orb-retries", "1", "--orb-no-prefetch"]
    result = run_pytest(*(workers or ["-p", "no:xdist"]), *args)
    result.assert_outcomes(errors=8)
    result.stdout.fnmatch_lines(["*NoAddressError: OrbStack gives new machines no IP address*orb*stop*"])
    creates = _fault_count(orbsim_env, rule)
    print(f"creates before every machine test failed at once: {creates}")
    assert creates == 3 if not workers else 3 <= creates <= 6  # a worker stops at its third, or sooner
    assert "setup: machine didn't start in 30s (missing IP address)" in result.stdout.str()
    assert_no_leftovers()


def test_clones_that_never_get_an_address_trip_the_breaker(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    orbsim_env: dict[str, str],
    assert_no_leftovers: Callable[..., None],
) -> None:
    """On the clone path the base is fine, but every started clone runs without an address."""
    rule = "start@pytest-test-*=no-ip*100"
    monkeypatch.setenv("ORBSIM_FAULTS", rule)
    pytester.makepyfile("\n\n".join(f"def test_{i}(orb_vm_fresh):\n    pass" for i in range(6)))
    args = ["--orb-clone", "always", "--orb-ready-timeout", "1", "--orb-no-prefetch"]
    result = run_pytest("-p", "no:xdist", *args)
    result.assert_outcomes(errors=6)
    result.stdout.fnmatch_lines(
        [
            "*MachineNotReadyError*no IPv4 address yet*",
            "*NoAddressError: *3 machines in a row (ubuntu:22.04)*",
        ]
    )
    assert _fault_count(orbsim_env, rule) == 3  # three clones started, then none
    assert_no_leftovers()


def test_an_undeletable_machine_is_reported_then_purged(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[..., None],
) -> None:
    """The first delete fails with OrbStack's text; the run says so and its final purge gets it."""
    monkeypatch.setenv("ORBSIM_FAULTS", "delete@pytest-test-*=undeletable*1")
    pytester.makepyfile("def test_vm(orb_vm_fresh):\n    pass\n")
    result = run_pytest("-p", "no:xdist", "--orb-clone", "never", "--orb-no-prefetch")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*could not delete pytest-test-*delete rootfs: remove all x2: unlinkat*operation not permitted*"]
    )
    assert_no_leftovers()


def test_a_create_still_creating_after_its_timeout_is_waited_for_not_made_again(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    orbsim_env: dict[str, str],
    assert_no_leftovers: Callable[..., None],
) -> None:
    """The download stalls 12 s; the create is killed at 8 s, then the machine is waited for.

    With only the ready timeout (2 s) it would be deleted at 10 s and created again.
    """
    rule = "create=download-stall:12*1"
    monkeypatch.setenv("ORBSIM_FAULTS", rule)
    pytester.makepyfile("def test_vm(orb_vm_fresh):\n    assert orb_vm_fresh.run('true').ok\n")
    args = ["--orb-clone", "never", "--orb-create-timeout", "8", "--orb-ready-timeout", "2"]
    result = run_pytest("-p", "no:xdist", "-v", "--orb-no-prefetch", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*adopting pytest-test-*"])
    assert "retrying create" not in result.stdout.str()
    assert "1 created, 1 deleted" in result.stdout.str()
    assert_no_leftovers()
