"""Why machines cannot be made, said in one line with what to do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pytest_orbstack.sim import rootfs, runner
from pytest_orbstack.sim.engine import NOT_ROOT, EngineError
from pytest_orbstack.sim.namespace import NamespaceEngine, preflight_problem
from pytest_orbstack.sim.pytest_plugin import is_orbsim, make_ready


def test_not_root() -> None:
    msg = preflight_problem(euid=1000, image_ready=True, can_build=True, missing_tools={})
    assert msg == NOT_ROOT
    assert "run it as root" in NOT_ROOT
    assert "ORBSIM_MODE=plain" in NOT_ROOT


def test_missing_tools_name_their_packages() -> None:
    msg = preflight_problem(
        euid=0, image_ready=True, can_build=True, missing_tools={"ip": "iproute2", "nsenter": "util-linux"}
    )
    assert msg == "orbsim needs ip, nsenter: install them (`apt-get install iproute2 util-linux`)"


def test_no_image_and_no_way_to_build_it() -> None:
    msg = preflight_problem(euid=0, image_ready=False, can_build=False, missing_tools={})
    assert msg is not None
    assert msg.startswith("no machine image: run `orbsim image build`")
    assert preflight_problem(euid=0, image_ready=False, can_build=True, missing_tools={}) is None
    assert preflight_problem(euid=0, image_ready=True, can_build=False, missing_tools={}) is None


def test_preflight_refuses_without_image_when_autobuild_is_off(tmp_path: Path) -> None:
    env = {"ORBSIM_IMAGE_DIR": str(tmp_path / "images"), "ORBSIM_IMAGE_AUTOBUILD": "0"}
    e = NamespaceEngine(env)
    with pytest.raises(EngineError) as info:
        e.preflight()
    expected = NOT_ROOT if os.geteuid() != 0 else "no machine image: run `orbsim image build`"
    assert str(info.value).startswith(expected)


def test_build_without_debootstrap_names_the_package(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no debootstrap on it
    env = {"ORBSIM_IMAGE_DIR": str(tmp_path / "images")}
    with pytest.raises(EngineError) as info:
        rootfs.build(env)
    if os.geteuid() == 0:
        assert str(info.value) == (
            "orbsim needs debootstrap (to build the machine image) and there is no apt-get to install "
            "it: install it by hand (`apt-get install debootstrap`), then try again"
        )
    assert not rootfs.is_ready(env)
    assert rootfs.status(env)["ready"] is False


FAKE_APT_GET = """#!/bin/sh
echo "$*" >> "{log}"
case "$1" in
install) [ -f "{log}.updated" ] || {{ echo "E: Unable to locate package $6" >&2; exit 100; }} ;;
update) : > "{log}.updated" ;;
esac
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="installing needs root")
def test_install_updates_the_package_lists_when_the_first_install_fails(tmp_path: Path) -> None:
    log = tmp_path / "apt.log"
    apt = tmp_path / "apt-get"
    apt.write_text(FAKE_APT_GET.format(log=log))
    apt.chmod(0o755)
    said: list[str] = []
    rootfs.install_packages(["debootstrap"], why="to test", say=said.append, environ={"PATH": str(tmp_path)})
    assert log.read_text().splitlines() == [
        "install -y -q --no-install-recommends debootstrap",
        "update -q",
        "install -y -q --no-install-recommends debootstrap",
    ]
    assert said == ["installing debootstrap with apt-get (to test) ...", "installed debootstrap"]


@pytest.mark.skipif(os.geteuid() != 0, reason="installing needs root")
def test_a_failing_install_is_one_line_naming_the_manual_fix(tmp_path: Path) -> None:
    apt = tmp_path / "apt-get"
    apt.write_text("#!/bin/sh\necho 'E: Could not get lock /var/lib/dpkg/lock-frontend' >&2\nexit 100\n")
    apt.chmod(0o755)
    with pytest.raises(EngineError) as info:
        rootfs.install_packages(["iproute2", "mount"], why="to run machines", say=lambda line: None,
                                environ={"PATH": str(tmp_path)})  # fmt: skip
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("`apt-get install iproute2 mount` failed (")
    assert "Could not get lock" in message
    assert message.endswith("install them by hand (`apt-get install iproute2 mount`), then try again")


def test_nothing_to_install_runs_nothing(tmp_path: Path) -> None:
    rootfs.install_packages([], why="to test", say=pytest.fail, environ={"PATH": str(tmp_path)})


def test_image_key_changes_with_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    first = rootfs.key()
    assert first == rootfs.key()
    assert first.startswith(rootfs.IMAGE_NAME + "-")
    monkeypatch.setattr(rootfs, "PACKAGES", (*rootfs.PACKAGES, "openssh-server"))
    assert rootfs.key() != first
    assert rootfs.status({"ORBSIM_IMAGE_DIR": "/nonexistent"})["key"] == rootfs.key()


def test_progress_shows_debootstrap_stages_with_the_elapsed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    clock = iter([0.0, 1.0, 15.0, 16.0])
    monkeypatch.setattr(rootfs.time, "monotonic", lambda: next(clock))
    progress = rootfs._Progress(said.append, every=10.0)  # started at 0
    progress("I: Retrieving InRelease")  # 1 s: too soon after the start
    progress("dpkg: some noise")  # not a stage line: never shown
    progress("I: Extracting libc6...")  # 15 s
    progress("W: Cannot check Release signature")  # warnings always
    assert said == [
        "image build 0:15: Extracting libc6...",
        "image build 0:16: Cannot check Release signature",
    ]


def test_stream_hands_over_each_line_and_keeps_the_tail_on_failure() -> None:
    lines: list[str] = []
    runner.stream(["sh", "-c", "echo one; echo two >&2; printf three"], timeout=30, on_line=lines.append)
    assert lines == ["one", "two", "three"]
    with pytest.raises(runner.RunError) as info:
        runner.stream(["sh", "-c", "echo E: broken; exit 3"], timeout=30, on_line=lambda line: None)
    assert info.value.returncode == 3
    assert str(info.value).endswith("exited with 3: E: broken")
    with pytest.raises(runner.RunError) as info:
        runner.stream(["sleep", "30"], timeout=0.5, on_line=lambda line: None)
    assert info.value.timeout == 0.5


def test_orbsim_is_recognised_by_name_or_as_a_shim(tmp_path: Path, orbsim_bin: str) -> None:
    subprocess.run([orbsim_bin, "shims", str(tmp_path)], check=True, timeout=60)
    assert is_orbsim(str(tmp_path / "orbctl"))
    assert is_orbsim(orbsim_bin)
    other = tmp_path / "real" / "orbctl"
    other.parent.mkdir()
    other.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 64)
    assert not is_orbsim(str(other))
    assert not is_orbsim(str(tmp_path / "missing"))


def test_image_key_command_prints_the_key(orbsim_bin: str) -> None:
    out = subprocess.run([orbsim_bin, "image", "key"], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout == rootfs.key() + "\n"
    assert out.stderr == ""


def test_make_ready_needs_root_and_nothing_in_plain_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.delenv("ORBSIM_MODE", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert make_ready(said.append) == NOT_ROOT
    monkeypatch.setenv("ORBSIM_MODE", "plain")
    assert make_ready(said.append) is None
    assert said == []


def test_make_ready_with_the_image_and_tools_says_nothing() -> None:
    if os.geteuid() != 0 or not rootfs.is_ready():
        pytest.skip("needs root and the machine image (orbsim image build)")
    said: list[str] = []
    assert make_ready(said.append) is None
    assert said == []
