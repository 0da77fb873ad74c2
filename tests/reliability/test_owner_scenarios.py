"""Runs that share nothing but OrbStack and the host's process table still agree on who owns what.

Each scenario runs real pytest subprocesses on one orbsim home; some of them with
another ``HOME``, ``XDG_STATE_HOME`` and ``PYTEST_ORBSTACK_STATE_DIR``, so that
they see none of each other's leases.  Each ends by asserting nothing leaked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from reliability_helpers import PREFIX, REPEAT, Scenario, poll, watchdogs_of

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


def _elsewhere(scenario: Scenario, name: str) -> dict[str, str]:
    """An environment whose HOME and state directories are nobody else's."""
    home = scenario.markers.parent / name
    home.mkdir(mode=0o700)
    return {
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "xdg-state"),
        "PYTEST_ORBSTACK_STATE_DIR": str(home / "state"),
    }


def _run_id(name: str) -> str:
    return name[len(PREFIX) :].split("-", maxsplit=1)[0]


@pytest.mark.parametrize("attempt", REPEAT)
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["single", "xdist"])
def test_two_concurrent_runs_with_different_homes_and_state_dirs(
    scenario: Scenario, attempt: int, xdist: list[str]
) -> None:
    scenario.write_tests(CONCURRENT)
    first = scenario.start(*xdist, env={"COUNT": "2", "HOLD": "6"})
    held = scenario.wait_ready(2 if xdist else 1, first)
    first_run = _run_id(held[0])
    # the second run starts (and purges) while the first holds its machines, and sees no lease of it
    second = scenario.start(*xdist, env={"COUNT": "3", "HOLD": "0.2", **_elsewhere(scenario, "other")})
    assert second.wait() == 0, second.output
    assert first.wait() == 0, first.output
    assert "of dead runs" not in second.output  # the first run's machines were not orphans
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
    # every delete named the machines of one run only, and the first run's machines were
    # deleted by the first run alone (its teardown and its final purge)
    deletes = scenario.calls("delete")
    assert deletes
    for argv in deletes:
        runs = {_run_id(name) for name in argv[1:] if name.startswith(PREFIX)}
        assert len(runs) <= 1, argv
    firsts = [argv for argv in deletes if first_run in {_run_id(n) for n in argv[1:] if n.startswith(PREFIX)}]
    assert firsts, (first_run, held, deletes, scenario.argv_log())
    assert held[0] in {name for argv in firsts for name in argv}


@pytest.mark.parametrize("attempt", REPEAT)
def test_a_dead_runs_machines_are_purged_by_a_run_with_another_state_dir(
    scenario: Scenario, attempt: int
) -> None:
    scenario.write_tests(CONCURRENT)
    dead = scenario.start(env={"COUNT": "1", "HOLD": "90"})
    (name,) = scenario.wait_ready(1, dead)
    # the whole run dies at once, its watchdog too (a CI runner killing the job's cgroup)
    (watchdog,) = watchdogs_of(scenario.state_dir)
    os.kill(watchdog, signal.SIGKILL)  # started by our run
    dead.signal(signal.SIGKILL)
    assert dead.wait() == -signal.SIGKILL
    assert poll(lambda: not watchdogs_of(scenario.state_dir), 10.0)
    assert name in scenario.machines(PREFIX)  # nobody cleaned up: an orphan now
    code, out = scenario.run(env={"COUNT": "1", **_elsewhere(scenario, "later")})
    assert code == 0, out
    purged = [line for line in out.splitlines() if "machine(s) of dead runs: " in line]
    assert len(purged) == 1, out
    assert name in purged[0]  # with its base machine, when it was a clone
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


SLOW_CREATE = """
    def test_fresh(orb_vm_fresh):
        pass
"""


@pytest.mark.parametrize("attempt", REPEAT)
def test_sigkill_during_a_create(scenario: Scenario, attempt: int) -> None:
    """The watchdog deletes a machine whose create was still under way when pytest was killed."""
    scenario.write_tests(SLOW_CREATE)
    # the machine exists and runs, but its create does not return for 60 s
    run = scenario.start("--orb-clone", "never", env={"ORBSIM_FAULTS": "create=hang:60"})
    assert poll(lambda: bool(scenario.machines(PREFIX)), 60.0, 0.02), run.output
    (name,) = scenario.machines(PREFIX)
    run.signal(signal.SIGKILL)
    killed = time.monotonic()
    assert run.wait() == -signal.SIGKILL
    scenario.assert_no_leftovers(within=10.0)
    print(f"{name} deleted {time.monotonic() - killed:.1f}s after SIGKILL (documented: within 5 s)")
    scenario.assert_watchdogs_gone()
    assert name in scenario.reaper_log()
    _kill_processes_naming(name)  # the hanging create, started by our run, outlives it by design


def _kill_processes_naming(name: str) -> None:
    for pid in _processes_naming(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("attempt", REPEAT)
@pytest.mark.parametrize("clone", ["never", "auto"])
def test_sigkill_as_a_create_starts(scenario: Scenario, attempt: int, clone: str) -> None:
    """Killed as its first create starts: whatever that create makes is deleted, none appears later."""
    scenario.write_tests(SLOW_CREATE)
    run = scenario.start("--orb-clone", clone)
    assert poll(lambda: bool(scenario.calls("create")), 60.0, 0.005), run.output
    run.signal(signal.SIGKILL)
    killed = time.monotonic()
    assert run.wait() == -signal.SIGKILL
    seen: set[str] = set()

    def gone() -> bool:
        names = scenario.machines(PREFIX)
        seen.update(names)
        return not names and not _processes_naming(scenario.made()[0])

    assert poll(gone, 20.0, 0.05), scenario.reaper_log()
    print(f"made {sorted(seen) or 'nothing listed'}; all gone {time.monotonic() - killed:.1f}s after SIGKILL")
    scenario.assert_no_leftovers()  # and none appeared later
    scenario.assert_watchdogs_gone()


def _processes_naming(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if name.encode() in Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry))
    return found
