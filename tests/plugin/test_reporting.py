"""Header, progress lines, the summary section and the failure section, with and without xdist."""

from __future__ import annotations

import re
from typing import Callable

import pytest

SECRET = "hunter2-SECRET-VALUE"


def test_progress_and_summary(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    mode: list[str],
    created_machines: Callable[[str], list[tuple[str, str]]],
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_fresh(orb_vm_fresh, n):
            orb_vm_fresh.run("true")
        """
    )
    result = run_pytest("-v", *mode)
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert len(created_machines(out)) == 4
    if "no:xdist" not in mode:
        assert all(worker.startswith("gw") for worker, _ in created_machines(out))
    assert len(re.findall(r"orbstack: (?:\[gw\d+\] )?deleted pytest-test-", out)) == 4
    result.stdout.fnmatch_lines(
        [
            "*= orbstack =*",
            "machines: 4 created, 4 deleted, 0 kept, 0 purged; mean create *s, mean ready *s",
        ]
    )
    assert_no_leftovers()


def test_failure_section_shows_machine_and_commands_but_no_env_values(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    mode: list[str],
) -> None:
    monkeypatch.setenv("SECRET_FOR_TEST", SECRET)
    pytester.makepyfile(
        """
        import os

        def test_fails(orb_vm):
            orb_vm.run("echo first")
            orb_vm.run("exit 4", check=False)
            token = os.environ.pop("SECRET_FOR_TEST")
            assert orb_vm.run("echo $TOKEN", env={"TOKEN": token}).stdout.strip() == token
            orb_vm.run("echo $TOKEN >/dev/null", env={"TOKEN": token})
            assert False, "on purpose"

        def test_passes(orb_vm):
            orb_vm.run("true")
        """
    )
    result = run_pytest(*mode)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- orbstack machine pytest-test-* -*",
            "name:  pytest-test-*",
            "id:    *",
            "image: ubuntu:jammy*",
            "state: running",
            "ip4:   198.19.249.*",
            "*",
            "last commands (4):",
            "  $ sh -c 'echo first'  -> exit 0 in *s",
            "  $ sh -c 'exit 4'  -> exit 4 in *s",
            "  $ sh -c 'echo $TOKEN'  -> exit 0 in *s",
            "  $ sh -c 'echo $TOKEN >/dev/null'  -> exit 0 in *s",
        ]
    )
    assert SECRET not in result.stdout.str()
    assert SECRET not in result.stderr.str()
    assert_no_leftovers()


def test_no_summary_when_no_machine_was_used(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult]
) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*= orbstack =*")


def test_deleted_lines_only_with_verbose(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    created_machines: Callable[[str], list[tuple[str, str]]],
) -> None:
    pytester.makepyfile("def test_fresh(orb_vm_fresh):\n    pass\n")
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1)
    assert len(created_machines(result.stdout.str())) == 1
    result.stdout.no_fnmatch_line("orbstack: deleted *")
    result.stdout.fnmatch_lines(["machines: 1 created, 1 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()
