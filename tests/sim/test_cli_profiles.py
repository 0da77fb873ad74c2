"""The orbstack timing profile: what callers can observe in between (states, ip4 after start).

No assertion on durations: only on order and on what concurrent callers see.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from orbsim_cli_helpers import Sim, make_sim, orbsim_bin

from pytest_orbstack.sim.profile import Profile, sharing

N = "pytest-test-prof"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    yield from make_sim(tmp_path, ORBSIM_PROFILE="orbstack", ORBSIM_SCALE="0.25")


def _until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_create_shows_creating_then_provisioning_then_running(sim: Sim) -> None:
    proc = subprocess.Popen([orbsim_bin(), "create", "ubuntu", N], env={**sim.env, "ORBSIM_SCALE": "0.5"})
    seen: list[str] = []
    try:
        while proc.poll() is None:
            states = [m["state"] for m in sim.machines()]
            if states and (not seen or seen[-1] != states[0]):
                seen.append(states[0])
            time.sleep(0.02)
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    assert seen[0] == "creating"
    assert "provisioning" in seen
    assert [m["state"] for m in sim.machines()] == ["running"]
    order = [s for s in ("creating", "provisioning", "running") if s in seen]
    assert seen == order or seen == order[:-1]
    sim.ok("delete", N)


def test_start_returns_before_the_ip_appears(sim: Sim) -> None:
    sim.ok("create", "ubuntu", N)
    sim.ok("stop", N)
    env = {"ORBSIM_SCALE": "4"}  # start ~4 s, then the ip ~4 s later
    sim.ok("start", N, env=env)
    info = json.loads(sim.ok("info", N, "-f", "json").stdout)
    assert info["record"]["state"] == "running"
    assert "ip4" not in info
    _until(lambda: "ip4" in json.loads(sim.ok("info", N, "-f", "json").stdout), "ip4 appears", timeout=120)
    sim.ok("delete", N)


def test_timeline_records_readiness(sim: Sim) -> None:
    sim.ok("create", "ubuntu", N)
    (row,) = json.loads(sim.ok("timeline").stdout)
    assert row["name"] == N
    assert row["created_at"] <= row["started_at"] <= row["ready_at"]
    sim.ok("stop", N)
    sim.ok("start", N)
    (after,) = json.loads(sim.ok("timeline", N).stdout)
    assert after["ready_at"] > row["ready_at"]
    assert after["ip_at"] > after["ready_at"]  # the ip comes after start returned
    sim.ok("clone", N, "pytest-test-prof2")
    clone = json.loads(sim.ok("timeline", "pytest-test-prof2").stdout)[0]
    assert clone["state"] == "stopped"
    assert clone["ready_at"] is None
    sim.ok("delete", N, "pytest-test-prof2")


def test_bad_profile_or_scale(sim: Sim) -> None:
    for env, word in (
        ({"ORBSIM_PROFILE": "warp"}, "ORBSIM_PROFILE"),
        ({"ORBSIM_SCALE": "-1"}, "ORBSIM_SCALE"),
    ):
        proc = sim("create", "ubuntu", N, env=env)
        assert proc.returncode == 1
        assert proc.stderr.startswith(f"orbsim: {word}=")
    assert sim.names() == []


def _creating(sim: Sim, scale: str, version: str = "2.0.4") -> subprocess.Popen[str]:
    env = {**sim.env, "ORBSIM_SCALE": scale, "ORBSIM_VERSION": version}
    proc = subprocess.Popen(
        [orbsim_bin(), "create", "ubuntu", N],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    _until(lambda: [m["state"] for m in sim.machines()] == ["creating"], "state creating")
    return proc


def test_start_during_create_is_a_transition_conflict(sim: Sim) -> None:
    proc = _creating(sim, "1")
    try:
        started = sim("start", N)
        assert (started.returncode, started.stderr) == (
            1,
            "[-32098] cannot transition from creating to starting\n",
        )
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    sim.ok("delete", N)


def test_delete_during_create_cancels_the_create(sim: Sim) -> None:
    proc = _creating(sim, "1")
    try:
        sim.ok("delete", N)
        assert sim.names() == []
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err == f"[-32098] create '{N}': context canceled\n"


def test_delete_during_create_is_a_conflict_before_2_0(sim: Sim) -> None:
    proc = _creating(sim, "1", version="1.10.0")
    try:
        deleted = sim("delete", N, env={"ORBSIM_VERSION": "1.10.0"})
        assert deleted.stderr == "[-32098] cannot transition from creating to deleting\n"
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    sim.ok("delete", N)


def test_concurrent_creates_share_one_download(sim: Sim) -> None:
    """OrbStack keeps no image cache: creates at the same time download side by side."""
    spool = sim.home / "downloads"
    names = [f"{N}-dl{i}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [orbsim_bin(), "create", "ubuntu:22.04", name],
            env=sim.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name in names
    ]
    try:
        _until(lambda: spool.is_dir() and len(list(spool.iterdir())) == 2, "two downloads at once")
    finally:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert list(spool.iterdir()) == []
    sim.ok("delete", *names)


def test_a_killed_download_stopssharing(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=10)
    (tmp_path / f"{dead.pid}-1").touch()
    (tmp_path / "garbage").touch()
    live = tmp_path / f"{os.getpid()}-2"
    live.touch()
    assert sharing(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == [live.name]


def test_slow_clone_profile_keeps_the_copy_path() -> None:
    fast, slow = Profile("orbstack", 1.0), Profile("orbstack-copy", 1.0)
    assert fast.delay("clone") < 1 <= slow.delay("clone")
    assert fast.delay("delete") < slow.delay("delete")
    assert fast.delay("create") == slow.delay("create")
