"""--orb-keep: never, failed (exactly the machines of failed tests), always.

A kept machine is renamed ``pytest-kept-...``: no run's purge deletes it, whatever
prefix or state directory that run uses.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

import pytest

TESTS = """
import pytest

def test_ok(orb_vm_fresh):
    pass

def test_bad(orb_vm_fresh):
    print("BAD", orb_vm_fresh.name)
    assert False

def test_shared_ok(orb_vm):
    pass
"""


def _kept(name: str) -> str:
    return "pytest-kept-" + name[len("pytest-test-") :]


def _bad_machine(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("BAD "):
            return line.split()[1]
    raise AssertionError("the failing test did not print its machine")


def test_keep_failed_keeps_exactly_the_failed_tests_machine(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_machines: Callable[..., list[str]],
    orbsim_bin: str,
    assert_no_leftovers: Callable[..., None],
    mode: list[str],
) -> None:
    pytester.makepyfile(TESTS)
    result = run_pytest("--orb-keep", "failed", *mode)
    result.assert_outcomes(passed=2, failed=1)
    bad = _bad_machine(result.stdout.str())
    kept = _kept(bad)
    assert orbsim_machines("pytest-test-") == []
    assert orbsim_machines("pytest-kept-") == [kept]
    result.stdout.fnmatch_lines(
        [
            f"orbstack: *kept {bad} for debugging, renamed {kept}",
            "machines: 3 created, 2 deleted, 1 kept, 0 purged*",
            f"kept for debugging: {kept}",
            f"delete them with: {orbsim_bin} delete -f {kept}",
        ]
    )
    # The printed command works.
    subprocess.run([orbsim_bin, "delete", "-f", kept], check=True, timeout=60)
    assert_no_leftovers()
    assert_no_leftovers("pytest-kept-")


def test_keep_failed_keeps_a_shared_machine_used_by_a_failed_test(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_machines: Callable[..., list[str]],
    orbsim_bin: str,
    assert_no_leftovers: Callable[..., None],
    created_machines: Callable[[str], list[tuple[str, str]]],
) -> None:
    pytester.makepyfile(
        "def test_a(orb_vm):\n    pass\n\n"
        "def test_b(orb_vm):\n    assert False\n\n"
        "def test_c(orb_vm):\n    pass\n"
    )
    result = run_pytest("--orb-keep", "failed", "-p", "no:xdist", "-v")
    result.assert_outcomes(passed=2, failed=1)
    (made,) = created_machines(result.stdout.str())
    assert orbsim_machines("pytest-test-") == []
    assert orbsim_machines("pytest-kept-") == [_kept(made[1])]
    subprocess.run([orbsim_bin, "delete", "-f", _kept(made[1])], check=True, timeout=60)
    assert_no_leftovers()
    assert_no_leftovers("pytest-kept-")


def test_keep_always_and_the_next_run_does_not_purge_kept_machines(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_machines: Callable[..., list[str]],
    orbsim_bin: str,
    assert_no_leftovers: Callable[..., None],
    created_machines: Callable[[str], list[tuple[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    pytester.makepyfile(TESTS)
    result = run_pytest("--orb-keep", "always", "-p", "no:xdist", "-v")
    result.assert_outcomes(passed=2, failed=1)
    kept = sorted(_kept(name) for _, name in created_machines(result.stdout.str()))
    assert orbsim_machines("pytest-test-") == []
    assert sorted(orbsim_machines("pytest-kept-")) == kept
    # A later run purges dead runs' machines, but never kept ones: not even with the widest
    # prefix and another HOME and state directory (the first run's lease is not there).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(elsewhere))
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(elsewhere / "state"))
    pytester.makepyfile(test_second="def test_plain(orb_vm):\n    pass\n")
    again = run_pytest("-p", "no:xdist", "--orb-prefix", "pytest-", "test_second.py")
    again.assert_outcomes(passed=1)
    assert sorted(orbsim_machines("pytest-kept-")) == kept
    subprocess.run([orbsim_bin, "delete", "-f", *kept], check=True, timeout=60)
    assert_no_leftovers()
    assert_no_leftovers("pytest-kept-")


def test_keep_never_is_the_default(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(TESTS)
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["machines: 3 created, 3 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()
