"""Why machines cannot be made, said in one line with what to do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_orbstack.sim import rootfs
from pytest_orbstack.sim.engine import NOT_ROOT, EngineError
from pytest_orbstack.sim.namespace import NamespaceEngine, preflight_problem


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
        assert "debootstrap is not installed" in str(info.value)
        assert "apt-get install debootstrap" in str(info.value)
    assert not rootfs.is_ready(env)
    assert rootfs.status(env)["ready"] is False
