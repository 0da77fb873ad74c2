"""The example suites in examples/: they pass on orbsim with xdist and leave nothing behind."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FAILING = """
def test_fails_on_purpose(orb_vm_fresh):
    print("FAILING-MACHINE", orb_vm_fresh.name)
    orb_vm_fresh.run("echo about to fail")
    assert orb_vm_fresh.run("cat /etc/hostname").stdout == "not-this-name\\n"
"""


def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def _expected_outcomes() -> dict[str, int]:
    """17 core tests, 8 with testinfra, one each with pyinfra and Ansible; a module missing its tool skips."""
    passed, skipped = 17, 0
    for count, modules in (
        (8, ("testinfra",)),
        (1, ("testinfra", "pyinfra_orbstack")),
        (1, ("testinfra", "ansible")),
    ):
        if _have(*modules):
            passed += count
        else:
            skipped += 1
    return {"passed": passed, "skipped": skipped}


def _copy_examples(pytester: pytest.Pytester) -> Path:
    target = pytester.path / "examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_examples_pass_with_xdist(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    _copy_examples(pytester)
    result = run_pytest("examples", "-n", "3")
    result.assert_outcomes(**_expected_outcomes())
    assert_no_leftovers()


def test_failing_example_shows_report_section_and_keep_failed_keeps_only_its_machine(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    orbsim_machines: Callable[..., list[str]],
    orbsim_bin: str,
    assert_no_leftovers: Callable[..., None],
) -> None:
    examples = _copy_examples(pytester)
    (examples / "basic" / "test_failing.py").write_text(FAILING)
    result = run_pytest("examples/basic", "-n", "2", "--orb-keep", "failed")
    result.assert_outcomes(passed=5, failed=1)
    name = next(line.split()[1] for line in result.stdout.lines if line.startswith("FAILING-MACHINE "))
    result.stdout.fnmatch_lines(
        [
            f"*- orbstack machine {name} -*",
            f"name:  {name}",
            "last commands (2):",
            "  $ sh -c 'echo about to fail'  -> exit 0 in *",
            "  $ sh -c 'cat /etc/hostname'  -> exit 0 in *",
        ]
    )
    kept = "pytest-kept-" + name[len("pytest-test-") :]  # renamed: no run's purge deletes it
    result.stdout.fnmatch_lines([f"kept for debugging: {kept}", f"delete them with: * delete -f {kept}"])
    assert orbsim_machines("pytest-test-") == []
    assert orbsim_machines("pytest-kept-") == [kept]
    subprocess.run([orbsim_bin, "delete", "-f", kept], check=True, timeout=60)
    assert_no_leftovers()
    assert_no_leftovers("pytest-kept-")
