"""A run over several hosts: which worker is elsewhere, the host's election, the summary lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

import execnet
import pytest

from pytest_orbstack import hosts, naming, ownership, reaper


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv(ownership.STATE_DIR_ENV, str(directory))
    return directory


def test_a_worker_with_the_controllers_host_name_and_state_dir_is_on_its_host(
    state: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    controller = hosts.identity()
    assert not hosts.is_remote({hosts.HOST_KEY: controller})
    assert not hosts.is_remote({})  # a controller that says nothing: as before, one host
    monkeypatch.setenv(ownership.STATE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert hosts.is_remote({hosts.HOST_KEY: controller})
    assert hosts.worker_host(True)["state_dir"] == str(tmp_path / "elsewhere")


@pytest.mark.parametrize(
    ("spec", "elsewhere"),
    [
        ("popen", False),
        ("popen//env:FOO=1", False),
        ("popen//env:PYTEST_ORBSTACK_STATE_DIR=/x", True),
        ("popen//env:HOME=/x", True),
        ("popen//via=mac2", True),
        ("ssh=ci@mac2", True),
        ("socket=192.168.1.2:8888", True),
    ],
)
def test_a_dead_workers_host_is_told_by_its_gateway_spec(spec: str, elsewhere: bool) -> None:
    assert hosts.elsewhere_by_spec(execnet.XSpec(spec)) is elsewhere


def test_the_first_worker_is_elected_and_the_next_joins(state: Path) -> None:
    started: list[str] = []

    def start(run_id: str) -> str:
        started.append(run_id)
        return "the backend is not ready"

    first = hosts.elect("controller0001", start)
    assert first.elected
    assert started == [first.run_id]
    assert naming.owner_of(first.run_id) is not None  # owned by this process: a live run
    assert ownership.run_is_live(first.run_id)
    second = hosts.elect("controller0001", start)
    assert not second.elected
    assert started == [first.run_id]  # the host's duties start once
    assert (second.run_id, second.unavailable) == (first.run_id, "the backend is not ready")
    other_run = hosts.elect("controller0002", lambda run_id: None)  # another run: its own election
    assert other_run.elected
    assert other_run.run_id != first.run_id
    for duties in (first, second, other_run):
        assert duties.pin is not None
        assert duties.pin.held
        duties.pin.release()


def test_a_host_run_whose_elected_worker_died_is_taken_over(state: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = naming.new_run_id(gone.pid, "0")
    runs = ownership.runs_dir()
    runs.mkdir(parents=True)
    (runs / "controller0001.host").write_text(f'{{"run_id": "{dead}", "unavailable": null}}')
    duties = hosts.elect("controller0001", lambda run_id: None)
    assert duties.elected
    assert duties.run_id != dead
    assert duties.pin is not None
    duties.pin.release()


def test_the_elected_worker_waits_for_its_peers_and_learns_their_bases(state: Path) -> None:
    leader = hosts.elect("controller0001", lambda run_id: None)
    peer = hosts.elect("controller0001", lambda run_id: None)
    gone, _ = leader.wait_for_peers(timeout=0.3)
    assert not gone  # the peer still holds its pin
    peer.leave(["pytest-test-base1"])
    assert peer.pin is not None
    assert not peer.pin.held
    gone, bases = leader.wait_for_peers(timeout=5)
    assert gone
    assert bases == {"pytest-test-base1"}
    leader.forget()
    assert sorted(p.name for p in ownership.runs_dir().iterdir() if "controller0001" in p.name) == []
    assert reaper.workers_gone(ownership.runs_dir() / f"{leader.run_id}.workers")


def test_the_summary_names_each_host_when_one_is_remote() -> None:
    local = hosts.HostTally("mac1", "/s", remote=False)
    local.add("gw0", {"created": 2, "deleted": 2})
    assert hosts.host_lines([local]) == []  # one host: the usual summary says it all
    mac2 = hosts.HostTally("mac2", "/s", remote=True)
    mac2.add("gw10", {"created": 3, "deleted": 3, "purged": 1})
    mac2.add("gw2", {"created": 1, "deleted": 1})
    assert hosts.host_lines([mac2, local]) == [
        "host mac1 (the controller's) [gw0]: 2 created, 2 deleted, 0 purged",
        "host mac2 [gw2, gw10]: 4 created, 4 deleted, 1 purged",
    ]
    twin = hosts.HostTally("mac2", "/t", remote=True)
    assert hosts.host_lines([mac2, twin])[0].startswith("host mac2:/s [")
