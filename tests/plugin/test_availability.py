"""OrbStack missing or stopped: machine tests error with one line, other tests run."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Callable

import pytest

from pytest_orbstack.errors import OrbctlNotFoundError
from pytest_orbstack.fixtures import resolve_orbctl
from pytest_orbstack.settings import Settings

TESTS = """
def test_plain():
    pass

def test_vm(orb_vm):
    pass

def test_fresh(orb_vm_fresh):
    pass

def test_client(orb_client):
    pass
"""


def test_orbstack_stopped(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    mode: list[str],
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", "vm=stopped")
    pytester.makepyfile(TESTS)
    result = run_pytest(*mode)
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_vm*",
            "OrbStack is not running (orbctl status: Stopped): open the OrbStack app "
            "or run 'orbctl list' (which starts it), then run the tests again",
        ]
    )


def test_orbctl_missing(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # orbsim sits next to this interpreter, so the lookup would fall back to it: a make_client
    # hook runs the real lookup with no ORBCTL and an empty PATH instead.
    pytester.makeconftest(
        """
        import pytest
        from pytest_orbstack.client import OrbctlClient, find_orbctl

        @pytest.hookimpl(tryfirst=True)
        def pytest_orbstack_make_client(config):
            return OrbctlClient(find_orbctl(None, environ={"PATH": "/nonexistent"}))
        """
    )
    pytester.makepyfile(TESTS)
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_vm*",
            "orbctl not found (no --orb-orbctl, no $ORBCTL, not on PATH); install OrbStack, "
            "or pass --orb-orbctl PATH, set $ORBCTL, or put orbctl on PATH",
        ]
    )


def test_orbctl_lookup_falls_back_to_orbsim_only_on_linux(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    bin_dir = Path(tmp_path)
    monkeypatch.delenv("ORBCTL")
    monkeypatch.delenv("PYTEST_ORBSTACK_ORBCTL", raising=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    with pytest.raises(OrbctlNotFoundError):
        resolve_orbctl(Settings())
    orbsim = bin_dir / "orbsim"
    orbsim.write_text("#!/bin/sh\n")
    orbsim.chmod(0o755)
    assert resolve_orbctl(Settings()) == (str(orbsim), "orbsim-fallback")
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    with pytest.raises(OrbctlNotFoundError):
        resolve_orbctl(Settings())
    orbctl = bin_dir / "orbctl"
    orbctl.write_text("#!/bin/sh\n")
    orbctl.chmod(0o755)
    assert resolve_orbctl(Settings()) == (str(orbctl), "orbctl")


def test_orbstack_starting_is_waited_for(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[..., None],
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", "vm=starting*3")  # the first three status calls: Starting
    pytester.makepyfile(TESTS)
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=4)
    assert_no_leftovers()


def test_orbstack_that_stays_starting_is_a_one_line_error(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", "vm=starting")
    pytester.makepyfile(TESTS)
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_vm*",
            "OrbStack is still starting after 15s (orbctl status: Starting): wait until the OrbStack "
            "app says it is running, then run the tests again",
        ]
    )
