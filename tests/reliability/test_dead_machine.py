"""A shared machine that dies under a test: the later tests of its process still pass.

The reproduction of the report: ``sudo kill -TERM 1`` and ``orb_vm.delete()`` in
one test made every later test on that worker fail with ``machine not found``.
"""

from __future__ import annotations

import pytest
from reliability_helpers import Scenario

KILLS_AND_DELETES = """
    def test_a_kills_init(orb_vm):
        orb_vm.run("sudo kill -TERM 1", check=False)

    def test_b_runs(orb_vm):
        assert orb_vm.run("true").ok

    def test_c_deletes(orb_vm):
        orb_vm.delete()

    def test_d_runs(orb_vm):
        assert orb_vm.run(["hostname"]).stdout.strip() == orb_vm.name

    def test_e_runs(orb_vm):
        assert orb_vm.run("true").ok
"""

READY_HOOK = """
    from pathlib import Path

    def pytest_orbstack_machine_ready(machine, config):
        with Path(__file__).with_name("ready.log").open("a") as fh:
            fh.write(machine.name + "\\n")
"""


@pytest.mark.parametrize("xdist", [["-p", "no:xdist"], ["-n", "2", "--dist", "loadfile"]], ids=["main", "n2"])
def test_later_tests_pass_after_the_shared_machine_died(scenario: Scenario, xdist: list[str]) -> None:
    scenario.write_tests(READY_HOOK, name="conftest")
    path = scenario.write_tests(KILLS_AND_DELETES)
    code, out = scenario.run(*xdist, "-p", "no:randomly")
    assert code == 0, out
    assert "5 passed" in out
    assert "machine not found" not in out
    assert "restarted during test_scenario.py::test_a_kills_init" in out
    assert "is gone during test_scenario.py::test_c_deletes (the test deleted it)" in out
    ready = path.with_name("ready.log").read_text().split()
    assert len(ready) == 3  # made, restarted, replaced
    assert ready[0] == ready[1] != ready[2]
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


SILENT_RESTART = """
    import time

    def test_a_kills_init_later(orb_vm):
        # exits 0 at once; the machine goes down half a second later: no sign of trouble
        orb_vm.run(["sudo", "sh", "-c", "(sleep 0.5; kill -TERM 1) >/dev/null 2>&1 &"])
        time.sleep(3)

    def test_b_sees_what_the_hook_started(orb_vm):
        assert orb_vm.run(["cat", "/run/ready-mark"], check=False).ok
"""

MARKING_READY_HOOK = """
    from pathlib import Path

    def pytest_orbstack_machine_ready(machine, config):
        machine.run(["sudo", "touch", "/run/ready-mark"])
        with Path(__file__).with_name("ready.log").open("a") as fh:
            fh.write(machine.name + "\\n")
"""


def test_a_restart_that_left_no_sign_runs_the_ready_hook_again(scenario: Scenario) -> None:
    scenario.write_tests(MARKING_READY_HOOK, name="conftest")
    path = scenario.write_tests(SILENT_RESTART)
    code, out = scenario.run("-p", "no:xdist", "-p", "no:randomly")
    assert code == 0, out
    assert "2 passed" in out
    assert "restarted during test_scenario.py::test_a_kills_init_later" in out
    ready = path.with_name("ready.log").read_text().split()
    assert len(ready) == 2
    assert ready[0] == ready[1]
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
