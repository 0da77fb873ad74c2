"""Benchmarks of the pure argv builder on the three cases the original project reported.

Run (outside the default test run, which collects ``tests/`` only):

    /work/venv/bin/pytest benchmarks/bench_commands.py

pytest collects a file named on the command line whatever its name; the
functions carry the ``benchmark`` marker.  Figures are printed by
pytest-benchmark; nothing here passes or fails on time.
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pytest_orbstack import commands

pytestmark = pytest.mark.benchmark

SCRIPT = "set -e; cd /srv && echo \"$(id -un)\" > 'who am i' && ls -la | grep -v '^total'"


def test_simple_list(benchmark: BenchmarkFixture) -> None:
    """``list -f json``."""
    argv = benchmark(commands.list_machines)
    assert argv == ["list", "-f", "json"]


def test_create_with_args(benchmark: BenchmarkFixture) -> None:
    """``create -a amd64 -u tester ubuntu:22.04 NAME``."""
    argv = benchmark(
        commands.create, "ubuntu:22.04", "pytest-test-ab12cd34-gw0-x1y2z3", arch="amd64", user="tester"
    )
    assert argv == [
        "create",
        "-a",
        "amd64",
        "-u",
        "tester",
        "ubuntu:22.04",
        "pytest-test-ab12cd34-gw0-x1y2z3",
    ]


def test_complex_run(benchmark: BenchmarkFixture) -> None:
    """``run -m NAME -u root -w /srv sh -c '...'``."""
    argv = benchmark(
        commands.run, "pytest-test-ab12cd34-gw0-x1y2z3", ["sh", "-c", SCRIPT], user="root", workdir="/srv"
    )
    assert argv == [
        "run",
        "-m",
        "pytest-test-ab12cd34-gw0-x1y2z3",
        "-u",
        "root",
        "-w",
        "/srv",
        "sh",
        "-c",
        SCRIPT,
    ]
