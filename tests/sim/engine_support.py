"""Fixtures and probes shared by tests/sim/test_engine_*.py (the fixtures are registered in conftest.py).

Namespace-engine tests need root and the machine image: without root they
are skipped with that reason; a missing image is built once for the session
(about a minute) rather than skipped.  Every machine a test makes is
destroyed at teardown, and teardown asserts that nothing of it is left: no
process of its pid namespace, no mount under its directory, no veth, no
address, and no bridge once no machine holds an address.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest

from pytest_orbstack.sim import network, procs, rootfs
from pytest_orbstack.sim.namespace import NamespaceEngine

EXEC_SNIPPET = """
import json, sys
from pathlib import Path
from pytest_orbstack.sim.engine import get_engine
mdir, user, workdir, env = sys.argv[1], sys.argv[2], sys.argv[3] or None, json.loads(sys.argv[4])
sys.exit(get_engine().exec(Path(mdir), sys.argv[5:], user=user, workdir=workdir, env=env))
"""


@pytest.fixture(scope="session")
def machine_image() -> Path:
    if os.geteuid() != 0:
        pytest.skip("namespace machines need root (run the suite as root)")
    return rootfs.build()  # no-op when the image exists; builds it once otherwise


@pytest.fixture
def ns_engine(machine_image: Path) -> NamespaceEngine:
    return NamespaceEngine()


class Machine:
    """A booted test machine and ways to run commands in it through a real orbsim-like process."""

    def __init__(self, engine: NamespaceEngine, mdir: Path, name: str, user: str) -> None:
        self.engine = engine
        self.mdir = mdir
        self.name = name
        self.user = user
        self.ip = ""

    def run(
        self,
        *argv: str,
        user: Optional[str] = None,
        workdir: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
        input: Optional[bytes] = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """``engine.exec`` in a child process whose output is captured, like the plugin does."""
        cmd = [
            sys.executable,
            "-c",
            EXEC_SNIPPET,
            str(self.mdir),
            user or self.user,
            workdir or "",
            json.dumps(env or {}),
            *argv,
        ]
        return subprocess.run(
            cmd,
            capture_output=True,
            timeout=timeout,
            check=False,
            input=input.decode() if input is not None else None,
            text=True,
        )

    def sh(self, script: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, **kw)  # type: ignore[arg-type]

    def runtime(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.mdir / "runtime.json").read_text())
        return data


def machine_processes(record: dict[str, object]) -> set[tuple[int, int]]:
    """(pid, start time) of every live process of a running machine's pid namespace."""
    ns = record.get("pidns")
    assert isinstance(ns, str)
    found = set()
    for pid in procs.pids_in_namespace(ns):
        start = procs.start_time(pid)
        if start is not None:
            found.add((pid, start))
    return found


def assert_gone(mdir: Path, record: dict[str, object], seen: set[tuple[int, int]]) -> None:
    """Nothing of a halted machine remains: the processes ``seen`` while it ran, mounts, veth, address.

    (A pid namespace's inode may be reused by a later machine, so processes are
    checked by pid and start time, not by namespace.)
    """
    alive = {(pid, start) for pid, start in seen if procs.start_time(pid) == start}
    assert alive == set(), f"processes {alive} of the machine survived"
    for key in ("pid", "outer"):
        pid = record.get(key)
        assert isinstance(pid, int)
        assert procs.start_time(pid) is None, f"{key} pid {pid} is still alive"
    with open("/proc/mounts") as fh:
        mounts = [line.split()[1] for line in fh]
    prefix = str(mdir.resolve())
    assert [m for m in mounts if m.startswith(prefix)] == []
    links = subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    veth = record.get("veth")
    assert isinstance(veth, str)
    assert f" {veth}@" not in links
    assert f" {veth}:" not in links
    table = address_table()
    assert all(entry.get("owner") != str(mdir.resolve()) for entry in table.values())


def address_table() -> dict[str, dict[str, object]]:
    try:
        data: dict[str, dict[str, object]] = json.loads((Path(network.run_dir()) / "ips.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def assert_bridge_gone_if_unused() -> None:
    """The bridge exists only while some machine (any engineer's, any home) holds an address."""
    table, exists, ports = network.usage()
    if not table:
        assert not exists or ports, "orbsim0 is left with no machine using it"


@pytest.fixture
def make_machine(ns_engine: NamespaceEngine, tmp_path: Path) -> Iterator[Callable[..., Machine]]:
    engine = ns_engine
    made: list[Machine] = []
    records: dict[Path, dict[str, object]] = {}
    seen: dict[Path, set[tuple[int, int]]] = {}

    def make(name: str = "m1", user: str = "alice", boot: bool = True) -> Machine:
        mdir = tmp_path / "machines" / name
        mdir.mkdir(parents=True)
        engine.prepare(mdir, hostname=name, username=user)
        m = Machine(engine, mdir, name, user)
        made.append(m)
        if boot:
            m.ip = engine.boot(mdir, hostname=name)
            records[mdir] = m.runtime()
            seen[mdir] = machine_processes(records[mdir])
        return m

    yield make
    for m in made:
        if (m.mdir / "runtime.json").exists() and engine.running(m.mdir):
            records[m.mdir] = m.runtime()
            seen[m.mdir] = machine_processes(records[m.mdir])
        engine.destroy(m.mdir)
        assert not m.mdir.exists()
    for mdir, record in records.items():
        if "veth" in record:
            assert_gone(mdir, record, seen.get(mdir, set()))
    network.cleanup_if_unused()
    assert_bridge_gone_if_unused()
