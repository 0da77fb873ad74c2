"""Helpers for the plugin's pytester tests (orbsim comes from tests/conftest.py)."""

from __future__ import annotations

import re
from typing import Callable

import pytest

#: How a scenario is run: without xdist, and with 2 and 3 workers.
MODES = {
    "no-xdist": ["-p", "no:xdist"],
    "n2": ["-n", "2"],
    "n3": ["-n", "3"],
}
CREATED_RE = re.compile(r"orbstack: (?:\[(gw\d+)\] )?created (\S+) ")


@pytest.fixture(params=sorted(MODES))
def mode(request: pytest.FixtureRequest) -> list[str]:
    """Command-line arguments of one xdist mode (every mode in turn)."""
    return MODES[request.param]


def created(output: str) -> list[tuple[str, str]]:
    """(worker, machine name) of every 'created' progress line."""
    return [(worker or "main", name) for worker, name in CREATED_RE.findall(output)]


@pytest.fixture
def created_machines() -> Callable[[str], list[tuple[str, str]]]:
    """``created_machines(output)``: (worker, name) of every 'created' progress line in ``output``."""
    return created


@pytest.fixture
def run_pytest(pytester: pytest.Pytester) -> Callable[..., pytest.RunResult]:
    """Run pytest on the pytester directory in a subprocess (as a user would), with -rA off."""

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=600)

    return run
