"""Tests that rely on what the provision hook (conftest.py) installed."""

from __future__ import annotations

from pytest_orbstack import Machine


def test_tool_is_installed(orb_vm: Machine) -> None:
    assert orb_vm.run(["greet", "world"]).stdout == "Hello, world\n"


def test_service_user_exists(orb_vm: Machine) -> None:
    assert orb_vm.run(["whoami"], user="app").stdout.strip() == "app"


def test_fresh_machines_are_provisioned_too(orb_vm_fresh: Machine) -> None:
    assert orb_vm_fresh.run(["greet", "fresh"]).stdout == "Hello, fresh\n"
