"""--orb-spares on orbsim: the next fresh machine is made while tests run, unused spares are deleted."""

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


@pytest.mark.parametrize("clone", ["auto", "never"])
def test_fresh_machines_come_from_spares_and_unused_ones_are_deleted(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    orbsim_env: dict[str, str],
    clone: str,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    before = len(_calls(orbsim_env["ORBSIM_HOME"]))
    result = run_pytest(
        "-p", "no:xdist", "-p", "no:randomly", "--orb-spares", "1", "--orb-clone", clone, "-v", "-s"
    )
    result.assert_outcomes(passed=4)
    lines = result.stdout.lines
    fresh = [line.split("FRESH ", 1)[1] for line in lines if line.startswith("FRESH ")]
    took = [line.rsplit(" ", 1)[1] for line in lines if "took spare machine " in line]
    unused = [line.rsplit(" ", 1)[1] for line in lines if "deleted unused spare machine " in line]
    assert len(set(fresh)) == 3
    assert took == fresh[1:]  # the first fresh machine started the spares; the next two were spares
    calls = _calls(orbsim_env["ORBSIM_HOME"])[before:]
    made = [argv[-1] for argv in calls if argv[:1] == ["clone" if clone == "auto" else "create"]]
    assert len(made) == 5  # orb_vm + 3 fresh + 1 spare nobody took
    made = made[1:]  # the first is orb_vm's
    assert set(fresh) | set(unused) == set(made)
    deleted = {name for argv in calls if argv[:1] == ["delete"] for name in argv[1:]}
    assert set(made) <= deleted
    result.stdout.fnmatch_lines(["machines: 5 created, 5 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()
