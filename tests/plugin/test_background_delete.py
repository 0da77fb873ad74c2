"""A test does not wait for the delete of its machine; the session's end waits for every delete."""

from __future__ import annotations

import re
from typing import Callable

import pytest

TESTS = """
import json, os, subprocess

def test_a_fresh_machine(orb_vm_fresh):
    print("MACHINE", orb_vm_fresh.name)

def test_next(request):
    # runs while the machine of the test before is still being deleted (its delete stalls)
    out = subprocess.run([os.environ["ORBCTL"], "list", "-q"], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    print("LISTED", " ".join(out))
"""


def test_delete_runs_while_the_next_test_runs_and_finishes_by_session_end(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makepyfile(TESTS)
    monkeypatch.setenv("ORBSIM_FAULTS", "delete=stall:6*1")
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly", "-s", "--orb-clone", "never")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    machine = re.search(r"MACHINE (\S+)", out).group(1)  # type: ignore[union-attr]
    listed = re.search(r"LISTED (.*)", out).group(1).split()  # type: ignore[union-attr]
    assert machine in listed  # its delete was still under way: the test did not wait for it
    result.stdout.fnmatch_lines(["*machines: 1 created, 1 deleted*"])
    assert_no_leftovers(within=0)  # the session's end waited for the delete
