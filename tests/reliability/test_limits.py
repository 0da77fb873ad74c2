"""Hard limits, on orbsim: a noisy command cannot eat the memory of pytest nor outlive its
timeout, and every lifecycle step survives one injected transient fault.

Each scenario ends by asserting that nothing was left behind.
"""

from __future__ import annotations

import json

import pytest
from reliability_helpers import REPEAT, Scenario

NOISY = """
    import os, time
    from pathlib import Path
    import pytest
    from pytest_orbstack import OrbctlTimeoutError

    def peak_rss_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def test_yes_is_killed_at_its_deadline(orb_vm):
        started = time.monotonic()
        with pytest.raises(OrbctlTimeoutError) as excinfo:
            orb_vm.run("yes", timeout=3)
        elapsed = time.monotonic() - started
        assert isinstance(excinfo.value, TimeoutError)
        assert set(excinfo.value.stdout) <= {"y", "\\n"}
        Path(os.environ["SCENARIO_DIR"], "figures.json").write_text(
            f'{{"elapsed": {elapsed}, "peak_rss_mb": {peak_rss_mb()}, "kept": {len(excinfo.value.stdout)}}}'
        )

    def test_a_bounded_tail_of_a_big_output(orb_vm):
        result = orb_vm.run("seq 1 300000", output_limit=4096)
        assert result.stdout.endswith("299999\\n300000\\n")
        assert len(result.stdout) == 4096
        assert result.stdout_dropped == len("".join(f"{n}\\n" for n in range(1, 300001))) - 4096
"""


@pytest.mark.parametrize("attempt", REPEAT)
def test_a_flooding_command_raises_at_its_deadline_with_bounded_memory(
    scenario: Scenario, attempt: int
) -> None:
    scenario.write_tests(NOISY)
    code, out = scenario.run("-rA", "--orb-output-limit", "1M")
    assert code == 0, out
    assert "2 passed" in out
    figures = json.loads((scenario.markers / "figures.json").read_text())
    print(f"run('yes', timeout=3): raised after {figures['elapsed']:.2f}s, pytest peak RSS "
          f"{figures['peak_rss_mb']:.0f} MB, kept {figures['kept']} bytes")  # fmt: skip
    assert figures["elapsed"] < 5.0, "the timeout is not a deadline for the whole call"
    assert figures["peak_rss_mb"] < 300, "the output of a killed command was kept whole"
    assert figures["kept"] <= 1024 * 1024
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


LIFECYCLE = """
    def test_life(orb_vm_fresh):
        assert orb_vm_fresh.run("echo ok").stdout == "ok\\n"
        orb_vm_fresh.stop()
        orb_vm_fresh.start()
        assert orb_vm_fresh.run("echo again").stdout == "again\\n"
"""

FAULTS = [
    "create=service-timeout*1",
    "clone=conflict*1",
    "start=conflict*1",
    "stop=conflict*1",
    "delete=conflict*1",
    "info=service-timeout*1",
    "run=service-timeout*1",
]


@pytest.mark.parametrize("fault", FAULTS)
def test_every_lifecycle_step_survives_one_transient_fault(scenario: Scenario, fault: str) -> None:
    scenario.write_tests(LIFECYCLE)
    code, out = scenario.run("-rA", "-v", "--orb-clone", "always", env={"ORBSIM_FAULTS": fault})
    assert code == 0, out
    assert "1 passed" in out
    used = json.loads((scenario.home / "state.json").read_text())["faults"]
    assert used == {fault: 1}, used  # the fault did fire, once
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


HANGS = """
    import pytest

    @pytest.mark.parametrize("i", range(3))
    def test_fresh(i, orb_vm_fresh):
        orb_vm_fresh.run("true")
"""


@pytest.mark.parametrize("attempt", REPEAT)
def test_a_hung_create_is_not_repeated_for_every_later_test(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(HANGS)
    code, out = scenario.run(
        "-rA", "--orb-clone", "never", "--orb-no-prefetch", "--orb-create-timeout", "2",
        env={"ORBSIM_FAULTS": "create=stall:60"},
    )  # fmt: skip
    assert code == 1, out
    assert "3 error" in out
    assert "orbctl create did not finish within 2s and was killed; raise --orb-create-timeout" in out
    assert out.count("not trying orbctl create again in this run: an earlier one hung") >= 2
    assert len(scenario.calls("create")) == 2  # the first machine's retry, then none per later test
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


GONE = """
    import pytest
    from pytest_orbstack import CommandFailedError, MachineNotFoundError

    def test_a_machine_deleted_behind_the_plugin(orb_vm_fresh, orb_client):
        assert orb_vm_fresh.run("exit 1", check=False).returncode == 1  # the command's own exit 1
        with pytest.raises(CommandFailedError):
            orb_vm_fresh.run("exit 1")
        orb_client.delete(orb_vm_fresh.name)
        with pytest.raises(MachineNotFoundError) as excinfo:
            orb_vm_fresh.run("true", check=False)  # orbctl's failure is never a command result
        assert "machine not found" in str(excinfo.value)
"""


def test_run_on_a_machine_that_is_gone_raises_the_typed_error(scenario: Scenario) -> None:
    scenario.write_tests(GONE)
    code, out = scenario.run("-rA", "--orb-clone", "never")
    assert code == 0, out
    assert "1 passed" in out
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


@pytest.mark.parametrize("attempt", REPEAT)
def test_a_machine_fails_at_its_overall_deadline(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(HANGS)
    code, out = scenario.run(
        "-rA", "--orb-clone", "never", "--orb-no-prefetch", "--orb-machine-timeout", "3",
        env={"ORBSIM_FAULTS": "create=stall:60"},
    )  # fmt: skip
    assert code == 1, out
    assert "3 error" in out
    assert (
        "not made within its overall deadline of 3s (raise --orb-machine-timeout if it needs longer)" in out
    )
    assert len(scenario.calls("create")) == 1  # later tests fail at once
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


CLONED = """
    def test_fresh(orb_vm_fresh):
        orb_vm_fresh.run("true")
"""


@pytest.mark.parametrize(
    "fault", ["clone=stall:120", "clone=service-timeout"], ids=["hangs", "keeps-failing"]
)
def test_a_clone_fails_at_its_overall_deadline(scenario: Scenario, fault: str) -> None:
    scenario.write_tests(CLONED)
    code, out = scenario.run(
        "-rA", "--orb-clone", "always", "--orb-no-prefetch", "--orb-retries", "10",
        "--orb-machine-timeout", "20", env={"ORBSIM_FAULTS": fault},
    )  # fmt: skip
    assert code == 1, out
    assert "1 error" in out
    assert "MachineDeadlineError" in out
    assert "overall deadline of 20s (raise --orb-machine-timeout if it needs longer)" in out
    assert "BaseBuildError" not in out  # the base was built: the clone is what ran out of time
    clones = scenario.calls("clone")
    assert 1 <= len(clones) < 11, clones  # a hang is killed at the deadline; no retry starts after it
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
