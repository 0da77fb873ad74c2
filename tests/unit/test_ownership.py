"""Ownership and the purge, with real processes and the shared scripted client.

A run is alive while the process its run id names exists with the same start
time, whatever state directory the run or the purge uses; lease files only
matter for run ids of earlier versions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import ScriptedOrb, info

from pytest_orbstack.errors import OrbctlCommandError
from pytest_orbstack.naming import machine_name, new_run_id
from pytest_orbstack.ownership import (
    RunLease,
    purge,
    purgeable,
    run_is_live,
    state_dir,
)
from pytest_orbstack.processes import start_identity

PREFIX = "pytest-test-"


def existing(*names: str, vanish: tuple[str, ...] = (), undeletable: tuple[str, ...] = ()) -> ScriptedOrb:
    """``names`` exist; ``vanish`` are deleted by someone else between the first list and delete;
    a delete naming one of ``undeletable`` fails as a whole, as orbctl's all-or-nothing delete does."""
    client = ScriptedOrb(*names)
    gone, refused = set(vanish), set(undeletable)
    plain_delete = client.unscripted("delete")

    def delete(*names: str, force: bool = True) -> None:
        for name in gone:
            client.machines.pop(name, None)
        gone.clear()
        if refused.intersection(names):
            raise OrbctlCommandError(["orbctl", "delete", *names], 1, "", "[-32098] boom")
        plain_delete(*names, force=force)

    return client.on("delete", delete)


@pytest.fixture
def leases(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


@pytest.fixture
def other_run() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A live run in another process: a run id naming that process (it uses no state directory)."""
    proc = _sleeper()
    identity = None
    for _ in range(100):  # /proc/PID/stat exists as soon as the pid does; be safe anyway
        identity = start_identity(proc.pid)
        if identity is not None:
            break
    assert identity is not None
    yield new_run_id(pid=proc.pid, identity=identity), proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@pytest.fixture
def dead_run() -> str:
    """The run id of a process that has ended."""
    proc = _sleeper()
    run_id = new_run_id(pid=proc.pid)
    proc.kill()
    proc.wait(timeout=10)
    return run_id


def test_state_dir_precedence(tmp_path: Path) -> None:
    assert state_dir({"PYTEST_ORBSTACK_STATE_DIR": "/a", "XDG_STATE_HOME": "/b"}) == Path("/a")
    assert state_dir({"XDG_STATE_HOME": "/b"}) == Path("/b/pytest-orbstack")
    assert state_dir({}) == Path.home() / ".local/state/pytest-orbstack"


def test_a_live_process_is_a_live_run_whatever_the_state_directory(
    tmp_path: Path, other_run: tuple[str, subprocess.Popen[bytes]]
) -> None:
    run_id, proc = other_run
    assert run_is_live(run_id)
    assert run_is_live(run_id, tmp_path / "another-state-dir")  # no lease anywhere: still alive
    assert run_is_live(new_run_id())  # this process
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not run_is_live(run_id)


def test_a_pid_reused_by_another_process_is_not_the_run(
    other_run: tuple[str, subprocess.Popen[bytes]],
) -> None:
    _, proc = other_run
    # the pid exists, but the run id was made for a process that started at another time
    assert not run_is_live(new_run_id(pid=proc.pid, identity="linux:another-boot:12345"))


def test_a_process_whose_start_cannot_be_read_counts_as_alive_while_its_pid_exists(
    dead_run: str, other_run: tuple[str, subprocess.Popen[bytes]]
) -> None:
    _, proc = other_run
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("pytest_orbstack.processes.start_identity", lambda pid, **_: None)
        live = new_run_id(pid=proc.pid)  # made while the start time could not be read
        assert live[5:9] == "zzzz"
    assert run_is_live(live)  # "unknown" start: alive while the pid exists
    proc.kill()
    proc.wait(timeout=10)
    assert not run_is_live(live)
    assert not run_is_live(dead_run)


def test_legacy_run_ids_are_alive_only_while_their_lease_is_locked(leases: Path) -> None:
    lease = RunLease.acquire("run00001", PREFIX, "/usr/bin/orbctl", leases)
    data = json.loads(lease.path.read_text())
    assert data["run_id"] == "run00001"
    assert data["pid"] == os.getpid()
    assert data["prefix"] == PREFIX
    assert (lease.path.parent.parent.stat().st_mode & 0o777) == 0o700
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


def test_purgeable_spares_live_runs_foreign_names_kept_machines_and_bases(
    leases: Path, other_run: tuple[str, subprocess.Popen[bytes]], dead_run: str
) -> None:
    other_id, _ = other_run
    own = new_run_id()
    machines = [
        machine_name(PREFIX, other_id, "gw0", "aaaaaa"),  # live run (no lease in our dir): never
        machine_name(PREFIX + "x-", other_id, "gw1", "bbbbbb"),  # live run, longer prefix: never
        machine_name(PREFIX, own, "main", "cccccc"),  # our own run: only when asked
        machine_name(PREFIX, dead_run, "gw0", "dddddd"),  # dead run: yes
        f"pytest-kept-{dead_run}-gw0-kept00",  # kept by the dead run: never
        machine_name(PREFIX, "nolease0", "gw2", "eeeeee"),  # legacy id without a lease: yes
        "pytest-test-handmade",  # prefix, belongs to no run: yes
        "ubuntu",  # no prefix: never
        "my-pytest-test-abcdefgh-gw0-abcdef",  # prefix not at the start: never
    ]
    named = [info("running", name=n) for n in machines]
    assert purgeable(named, PREFIX, directory=leases) == [machines[3], machines[5], machines[6]]
    assert purgeable(named, PREFIX, directory=leases, own_run_id=own) == [
        machines[2],
        machines[3],
        machines[5],
        machines[6],
    ]
    # a purge with the widest prefix still never takes kept machines
    assert machines[4] not in purgeable(named, "pytest-", directory=leases)


def test_purge_is_one_list_and_one_delete(leases: Path, dead_run: str) -> None:
    names = [machine_name(PREFIX, dead_run, "gw0") for _ in range(5)] + ["keep-me"]
    client = existing(*names)
    result = purge(client, PREFIX, directory=leases)
    assert sorted(result.deleted) == sorted(names[:5])
    assert result.failed == ()
    assert sorted(client.machines) == ["keep-me"]
    assert client.verbs() == ["list", "delete"]


def test_purge_survives_a_machine_vanishing_mid_purge(leases: Path, dead_run: str) -> None:
    names = sorted(machine_name(PREFIX, dead_run, "gw0") for _ in range(3))
    client = existing(*names, vanish=(names[1],))
    result = purge(client, PREFIX, directory=leases)
    assert result.deleted == (names[0], names[2])
    assert sorted(client.machines) == []
    assert client.verbs() == ["list", "delete", "list", "delete"]


def test_purge_reports_a_failed_delete(leases: Path, dead_run: str) -> None:
    names = [machine_name(PREFIX, dead_run, "gw0")]
    client = existing(*names, undeletable=tuple(names))
    result = purge(client, PREFIX, directory=leases)
    assert result.deleted == ()
    assert result.failed == tuple(names)
    assert result.error is not None
    assert "delete" in result.error
    assert "boom" in result.error
    assert client.verbs() == ["list", "delete", "delete"]  # then one by one


def test_one_undeletable_machine_does_not_keep_the_others(leases: Path, dead_run: str) -> None:
    names = sorted(machine_name(PREFIX, dead_run, "gw0") for _ in range(4))
    client = existing(*names, undeletable=(names[1],))
    result = purge(client, PREFIX, directory=leases)
    assert result.deleted == (names[0], names[2], names[3])
    assert result.failed == (names[1],)
    assert result.error is not None
    assert "boom" in result.error
    assert sorted(client.machines) == [names[1]]
    assert client.said() == [("list",), ("delete", *names), *[("delete", n) for n in names]]


def test_purge_with_nothing_to_do_only_lists(leases: Path) -> None:
    client = existing("ubuntu")
    assert purge(client, PREFIX, directory=leases).deleted == ()
    assert client.said() == [("list",)]


def test_dead_leases_are_forgotten(leases: Path) -> None:
    live = RunLease.acquire("liverun0", PREFIX, "orbctl", leases)
    crashed = _lease_of_a_crashed_run("deadrun5", leases)  # the file stays, the lock is gone
    try:
        assert crashed.exists()
        purge(existing(), PREFIX, directory=leases)
        assert live.path.exists()
        assert not crashed.exists()
    finally:
        live.release()


def _lease_of_a_crashed_run(run_id: str, directory: Path) -> Path:
    """The lease file of a run whose process ended without releasing it."""
    code = (
        "import os, sys; from pathlib import Path; from pytest_orbstack.ownership import RunLease;"
        f"lease = RunLease.acquire({run_id!r}, {PREFIX!r}, 'orbctl', Path({str(directory)!r}));"
        "sys.stdout.write(str(lease.path)); sys.stdout.flush(); os._exit(0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], timeout=60, check=True, capture_output=True, text=True
    )
    return Path(done.stdout)


def _live_from_other_process(run_id: str, directory: Path) -> bool:
    code = (
        "import sys; from pathlib import Path; from pytest_orbstack.ownership import run_is_live;"
        f"sys.exit(0 if run_is_live({run_id!r}, Path({str(directory)!r})) else 3)"
    )
    rc = subprocess.run([sys.executable, "-c", code], timeout=60, check=False).returncode
    assert rc in (0, 3)
    return rc == 0


def test_reused_bases_are_never_purged_even_by_a_wide_prefix(leases: Path, dead_run: str) -> None:
    names = ["pytest-base-0123456789abcdef", machine_name("pytest-", dead_run, "gw0")]
    client = existing(*names)
    assert purge(client, "pytest-", directory=leases).deleted == (names[1],)
    assert sorted(client.machines) == [names[0]]


def test_others_false_purges_only_the_own_run(leases: Path, dead_run: str) -> None:
    own_run_id = new_run_id()
    own = machine_name(PREFIX, own_run_id, "gw0")
    orphan = machine_name(PREFIX, dead_run, "gw0")
    client = existing(own, orphan, "pytest-test-handmade")
    result = purge(client, PREFIX, directory=leases, own_run_id=own_run_id, others=False)
    assert result.deleted == (own,)
    assert sorted(client.machines) == sorted([orphan, "pytest-test-handmade"])
