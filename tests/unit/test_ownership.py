"""Leases and the purge, with real lock-holding processes and a recording client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_orbstack.errors import MachineNotFoundError, OrbctlCommandError
from pytest_orbstack.naming import machine_name
from pytest_orbstack.ownership import (
    RunLease,
    purge,
    purgeable,
    run_is_live,
    state_dir,
)

PREFIX = "pytest-test-"


@dataclass(frozen=True)
class Named:
    name: str


class RecordingClient:
    """Answers list/delete like orbctl's all-or-nothing delete, and records calls."""

    def __init__(self, names: list[str], vanish: tuple[str, ...] = (), fail: bool = False) -> None:
        self.names = list(names)
        self.vanish = set(vanish)
        self.fail = fail
        self.calls: list[tuple[str, ...]] = []

    def list(self) -> list[Named]:  # type: ignore[override]
        self.calls.append(("list",))
        return [Named(n) for n in sorted(self.names)]

    def delete(self, *names: str, force: bool = True) -> None:
        self.calls.append(("delete", *names))
        if self.vanish:  # someone else deleted these between our list and our delete
            self.names = [n for n in self.names if n not in self.vanish]
            self.vanish = set()
        if self.fail:
            raise OrbctlCommandError(["orbctl", "delete", *names], 1, "", "[-32098] boom")
        missing = [n for n in names if n not in self.names]
        if missing:
            raise MachineNotFoundError(
                ["orbctl", "delete", *names], 1, "", f"[-32098] machine not found: '{missing[0]}'"
            )
        self.names = [n for n in self.names if n not in names]


@pytest.fixture
def leases(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def other_run(leases: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A live run in another process, holding the lease of run id 'otherrun'."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from pytest_orbstack.ownership import RunLease
        lease = RunLease.acquire("otherrun", {PREFIX!r}, "orbctl", Path({str(leases)!r}))
        print("held", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    yield "otherrun", proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()


def test_state_dir_precedence(tmp_path: Path) -> None:
    assert state_dir({"PYTEST_ORBSTACK_STATE_DIR": "/a", "XDG_STATE_HOME": "/b"}) == Path("/a")
    assert state_dir({"XDG_STATE_HOME": "/b"}) == Path("/b/pytest-orbstack")
    assert state_dir({}) == Path.home() / ".local/state/pytest-orbstack"


def test_lease_is_live_while_held_and_gone_after_release(leases: Path) -> None:
    lease = RunLease.acquire("run00001", PREFIX, "/usr/bin/orbctl", leases)
    data = json.loads(lease.path.read_text())
    assert data["run_id"] == "run00001"
    assert data["pid"] == os.getpid()
    assert data["prefix"] == PREFIX
    # flock locks are per open file: a second open in this process does not see our own lock,
    # so liveness is checked from another process, as a real purge would.
    assert _live_from_other_process("run00001", leases)
    lease.release()
    assert not lease.path.exists()
    assert not run_is_live("run00001", leases)
    lease.release()  # idempotent


def test_a_run_id_cannot_be_leased_twice(leases: Path) -> None:
    lease = RunLease.acquire("run00002", PREFIX, "orbctl", leases)
    try:
        with pytest.raises(FileExistsError):
            RunLease.acquire("run00002", PREFIX, "orbctl", leases)
    finally:
        lease.release()


def test_a_killed_run_is_dead(leases: Path, other_run: tuple[str, subprocess.Popen[str]]) -> None:
    run_id, proc = other_run
    assert run_is_live(run_id, leases)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not run_is_live(run_id, leases)


def test_purgeable_spares_live_runs_foreign_names_and_kept_machines(
    leases: Path, other_run: tuple[str, subprocess.Popen[str]]
) -> None:
    other_id, _ = other_run
    own = RunLease.acquire("ownrun00", PREFIX, "orbctl", leases)
    try:
        dead = RunLease.acquire("deadrun0", PREFIX, "orbctl", leases)
        dead.keep([machine_name(PREFIX, "deadrun0", "gw0", "kept00")])
        dead.release()
        machines = [
            machine_name(PREFIX, other_id, "gw0", "aaaaaa"),  # live run: never
            machine_name(PREFIX + "x-", other_id, "gw1", "bbbbbb"),  # live run, longer prefix: never
            machine_name(PREFIX, "ownrun00", "main", "cccccc"),  # our own run: only when asked
            machine_name(PREFIX, "deadrun0", "gw0", "dddddd"),  # dead run: yes
            machine_name(PREFIX, "deadrun0", "gw0", "kept00"),  # kept by the dead run: never
            machine_name(PREFIX, "nolease0", "gw2", "eeeeee"),  # run without a lease: yes
            "pytest-test-handmade",  # prefix, belongs to no run: yes
            "ubuntu",  # no prefix: never
            "my-pytest-test-abcdefgh-gw0-abcdef",  # prefix not at the start: never
        ]
        named = [Named(n) for n in machines]
        assert purgeable(named, PREFIX, directory=leases) == [machines[3], machines[5], machines[6]]
        assert purgeable(named, PREFIX, directory=leases, own_run_id="ownrun00") == [
            machines[2],
            machines[3],
            machines[5],
            machines[6],
        ]
    finally:
        own.release()


def test_purge_is_one_list_and_one_delete(leases: Path) -> None:
    names = [machine_name(PREFIX, "deadrun1", "gw0") for _ in range(5)] + ["keep-me"]
    client = RecordingClient(names)
    result = purge(client, PREFIX, directory=leases)
    assert sorted(result.deleted) == sorted(names[:5])
    assert result.failed == ()
    assert client.names == ["keep-me"]
    assert [c[0] for c in client.calls] == ["list", "delete"]


def test_purge_survives_a_machine_vanishing_mid_purge(leases: Path) -> None:
    names = sorted(machine_name(PREFIX, "deadrun2", "gw0") for _ in range(3))
    client = RecordingClient(names, vanish=(names[1],))
    result = purge(client, PREFIX, directory=leases)
    assert result.deleted == (names[0], names[2])
    assert client.names == []
    assert [c[0] for c in client.calls] == ["list", "delete", "list", "delete"]


def test_purge_reports_a_failed_delete(leases: Path) -> None:
    names = [machine_name(PREFIX, "deadrun3", "gw0")]
    result = purge(RecordingClient(names, fail=True), PREFIX, directory=leases)
    assert result.deleted == ()
    assert result.failed == tuple(names)
    assert result.error is not None
    assert "delete" in result.error
    assert "boom" in result.error


def test_purge_with_nothing_to_do_only_lists(leases: Path) -> None:
    client = RecordingClient(["ubuntu"])
    assert purge(client, PREFIX, directory=leases).deleted == ()
    assert client.calls == [("list",)]


def test_dead_leases_are_forgotten_unless_they_keep_a_live_machine(leases: Path) -> None:
    kept = machine_name(PREFIX, "deadrun4", "gw0")
    lease = RunLease.acquire("deadrun4", PREFIX, "orbctl", leases)
    lease.keep([kept])
    lease.release()
    plain = RunLease.acquire("deadrun5", PREFIX, "orbctl", leases)
    plain.path.write_text(plain.lease.to_json())
    os.close(os.open(plain.path, os.O_RDONLY))
    plain._fd and os.close(plain._fd)
    plain._fd = None  # simulate a crash: the file stays, the lock is gone
    client = RecordingClient([kept])
    assert purge(client, PREFIX, directory=leases).deleted == ()
    assert client.names == [kept]
    assert lease.path.exists()
    assert not plain.path.exists()
    client.names = []  # the user deleted the kept machine by hand
    purge(client, PREFIX, directory=leases)
    assert not lease.path.exists()


def _live_from_other_process(run_id: str, directory: Path) -> bool:
    code = (
        "import sys; from pathlib import Path; from pytest_orbstack.ownership import run_is_live;"
        f"sys.exit(0 if run_is_live({run_id!r}, Path({str(directory)!r})) else 3)"
    )
    rc = subprocess.run([sys.executable, "-c", code], timeout=60, check=False).returncode
    assert rc in (0, 3)
    return rc == 0


def test_reused_bases_are_never_purged_even_by_a_wide_prefix(leases: Path) -> None:
    names = ["pytest-base-0123456789abcdef", machine_name("pytest-", "deadrun6", "gw0")]
    client = RecordingClient(names)
    assert purge(client, "pytest-", directory=leases).deleted == (names[1],)
    assert client.names == [names[0]]


def test_others_false_purges_only_the_own_run(leases: Path) -> None:
    own = machine_name(PREFIX, "ownrun01", "gw0")
    orphan = machine_name(PREFIX, "deadrun7", "gw0")
    client = RecordingClient([own, orphan, "pytest-test-handmade"])
    result = purge(client, PREFIX, directory=leases, own_run_id="ownrun01", others=False)
    assert result.deleted == (own,)
    assert sorted(client.names) == sorted([orphan, "pytest-test-handmade"])
