"""Orphans of dead runs are purged at session start; nothing else is touched."""

from __future__ import annotations

import os
import subprocess
from typing import Callable

import pytest

DEAD_RUN = "pytest-test-deadrun1-gw0-abc123"
FOREIGN = "someone-elses-box"


def _create(orbsim_bin: str, name: str) -> None:
    subprocess.run([orbsim_bin, "create", "ubuntu:22.04", name], check=True, timeout=300, env=os.environ)


def test_purges_dead_runs_orphans_but_not_foreign_machines(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_machines: Callable[..., list[str]],
    orbsim_bin: str,
    assert_no_leftovers: Callable[..., None],
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
                f"orbstack: purged 1 machine(s) of dead runs: {DEAD_RUN}",
                "machines: 1 created, 1 deleted, 0 kept, 1 purged*",
            ]
        )
        assert DEAD_RUN not in orbsim_machines()
        assert FOREIGN in orbsim_machines()
    finally:
        subprocess.run([orbsim_bin, "delete", "-f", FOREIGN], check=False, timeout=60)
    assert_no_leftovers()


def test_no_purge_leaves_orphans(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_machines: Callable[..., list[str]],
    orbsim_bin: str,
    assert_no_leftovers: Callable[..., None],
) -> None:
    _create(orbsim_bin, DEAD_RUN)
    try:
        pytester.makepyfile("def test_vm(orb_vm):\n    pass\n")
        result = run_pytest("--orb-no-purge", "-p", "no:xdist")
        result.assert_outcomes(passed=1)
        assert orbsim_machines("pytest-test-") == [DEAD_RUN]
    finally:
        subprocess.run([orbsim_bin, "delete", "-f", DEAD_RUN], check=False, timeout=60)
    assert_no_leftovers()


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
