"""JSON and text output: shapes, key order, sorting, versions."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from orbsim_cli_helpers import Sim, make_sim

from pytest_orbstack.sim.images import host_arch

RECORD_KEYS = ["id", "name", "image", "config", "builtin", "state"]


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    yield from make_sim(tmp_path)


def test_empty_list_is_an_empty_array(sim: Sim) -> None:
    assert sim.ok("list", "-f", "json").stdout == "[]\n"
    assert sim.ok("list").stdout == ""
    assert sim.ok("list", "-q").stdout == ""


def test_list_records_in_name_order_with_the_spec_key_order(sim: Sim) -> None:
    sim.ok("create", "ubuntu:22.04", "pytest-test-b")
    sim.ok("create", "-a", "arm64", "debian:12", "pytest-test-a")
    text = sim.ok("list", "-f", "json").stdout
    assert text.endswith("}\n]\n")
    assert text.startswith('[\n  {\n    "id": ')
    records = json.loads(text)
    assert [r["name"] for r in records] == ["pytest-test-a", "pytest-test-b"]
    a, b = records
    assert list(a) == RECORD_KEYS
    assert list(a["image"]) == ["distro", "version", "arch", "variant"]
    assert list(a["config"]) == ["isolated", "default_username"]
    assert a["image"] == {"distro": "debian", "version": "bookworm", "arch": "arm64", "variant": "default"}
    assert b["image"] == {"distro": "ubuntu", "version": "jammy", "arch": host_arch(), "variant": "default"}
    assert a["config"] == {"isolated": False, "default_username": "tester"}
    assert a["builtin"] is False
    assert a["state"] == "running"
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", a["id"])
    assert "ip4" not in text
    assert sim.ok("list", "-q").stdout == "pytest-test-a\npytest-test-b\n"
    sim.ok("delete", "pytest-test-a", "pytest-test-b")


def test_text_list_has_no_header_when_piped(sim: Sim) -> None:
    sim.ok("create", "alma", "pytest-test-t")
    assert sim.ok("list").stdout.split() == ["pytest-test-t", "running", "almalinux", "9", host_arch()]
    sim.ok("delete", "pytest-test-t")


def test_running_filter(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-r1")
    sim.ok("create", "ubuntu", "pytest-test-r2")
    sim.ok("stop", "pytest-test-r1")
    assert sim.ok("list", "-r", "-q").stdout == "pytest-test-r2\n"
    sim.ok("delete", "-a")


def test_default_distro_versions_and_image_names(sim: Sim) -> None:
    sim.ok("create", "rocky", "pytest-test-d")
    sim.ok("create", "ubuntu")  # name defaults to the distro
    image = {r["name"]: r["image"] for r in sim.machines()}
    assert image["pytest-test-d"]["distro"] == "rockylinux"
    assert image["ubuntu"]["distro"] == "ubuntu"
    sim.ok("delete", "pytest-test-d", "ubuntu")


def test_info_wraps_the_record_with_disk_size_and_ip(sim: Sim) -> None:
    sim.ok("create", "ubuntu:24.04", "pytest-test-i")
    text = sim.ok("info", "pytest-test-i", "-f", "json").stdout
    info = json.loads(text)
    assert list(info)[:2] == ["record", "disk_size"]
    assert list(info["record"]) == RECORD_KEYS
    assert info["record"]["image"]["version"] == "noble"
    assert isinstance(info["ip4"], str)
    assert text.endswith("}\n")
    assert '\n  "record": {\n    "id"' in text
    sim.ok("stop", "pytest-test-i")
    stopped = json.loads(sim.ok("i", "pytest-test-i", "-f", "json").stdout)
    assert "ip4" not in stopped
    assert "ip6" not in stopped
    assert stopped["record"]["state"] == "stopped"
    sim.ok("delete", "pytest-test-i")


def test_info_text(sim: Sim) -> None:
    sim.ok("create", "debian", "pytest-test-x")
    lines = sim.ok("info", "pytest-test-x").stdout.splitlines()
    assert "Name: pytest-test-x" in lines
    assert "State: running" in lines
    sim.ok("delete", "pytest-test-x")


def test_1x_prints_the_bare_record_and_config_without_username_before_1_3(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-o")
    old = json.loads(sim.ok("info", "pytest-test-o", "-f", "json", env={"ORBSIM_VERSION": "1.9.0"}).stdout)
    assert list(old) == RECORD_KEYS
    assert old["config"] == {"isolated": False, "default_username": "tester"}
    older = json.loads(sim.ok("info", "pytest-test-o", "-f", "json", env={"ORBSIM_VERSION": "1.2.0"}).stdout)
    assert older["config"] == {"isolated": False}
    sim.ok("delete", "pytest-test-o")


def test_2_2_adds_limit_flags_and_keys(sim: Sim) -> None:
    env = {"ORBSIM_VERSION": "2.2.0"}
    sim.ok(
        "create",
        "--cpus",
        "2",
        "--memory",
        "4G",
        "--disk",
        "64G",
        "--isolated",
        "ubuntu",
        "pytest-test-l",
        env=env,
    )
    rec = json.loads(sim.ok("info", "pytest-test-l", "-f", "json", env=env).stdout)["record"]
    assert list(rec["config"]) == [
        "isolated",
        "default_username",
        "isolate_network",
        "forward_ssh_agent",
        "cpu_limit",
        "memory_limit_mib",
        "disk_limit_bytes",
    ]
    assert rec["config"]["cpu_limit"] == 2
    assert rec["config"]["memory_limit_mib"] == 4096
    assert rec["config"]["disk_limit_bytes"] == 64 << 30
    assert rec["config"]["isolated"] is True
    # 2.0 does not know the new keys
    rec20 = json.loads(sim.ok("info", "pytest-test-l", "-f", "json").stdout)["record"]
    assert list(rec20["config"]) == ["isolated", "default_username"]
    sim.ok("delete", "pytest-test-l")


def test_version_and_status(sim: Sim) -> None:
    assert sim.ok("version").stdout.splitlines()[0] == "Version: 2.0.4 (2000400)"
    lines = sim.ok("version", env={"ORBSIM_VERSION": "2.1.3"}).stdout.splitlines()
    assert lines[0] == "Version: 2.1.3 (2010300)"
    assert re.fullmatch(r"Commit: [0-9a-f]{40} \(v2\.1\.3\)", lines[1])
    assert len(lines) == 2
    proc = sim.ok("status")
    assert proc.stdout == "Running\n"


def test_mutating_commands_print_nothing_on_a_pipe(sim: Sim) -> None:
    outputs = [
        sim.ok("create", "ubuntu", "pytest-test-m"),
        sim.ok("stop", "pytest-test-m"),
        sim.ok("start", "pytest-test-m"),
        sim.ok("restart", "pytest-test-m"),
        sim.ok("clone", "pytest-test-m", "pytest-test-m2"),
        sim.ok("rename", "pytest-test-m2", "pytest-test-m3"),
        sim.ok("delete", "pytest-test-m", "pytest-test-m3"),
    ]
    assert [p.stdout for p in outputs] == [""] * len(outputs)


def test_text_list_has_a_header_on_a_terminal(sim: Sim) -> None:
    sim.ok("create", "ubuntu", "pytest-test-tty")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sim.exe(), "list"], env=sim.env, stdout=follower, stderr=subprocess.PIPE, timeout=60, check=False
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    assert proc.returncode == 0
    lines = b"".join(chunks).decode().splitlines()
    assert lines[0].split() == ["NAME", "STATE", "DISTRO", "VERSION", "ARCH"]
    assert lines[1].split()[:2] == ["pytest-test-tty", "running"]
    sim.ok("delete", "pytest-test-tty")
