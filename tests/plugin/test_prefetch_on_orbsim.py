"""Prefetch on orbsim: the next test's fresh machine is made while a test runs; unused ones are deleted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

SUITE = """
import pytest

def test_shared(orb_vm):
    orb_vm.run("true")

@pytest.mark.parametrize("i", range(3))
def test_fresh(orb_vm_fresh, i):
    assert orb_vm_fresh.run(["hostname"]).stdout.strip() == orb_vm_fresh.name
    assert orb_vm_fresh.run("test -e /tmp/dirty", check=False).returncode == 1
    orb_vm_fresh.run("touch /tmp/dirty")
    print("FRESH", orb_vm_fresh.name)
"""


def _calls(home: str) -> list[list[str]]:
    path = Path(home) / "argv.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)[1:] for line in lines if line.strip()]


def _names(lines: list[str], text: str) -> list[str]:
    return [line.rsplit(" ", 1)[1] for line in lines if text in line]


@pytest.mark.parametrize("clone", ["auto", "never"])
def test_each_fresh_machine_was_made_during_the_test_before(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    orbsim_env: dict[str, str],
    clone: str,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    before = len(_calls(orbsim_env["ORBSIM_HOME"]))
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly", "--orb-clone", clone, "-v", "-s")
    result.assert_outcomes(passed=4)
    lines = result.stdout.lines
    fresh = [line.split("FRESH ", 1)[1] for line in lines if line.startswith("FRESH ")]
    assert len(set(fresh)) == 3
    assert _names(lines, "took prefetched machine ") == fresh
    calls = _calls(orbsim_env["ORBSIM_HOME"])[before:]
    made = [argv[-1] for argv in calls if argv[:1] == ["clone" if clone == "auto" else "create"]]
    assert len(made) == 4  # orb_vm + 3 fresh: nothing made for nothing
    assert made[1:] == fresh
    assert "unused prefetched" not in result.stdout.str()
    result.stdout.fnmatch_lines(["machines: 4 created, 4 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()


def test_off_with_orb_no_prefetch(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run_pytest("-p", "no:xdist", "--orb-no-prefetch", "-v")
    result.assert_outcomes(passed=4)
    assert "took prefetched machine" not in result.stdout.str()
    result.stdout.fnmatch_lines(["machines: 4 created, 4 deleted*"])
    assert_no_leftovers()


def test_a_machine_nobody_takes_is_deleted_at_the_end(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(
        test_suite="""
        import pytest

        def test_first(orb_vm_fresh):
            orb_vm_fresh.run("true")

        @pytest.mark.skipif(True, reason="skipped in its setup, after its machine was prefetched")
        def test_skipped(orb_vm_fresh):
            pass

        def test_takes_the_skipped_tests_machine(orb_vm_fresh):
            orb_vm_fresh.run("true")

        @pytest.mark.skipif(True, reason="the last one: its machine is never taken")
        def test_last_skipped(orb_vm_fresh):
            pass
        """
    )
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly", "-v")
    result.assert_outcomes(passed=2, skipped=2)
    lines = result.stdout.lines
    assert len(_names(lines, "took prefetched machine ")) == 1
    assert len(_names(lines, "deleted unused prefetched machine ")) == 1
    result.stdout.fnmatch_lines(["machines: 3 created, 3 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()


def test_with_xdist(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run_pytest("-n", "2", "-v")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    created = int(out.split("machines: ", 1)[1].split(" created", 1)[0])
    assert 4 <= created <= 5  # at most one made for a test another worker ran
    result.stdout.fnmatch_lines([f"machines: {created} created, {created} deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()


def test_the_first_machine_of_a_process_is_not_prefetched(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    """Before any machine fixture ran, the run's lock directory is not known: nothing is made ahead."""
    pytester.makepyfile(
        test_suite="""
        def test_plain():
            pass

        def test_fresh(orb_vm_fresh):
            orb_vm_fresh.run("true")
        """
    )
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly", "-v")
    result.assert_outcomes(passed=2)
    assert "took prefetched machine" not in result.stdout.str()
    assert list(pytester.path.glob("orbstack-base-*")) == []  # no lock file in the project
    result.stdout.fnmatch_lines(["machines: 1 created, 1 deleted*"])
    assert_no_leftovers()
