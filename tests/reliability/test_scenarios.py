"""Nothing is left behind, and nothing of anyone else's is touched: one scenario per way a run ends.

Each scenario runs a real pytest subprocess on orbsim, then asserts that orbsim
lists no ``pytest-test-`` machine within 10 s (polled) and that no watchdog of
the run still runs.  Each is repeated three times in one run to flush out races.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import PREFIX, REPEAT, PytestRun, Scenario, one_line_error, poll, watchdogs_of

# --- inner test suites ---------------------------------------------------------------------------

USES_EVERY_FIXTURE = """
    def test_session_vm(orb_vm):
        assert orb_vm.run("true").returncode == 0

    def test_fresh_vm(orb_vm_fresh):
        assert orb_vm_fresh.run(["hostname"]).stdout.strip() == orb_vm_fresh.name

    def test_factory(orb_machines):
        a, b = orb_machines.create_many(2)
        assert a.name != b.name
"""

FAILS = """
    def test_fails(orb_vm_fresh):
        assert orb_vm_fresh.run("exit 3", check=False).returncode == 0

    def test_fails_with_session_vm(orb_vm):
        raise AssertionError("boom")
"""

FIXTURE_ERROR = """
    import pytest

    @pytest.fixture
    def broken(orb_vm_fresh):
        raise RuntimeError("the fixture broke after its machine was made")

    @pytest.fixture
    def broken_teardown(orb_vm):
        yield orb_vm
        raise RuntimeError("the fixture broke in teardown")

    def test_setup_error(broken):
        pass

    def test_teardown_error(broken_teardown):
        pass
"""

#: Tests that hold a machine and wait to be interrupted; each leaves a marker "ready-<pid>-<i>".
WAITS = """
    import os, time
    from pathlib import Path
    import pytest

    @pytest.mark.parametrize("i", range({count}))
    def test_waits(i, {fixture}):
        Path(os.environ["SCENARIO_DIR"], f"ready-{{os.getpid()}}-{{i}}").write_text({fixture}.name)
        time.sleep(90)
"""

NO_MACHINE_AND_MACHINE = """
    def test_without_machine():
        assert 1 + 1 == 2

    def test_with_machine(orb_vm):
        orb_vm.run("true")
"""


def waits(count: int = 1, fixture: str = "orb_vm") -> str:
    return WAITS.format(count=count, fixture=fixture)


def held(names: list[str]) -> None:
    """The machines the inner tests reported holding really existed (the scenario is not vacuous)."""
    assert names
    assert all(name.startswith(PREFIX) for name in names), names


# --- the run ends by itself --------------------------------------------------------------------


@pytest.mark.parametrize("attempt", REPEAT)
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["single", "xdist"])
def test_pass(scenario: Scenario, attempt: int, xdist: list[str]) -> None:
    scenario.write_tests(USES_EVERY_FIXTURE)
    code, out = scenario.run(*xdist)
    assert code == 0, out
    assert "3 passed" in out
    assert len(set(scenario.made())) >= 3
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
    assert scenario.reaper_log() == ""  # the run cleaned up after itself


@pytest.mark.parametrize("attempt", REPEAT)
def test_fail(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(FAILS)
    code, out = scenario.run()
    assert code == 1, out
    assert "2 failed" in out
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
    assert scenario.reaper_log() == ""


@pytest.mark.parametrize("attempt", REPEAT)
def test_error_in_a_fixture(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(FIXTURE_ERROR)
    code, out = scenario.run()
    assert code == 1, out
    assert "the fixture broke after its machine was made" in out
    assert "the fixture broke in teardown" in out
    assert len(set(scenario.made())) >= 2  # both fixtures' machines were made before the errors
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


# --- the run is interrupted --------------------------------------------------------------------


@pytest.mark.parametrize("attempt", REPEAT)
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["single", "xdist"])
def test_ctrl_c_tears_down_normally(scenario: Scenario, attempt: int, xdist: list[str]) -> None:
    scenario.write_tests(waits(2 if xdist else 1, "orb_vm_fresh"))
    run = scenario.start(*xdist)
    held(scenario.wait_ready(2 if xdist else 1, run))
    run.signal(signal.SIGINT, group=True)  # what a terminal's Ctrl-C does
    code = run.wait()
    assert code == 2, run.output
    assert "KeyboardInterrupt" in run.output
    scenario.assert_no_leftovers()
    scenario.assert_group_gone(run)
    scenario.assert_watchdogs_gone()
    assert "ended without finishing" not in scenario.reaper_log()  # pytest's own teardown did it


@pytest.mark.parametrize("attempt", REPEAT)
def test_sigterm_tears_down_normally(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(waits(1, "orb_vm"))
    run = scenario.start()
    held(scenario.wait_ready(1, run))
    run.signal(signal.SIGTERM)
    code = run.wait()
    assert code == 2, f"SIGTERM must tear down like Ctrl-C (exit 2), got {code}:\n{run.output}"
    assert "SIGTERM" in run.output
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
    assert "ended without finishing" not in scenario.reaper_log()


@pytest.mark.parametrize("attempt", REPEAT)
def test_a_second_ctrl_c_during_teardown_leaves_the_rest_to_the_watchdog(
    scenario: Scenario, attempt: int
) -> None:
    scenario.write_tests(
        """
        import os, time
        from pathlib import Path
        import pytest

        @pytest.fixture
        def slow_teardown(orb_vm_fresh):
            yield orb_vm_fresh
            Path(os.environ["SCENARIO_DIR"], "tearing-down").write_text("")
            time.sleep(60)

        def test_waits(slow_teardown):
            Path(os.environ["SCENARIO_DIR"], f"ready-{os.getpid()}").write_text(slow_teardown.name)
            time.sleep(90)
        """
    )
    run = scenario.start()
    held(scenario.wait_ready(1, run))
    run.signal(signal.SIGINT, group=True)
    assert poll((scenario.markers / "tearing-down").exists, 30), run.output
    run.signal(signal.SIGINT, group=True)  # impatient user: Ctrl-C again during teardown
    run.wait()
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


# --- the run dies ------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", REPEAT)
def test_sigkill_of_the_single_process(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(waits(1, "orb_vm"))
    run = scenario.start()
    names = scenario.wait_ready(1, run)
    held(names)
    run.signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    scenario.assert_no_leftovers()  # the watchdog's job: within 5 s, checked within 10
    scenario.assert_watchdogs_gone()
    log = scenario.reaper_log()
    assert "ended without finishing" in log
    assert names[0] in log


@pytest.mark.parametrize("attempt", REPEAT)
def test_sigkill_of_the_xdist_controller(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(waits(4, "orb_vm"))
    run = scenario.start("-n", "2")
    held(scenario.wait_ready(2, run))
    _kill_the_controller(scenario, run)


def _kill_the_controller(scenario: Scenario, run: PytestRun) -> None:
    """SIGKILL of the xdist controller: its watchdog deletes the run's machines."""
    run.signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    scenario.assert_no_leftovers()
    # the orphaned workers end by themselves, and nothing they made afterwards survives them
    scenario.assert_group_gone(run)
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone(within=40)
    assert "ended without finishing" in scenario.reaper_log()


#: The first worker gw0 dies before it reports its collection; xdist starts another in its place.
GW0_DIES_IN_COLLECTION = """
import os
from pathlib import Path

import pytest

@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reports the collection
def pytest_collection_finish(session):
    died = Path(os.environ["SCENARIO_DIR"], "gw0-died")
    if getattr(session.config, "workerinput", {}).get("workerid") == "gw0" and not died.exists():
        died.write_text("")
        os._exit(3)
"""


@pytest.mark.parametrize("attempt", REPEAT)
@pytest.mark.parametrize("dies", [False, True], ids=["", "a-worker-died-in-its-collection"])
def test_sigkill_of_the_xdist_controller_when_only_getfixturevalue_asked_for_a_machine(
    scenario: Scenario, attempt: int, dies: bool
) -> None:
    """No test names a machine fixture, so no worker says at collection that it needs machines:
    the controller takes the lease and starts the watchdog while the test that reached one in its
    body still runs (not at its report, 90 s later), also when a worker died before it collected."""
    if dies:
        scenario.pytester.makeconftest(GW0_DIES_IN_COLLECTION)
    scenario.write_tests(
        """
        import os, time
        from pathlib import Path

        def test_plain():
            pass

        def test_reaches_one(request):
            machine = request.getfixturevalue("orb_vm")
            Path(os.environ["SCENARIO_DIR"], f"ready-{os.getpid()}").write_text(machine.name)
            time.sleep(90)
        """
    )
    run = scenario.start("-n", "2")
    held(scenario.wait_ready(1, run))
    assert poll(lambda: bool(watchdogs_of(scenario.state_dir)), 30), run.output
    assert (scenario.markers / "gw0-died").exists() == dies
    _kill_the_controller(scenario, run)


@pytest.mark.parametrize("attempt", REPEAT)
def test_a_killed_xdist_worker(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(
        """
        import os
        from pathlib import Path

        def test_crashes_its_worker(orb_vm):
            orb_vm.run("true")
            marker = Path(os.environ["SCENARIO_DIR"], "crashed")
            if not marker.exists():
                marker.write_text(orb_vm.name)
                os._exit(1)

        def test_a(orb_vm):
            orb_vm.run("true")

        def test_b(orb_vm):
            orb_vm.run("true")

        def test_c(orb_vm):
            orb_vm.run("true")
        """
    )
    code, out = scenario.run("-n", "2")
    assert code == 1, out
    assert "crashed" in out
    assert "3 passed" in out
    crashed_machine = (scenario.markers / "crashed").read_text()
    assert crashed_machine.startswith(PREFIX)
    # the crashed worker's machine is deleted by the controller's final purge
    assert len(set(scenario.made())) >= 2
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
    assert "ended without finishing" not in scenario.reaper_log()


@pytest.mark.parametrize("attempt", REPEAT)
def test_pytest_timeout_thread_method(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(
        """
        import os, time
        from pathlib import Path
        import pytest

        @pytest.mark.timeout(2, method="thread")
        def test_hangs(orb_vm):
            Path(os.environ["SCENARIO_DIR"], f"ready-{os.getpid()}").write_text(orb_vm.name)
            time.sleep(60)
        """
    )
    code, out = scenario.run()
    assert code == 1, out
    assert "Timeout" in out
    names = [m.read_text() for m in scenario.ready_markers()]
    held(names)
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
    assert names[0] in scenario.reaper_log()


# --- orbctl misbehaves -------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", REPEAT)
def test_a_create_that_hangs(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(NO_MACHINE_AND_MACHINE)
    code, out = scenario.run("--orb-create-timeout", "2", env={"ORBSIM_FAULTS": "create=stall:60*1"})
    assert code == 0, out
    creates = scenario.calls("create")
    assert len(creates) == 2, creates  # the hung one was killed and retried
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


@pytest.mark.parametrize("attempt", REPEAT)
def test_a_create_that_hangs_but_succeeds(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(NO_MACHINE_AND_MACHINE)
    code, out = scenario.run("--orb-create-timeout", "2", env={"ORBSIM_FAULTS": "create=hang:60*1"})
    assert code == 0, out
    first = scenario.calls("create")[0][-1]
    assert first.startswith(PREFIX)
    # adopted or deleted, never leaked
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


@pytest.mark.parametrize("attempt", REPEAT)
def test_transient_create_failures_then_success(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(NO_MACHINE_AND_MACHINE)
    # two failed creates that leave nothing, then one that fails although its machine runs
    faults = "create=download-502*1; create=setup-timeout*1; create=setup-timeout-keep*1"
    code, out = scenario.run("--orb-retries", "3", env={"ORBSIM_FAULTS": faults})
    assert code == 0, out
    creates = scenario.calls("create")
    assert len(creates) in (3, 4), creates  # the third machine is adopted, or deleted and made again
    scenario.assert_no_leftovers()  # the machine the failed create left running is never leaked
    scenario.assert_watchdogs_gone()


@pytest.mark.parametrize("attempt", REPEAT)
def test_a_delete_that_fails_once(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(NO_MACHINE_AND_MACHINE)
    code, out = scenario.run(env={"ORBSIM_FAULTS": "delete=conflict*1"})
    assert code == 0, out
    assert len(scenario.calls("delete")) >= 2
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


@pytest.mark.parametrize("attempt", REPEAT)
def test_orbstack_stopped(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(NO_MACHINE_AND_MACHINE)
    code, out = scenario.run("-rA", env={"ORBSIM_FAULTS": "vm=stopped"})
    assert code == 1, out
    assert "1 passed" in out
    assert "1 error" in out
    one_line_error(out, "OrbStack", "not running", "Stopped")  # one line naming the state and the fix
    assert scenario.made() == []
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


@pytest.fixture(scope="module")
def python_without_orbsim(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python with this project installed but no orbctl or orbsim beside it or on PATH."""
    venv = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    ours = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    Path(purelib, "project.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return str(venv / "bin" / "python")


@pytest.mark.parametrize("attempt", REPEAT)
def test_orbctl_missing(scenario: Scenario, attempt: int, python_without_orbsim: str) -> None:
    scenario.write_tests(NO_MACHINE_AND_MACHINE)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    run = scenario.start("-rA", env=env, unset=("ORBCTL",), python=python_without_orbsim)
    code = run.wait()
    out = run.output
    assert code == 1, out
    assert "1 passed" in out
    assert "1 error" in out
    assert "orbctl not found" in out
    assert scenario.argv_log() == []
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


# --- other runs and other machines -------------------------------------------------------------

CONCURRENT = """
    import os, time
    from pathlib import Path
    import pytest

    @pytest.mark.parametrize("i", range(int(os.environ["COUNT"])))
    def test_holds_its_machine(i, orb_vm):
        Path(os.environ["SCENARIO_DIR"], f"ready-{os.getpid()}-{i}").write_text(orb_vm.name)
        time.sleep(float(os.environ.get("HOLD", "0.5")))
        assert orb_vm.run(["hostname"]).stdout.strip() == orb_vm.name  # still there
"""


@pytest.mark.parametrize("attempt", REPEAT)
def test_two_concurrent_runs_never_delete_each_others_machines(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(CONCURRENT)
    first = scenario.start("-n", "2", env={"COUNT": "2", "HOLD": "4"})
    scenario.wait_ready(2, first)  # the second run starts (and purges) while the first holds machines
    second = scenario.start("-n", "2", env={"COUNT": "4", "HOLD": "0.2"})
    assert second.wait() == 0, second.output
    assert first.wait() == 0, first.output
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
    # each delete named machines of one run only
    for argv in scenario.calls("delete"):
        runs = {name[len(PREFIX) :].split("-")[0] for name in argv[1:] if name.startswith(PREFIX)}
        assert len(runs) <= 1, argv


@pytest.mark.parametrize("attempt", REPEAT)
def test_foreign_machines(scenario: Scenario, attempt: int) -> None:
    orphan = PREFIX + "orphan01-main-abcdef"  # has the prefix, belongs to no live run
    mine = "my-dev-box"  # no prefix: never touched
    scenario.orbsim("create", "debian:12", orphan)
    scenario.orbsim("create", "debian:12", mine)
    try:
        scenario.write_tests(NO_MACHINE_AND_MACHINE)
        code, out = scenario.run()
        assert code == 0, out
        assert orphan not in scenario.machines()
        assert mine in scenario.machines()
        assert all(mine not in argv for argv in scenario.calls("delete"))
        scenario.assert_no_leftovers()
        scenario.assert_watchdogs_gone()
    finally:
        scenario.orbsim("delete", "-f", mine, check=False)


@pytest.mark.parametrize("attempt", REPEAT)
def test_no_purge_spares_orphans_but_still_deletes_its_own(scenario: Scenario, attempt: int) -> None:
    orphan = PREFIX + "orphan02-main-abcdef"
    scenario.orbsim("create", "debian:12", orphan)
    scenario.write_tests(NO_MACHINE_AND_MACHINE)
    code, out = scenario.run("--orb-no-purge")
    assert code == 0, out
    assert scenario.machines(PREFIX) == [orphan]
    scenario.orbsim("delete", "-f", orphan)
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
