"""Orphans of dead runs are purged at session start; nothing else is touched."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from pytest_orbstack.naming import DEFAULT_PREFIX, machine_name, new_run_id

DEAD_RUN = "pytest-test-deadrun1-gw0-abc123"
FOREIGN = "someone-elses-box"


def _create(orbsim_bin: str, name: str) -> None:
    proc = subprocess.run(
        [orbsim_bin, "create", "ubuntu:22.04", name],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
        check=False,
    )
    assert proc.returncode == 0, f"orbsim create {name}: {proc.stderr}"


@pytest.fixture
def own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, orbsim_bin: str) -> Callable[..., list[str]]:
    """An orbsim home for this test alone (an earlier test's watchdog may still purge the session's
    orphans); returns ``names(prefix="")``: the machines in it."""
    monkeypatch.setenv("ORBSIM_HOME", str(tmp_path / "orbsim-home"))

    def names(prefix: str = "") -> list[str]:
        out = subprocess.run(
            [orbsim_bin, "list", "-q"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        return sorted(name for name in out.split() if name.startswith(prefix))

    return names


def test_purges_dead_runs_orphans_but_not_foreign_machines(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    own_home: Callable[..., list[str]],
    orbsim_bin: str,
    mode: list[str],
) -> None:
    _create(orbsim_bin, DEAD_RUN)
    _create(orbsim_bin, FOREIGN)
    try:
        pytester.makepyfile("def test_vm(orb_vm):\n    pass\n")
        result = run_pytest(*mode)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(
            [
                f"orbstack: *purged 1 machine(s) of dead runs: {DEAD_RUN}",  # by an xdist worker: [gwN]
                "machines: 1 created, 1 deleted, 0 kept, 1 purged*",
            ]
        )
        assert DEAD_RUN not in own_home()
        assert FOREIGN in own_home()
    finally:
        subprocess.run([orbsim_bin, "delete", "-f", FOREIGN], check=False, timeout=60)
    assert own_home("pytest-test-") == []


def test_no_purge_leaves_orphans(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    own_home: Callable[..., list[str]],
    orbsim_bin: str,
) -> None:
    _create(orbsim_bin, DEAD_RUN)
    try:
        pytester.makepyfile("def test_vm(orb_vm):\n    pass\n")
        result = run_pytest("--orb-no-purge", "-p", "no:xdist")
        result.assert_outcomes(passed=1)
        assert own_home("pytest-test-") == [DEAD_RUN]
    finally:
        subprocess.run([orbsim_bin, "delete", "-f", DEAD_RUN], check=False, timeout=60)
    assert own_home("pytest-test-") == []


def test_controller_purges_machines_of_a_crashed_worker(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(
        """
        import os

        def test_crash(orb_vm):
            os._exit(3)

        def test_fine():
            pass
        """
    )
    # --orb-clone never: with cloning the crashed worker's base machine is purged too
    result = run_pytest("-n", "2", "--orb-clone", "never")
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed*", "*1 purged*"])
    assert_no_leftovers()


# --- ownership that does not depend on the state directory -------------------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process standing for a live run (its pid and start time name the run's machines)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_a_run_with_another_home_and_state_dir_spares_live_runs_and_purges_dead_ones(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_machines: Callable[..., list[str]],
    orbsim_bin: str,
    assert_no_leftovers: Callable[..., None],
    sleeper: subprocess.Popen[bytes],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # an orbsim home of its own: no earlier test's lingering process can purge its machines first
    monkeypatch.setenv("ORBSIM_HOME", str(tmp_path / "orbsim-home"))

    def names() -> list[str]:
        out = subprocess.run(
            [orbsim_bin, "list", "-q"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        return sorted(name for name in out.split() if name.startswith(DEFAULT_PREFIX))

    live = machine_name(DEFAULT_PREFIX, new_run_id(pid=sleeper.pid), "gw0")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_run_id = new_run_id(pid=ended.pid)
    ended.wait(timeout=10)
    dead = machine_name(DEFAULT_PREFIX, dead_run_id, "main")
    _create(orbsim_bin, live)
    _create(orbsim_bin, dead)
    try:
        # this run shares nothing with the live one but OrbStack and the process table
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        monkeypatch.setenv("HOME", str(elsewhere))
        monkeypatch.setenv("XDG_STATE_HOME", str(elsewhere / "xdg"))
        monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(elsewhere / "state"))
        pytester.makepyfile("def test_vm(orb_vm):\n    pass\n")
        result = run_pytest("-p", "no:xdist")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"orbstack: purged 1 machine(s) of dead runs: {dead}"])
        assert names() == [live]
        # once the live run's process has ended, the next run purges its machine
        sleeper.kill()
        sleeper.wait(timeout=10)
        result = run_pytest("-p", "no:xdist")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"orbstack: purged 1 machine(s) of dead runs: {live}"])
    finally:
        for name in (live, dead):  # one by one: a missing name fails a multi-name delete
            subprocess.run([orbsim_bin, "delete", "-f", name], check=False, timeout=60, capture_output=True)
    assert names() == []


def _calls(orbsim_env: dict[str, str]) -> list[str]:
    log = Path(orbsim_env["ORBSIM_HOME"]) / "argv.log"
    return log.read_text().splitlines() if log.exists() else []


MIXED = """
def test_vm(orb_vm):
    pass

def test_unit():
    pass
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--collect-only", "-p", "no:xdist"],
        ["--co", "-n", "2"],
        ["-k", "unit", "-p", "no:xdist"],
        ["-k", "unit", "-n", "2"],
        ["-m", "not orb", "-n", "2"],
    ],
    ids=["co", "co-n2", "k-unit", "k-unit-n2", "not-orb-n2"],
)
def test_a_run_that_needs_no_machine_calls_no_orbctl_and_purges_nothing(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_machines: Callable[..., list[str]],
    orbsim_bin: str,
    orbsim_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: list[str],
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(state))
    # an orbsim home of its own: a watchdog of an earlier test may still purge the session's
    home = {**orbsim_env, "ORBSIM_HOME": str(tmp_path / "home")}
    monkeypatch.setenv("ORBSIM_HOME", home["ORBSIM_HOME"])
    pytester.makepyfile(MIXED)
    result = run_pytest(*args)
    assert result.ret == 0, result.stdout.str()
    assert _calls(home) == []  # not even orbctl version or status
    assert not (state / "reaper.log").exists()  # no watchdog was started (it logs there from its start)
    assert not (state / "runs").exists() or not list((state / "runs").glob("*.json"))  # no lease
    assert "purged" not in result.stdout.str()


def test_garbage_from_orbctl_list_at_start_up_is_a_one_line_warning(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_bin: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    assert_no_leftovers: Callable[..., None],
) -> None:
    # an orbctl whose first 'list' prints garbage, as a broken OrbStack could
    wrapper = tmp_path / "orbctl"
    flag = tmp_path / "garbage-sent"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = list ] && [ ! -e {flag} ]; then : > {flag}; echo "{{garbage"; exit 0; fi\n'
        f'exec {orbsim_bin} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("ORBCTL", str(wrapper))
    pytester.makepyfile("def test_vm(orb_vm):\n    pass\n")
    result = run_pytest("-p", "no:xdist")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=1)
    assert flag.exists()
    (line,) = [x for x in result.stdout.lines if "purge failed" in x]
    assert line.startswith("orbstack: purge failed: ")
    assert "INTERNALERROR" not in result.stdout.str()
    assert_no_leftovers()


def test_one_undeletable_orphan_does_not_keep_the_others(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_machines: Callable[..., list[str]],
    orbsim_bin: str,
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[..., None],
) -> None:
    stuck, other = "pytest-test-deadrun2-gw0-stuck1", "pytest-test-deadrun2-gw0-other1"
    _create(orbsim_bin, stuck)
    _create(orbsim_bin, other)
    try:
        monkeypatch.setenv("ORBSIM_FAULTS", f"delete@{stuck}=error:delete {{name}}: device or resource busy")
        pytester.makepyfile("def test_vm(orb_vm):\n    pass\n")
        result = run_pytest("-p", "no:xdist")
        result.assert_outcomes(passed=1)
        assert orbsim_machines(DEFAULT_PREFIX) == [stuck]
        out = result.stdout.str()
        assert f"orbstack: purged 1 machine(s) of dead runs: {other}" in out
        result.stdout.fnmatch_lines([f"*{stuck}*device or resource busy*", f"delete by hand: *{stuck}*"])
    finally:
        monkeypatch.delenv("ORBSIM_FAULTS")
        for name in (stuck, other):  # one by one: a missing name fails a multi-name delete
            subprocess.run([orbsim_bin, "delete", "-f", name], check=False, timeout=60, capture_output=True)
    assert_no_leftovers()


def test_the_delete_by_hand_line_names_the_runs_base_too(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_machines: Callable[..., list[str]],
    orbsim_bin: str,
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[..., None],
) -> None:
    # OrbStack cannot delete anything, and its list fails: neither teardown nor purge can clean up
    monkeypatch.setenv(
        "ORBSIM_FAULTS", "delete=error:delete: device or resource busy; list=error:list broken"
    )
    pytester.makepyfile("def test_vm(orb_vm):\n    pass\n")
    result = run_pytest("-p", "no:xdist", "--orb-clone", "always")
    monkeypatch.delenv("ORBSIM_FAULTS")
    left = orbsim_machines(DEFAULT_PREFIX)
    try:
        result.assert_outcomes(passed=1)
        assert len(left) == 2, left  # the test's clone and the run's base
        (line,) = [x for x in result.stdout.lines if x.startswith("delete by hand: ")]
        assert line == f"delete by hand: {orbsim_bin} delete -f {' '.join(sorted(left))}"
    finally:
        for name in left:
            subprocess.run([orbsim_bin, "delete", "-f", name], check=False, timeout=60, capture_output=True)
    assert_no_leftovers()


def test_a_state_dir_others_can_write_stops_the_run_before_any_machine(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_machines: Callable[..., list[str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared-state"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(shared))
    pytester.makepyfile(MIXED)
    for args in (["-p", "no:xdist"], ["-n", "2"]):
        result = run_pytest(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        output = result.stdout.str() + result.stderr.str()
        (line,) = [x for x in output.splitlines() if "is writable by group or others" in x]
        assert f"chmod go-w {shared}" in line
        assert orbsim_machines("pytest-test-") == []
        assert list(shared.iterdir()) == []  # nothing was written there, no watchdog started from it
    # a run that needs no machine does not care
    assert run_pytest("-p", "no:xdist", "-k", "unit").ret == 0


@pytest.mark.parametrize("clone", ["never", "auto"])
def test_a_run_that_ends_normally_leaves_no_worker_pin_file(
    clone: str,
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    own_home: Callable[..., list[str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    assert_no_leftovers: Callable[[], None],
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(state))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(2))
        def test_machine(i, orb_vm):
            assert orb_vm.run(["true"]).returncode == 0
        """
    )
    result = run_pytest("-n", "2", "--orb-clone", clone)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*2 passed*"])
    assert sorted(p.name for p in (state / "runs").iterdir()) == []  # no lease, no pins
    assert own_home(DEFAULT_PREFIX) == []
    assert_no_leftovers()
