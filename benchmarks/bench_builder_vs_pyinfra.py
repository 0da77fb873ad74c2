"""Our argv builder next to pyinfra-orbstack's command builders, on the original project's three cases.

The cases are those of pyinfra-orbstack's own ``tests/test_benchmarks.py``
(class ``TestCommandBuilderPerformance``): *simple* = ``list``, *with args* =
``info NAME``, *complex* = ``create`` with an architecture and a user.  Their
builders join a string (``"orbctl info test-vm --format json"``) with no
validation; ours return an argv list after validating the name, image,
architecture and user.

Needs the benchmark-only extra: ``pip install -e '.[bench]'`` (pyinfra-orbstack).

Run (one pytest-benchmark run, both sides together, grouped by case):

    /work/venv/bin/pytest benchmarks/bench_builder_vs_pyinfra.py -p no:xdist \
        --benchmark-group-by=group --benchmark-columns=min,median,mean,ops,rounds

pytest-benchmark prints the figures; nothing here passes or fails on time.
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from pytest_orbstack import commands

vm = pytest.importorskip(
    "pyinfra_orbstack.operations.vm", reason="pip install -e '.[bench]' (pyinfra-orbstack) first"
)

pytestmark = pytest.mark.benchmark

NAME = "test-vm"


@pytest.mark.benchmark(group="1-simple: list")
def test_simple_ours(benchmark: BenchmarkFixture) -> None:
    assert benchmark(commands.list_machines) == ["list", "-f", "json"]


@pytest.mark.benchmark(group="1-simple: list")
def test_simple_pyinfra_orbstack(benchmark: BenchmarkFixture) -> None:
    assert benchmark(vm.build_vm_list_command) == "orbctl list -f json"


@pytest.mark.benchmark(group="2-with-args: info NAME")
def test_with_args_ours(benchmark: BenchmarkFixture) -> None:
    assert benchmark(commands.info, NAME) == ["info", NAME, "-f", "json"]


@pytest.mark.benchmark(group="2-with-args: info NAME")
def test_with_args_pyinfra_orbstack(benchmark: BenchmarkFixture) -> None:
    assert benchmark(vm.build_vm_info_command, NAME) == f"orbctl info {NAME} --format json"


@pytest.mark.benchmark(group="3-complex: create -a -u")
def test_complex_ours(benchmark: BenchmarkFixture) -> None:
    argv = benchmark(commands.create, "ubuntu:22.04", NAME, arch="arm64", user="testuser")
    assert argv == ["create", "-a", "arm64", "-u", "testuser", "ubuntu:22.04", NAME]


@pytest.mark.benchmark(group="3-complex: create -a -u")
def test_complex_pyinfra_orbstack(benchmark: BenchmarkFixture) -> None:
    text = benchmark(vm.build_vm_create_command, NAME, "ubuntu:22.04", arch="arm64", user="testuser")
    assert text == f"orbctl create ubuntu:22.04 {NAME} --arch arm64 --user testuser"
