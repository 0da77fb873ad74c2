"""Many orbsim processes at once (xdist workers): the registry never breaks, names never double up."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from orbsim_cli_helpers import Sim, make_sim


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    yield from make_sim(tmp_path)


def _parallel(sim: Sim, argvs: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
        return list(pool.map(lambda a: sim(*a), argvs))


def test_parallel_creates_of_distinct_names_all_succeed(sim: Sim) -> None:
    names = [f"pytest-test-p{i}" for i in range(8)]
    procs = _parallel(sim, [["create", "ubuntu", n] for n in names])
    assert [p.returncode for p in procs] == [0] * 8, [p.stderr for p in procs]
    machines = sim.machines()
    assert sorted(m["name"] for m in machines) == names
    assert len({m["id"] for m in machines}) == 8
    assert all(m["state"] == "running" for m in machines)
    json.loads((sim.home / "state.json").read_text())  # still valid JSON
    procs = _parallel(sim, [["delete", n] for n in names])
    assert [p.returncode for p in procs] == [0] * 8
    assert sim.names() == []


def test_parallel_creates_of_one_name_exactly_one_wins(sim: Sim) -> None:
    name = "pytest-test-same"
    procs = _parallel(sim, [["create", "ubuntu", name] for _ in range(6)])
    winners = [p for p in procs if p.returncode == 0]
    losers = [p for p in procs if p.returncode != 0]
    assert len(winners) == 1
    assert {p.stderr for p in losers} == {f"[-32098] create '{name}': machine already exists: '{name}'\n"}
    assert sim.names() == [name]
    sim.ok("delete", name)


def test_parallel_mixed_commands_keep_the_registry_consistent(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-base")
    argvs = []
    for i in range(4):
        argvs += [
            ["create", "debian", f"pytest-test-m{i}"],
            ["list", "-f", "json"],
            ["info", "pytest-test-base", "-f", "json"],
            ["run", "-m", "pytest-test-base", "true"],
        ]
    procs = _parallel(sim, argvs)
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs if p.returncode]
    for p, a in zip(procs, argvs):
        if a[0] in ("list", "info"):
            json.loads(p.stdout)
    assert len(sim.names()) == 5
    sim.ok("delete", "-a")


def test_concurrent_delete_of_the_same_machine_deletes_it_once(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-dd")
    procs = _parallel(sim, [["delete", "pytest-test-dd"] for _ in range(4)])
    assert sum(p.returncode == 0 for p in procs) >= 1
    for p in procs:
        if p.returncode:
            assert p.stderr.startswith("[-32098] "), p.stderr
    assert sim.names() == []


def test_parallel_runs_on_a_stopped_machine_all_run(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-wake")
    sim.ok("stop", "pytest-test-wake")
    procs = _parallel(sim, [["run", "-m", "pytest-test-wake", "echo", str(i)] for i in range(6)])
    assert [p.stdout for p in procs] == [f"{i}\n" for i in range(6)], [p.stderr for p in procs]
    assert [m["state"] for m in sim.machines()] == ["running"]
    sim.ok("delete", "pytest-test-wake")
