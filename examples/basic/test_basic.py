"""Basic use of ``orb_vm``: one machine per worker, shared by every test that asks for it.

Run:  pytest examples/basic            (or -n 3: one machine per xdist worker)
"""

from __future__ import annotations

import pytest

from pytest_orbstack import CommandFailedError, Machine


def test_run_a_shell_command(orb_vm: Machine) -> None:
    result = orb_vm.run("echo hello from $(hostname)")
    assert result.returncode == 0
    assert result.stdout.strip() == f"hello from {orb_vm.name}"


def test_run_argv_without_a_shell(orb_vm: Machine) -> None:
    # A list is passed as argv: no shell, so '$HOME' is not expanded.
    assert orb_vm.run(["echo", "$HOME"]).stdout == "$HOME\n"


def test_exit_codes_and_check(orb_vm: Machine) -> None:
    assert orb_vm.run("exit 3", check=False).returncode == 3
    with pytest.raises(CommandFailedError) as excinfo:
        orb_vm.run("echo oops >&2; exit 4")
    assert excinfo.value.returncode == 4
    assert "oops" in str(excinfo.value)


def test_environment_and_stdin(orb_vm: Machine) -> None:
    result = orb_vm.run('printf "%s:" "$GREETING"; cat', env={"GREETING": "hi"}, input="from stdin")
    assert result.stdout == "hi:from stdin"


def test_machine_facts(orb_vm: Machine) -> None:
    assert orb_vm.state == "running"
    assert orb_vm.ip4
    assert orb_vm.hostname == f"{orb_vm.name}.orb.local"
    assert orb_vm.run("id -un").stdout.strip() == orb_vm.user
