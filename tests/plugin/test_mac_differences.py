"""What a Mac does differently from CI as root, shown on orbsim: the working directory, a non-root
default user, machine ids of clones, provision hooks writing under /tmp.

``orbctl run`` without ``-w`` runs in the current directory of the caller
(orbsim: when that path exists in the machine, as OrbStack does with the
Mac's directories), so each test makes that path exist in the machine and
shows that commands never act there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from pytest_orbstack.readiness import PROBE

CWD_SUITE = """
import os
import pytest

def test_relative_paths_stay_in_the_home(orb_vm):
    here = os.getcwd()
    # The directory pytest runs in exists in the machine too (on a Mac it is shared into it).
    orb_vm.run(["mkdir", "-p", here], user="root")
    orb_vm.run(["chmod", "777", here], user="root")
    orb_vm.run("rm -rf build && mkdir build && touch build/out marker")
    orb_vm.run(["touch", "argv-marker"])
    orb_vm.write_text("cfg.yml", "a: 1\\n")
    orb_vm.run("touch root-marker", user="root")
    assert orb_vm.run(["ls", "-A", here]).stdout == ""
    assert orb_vm.run("pwd").stdout.strip() == orb_vm.home
    assert orb_vm.run("pwd", user="root").stdout.strip() == "/root"
    assert orb_vm.run("pwd", workdir=here).stdout.strip() == here  # workdir= still wins
    assert orb_vm.read_text("cfg.yml") == "a: 1\\n"
    assert orb_vm.run(["ls", orb_vm.home + "/build"]).stdout == "out\\n"
    assert orb_vm.run(["test", "-e", "/root/root-marker"], user="root").ok
    user = orb_vm.run("id -un").stdout.strip()
    assert orb_vm.home == ("/root" if user == "root" else "/home/" + user)
"""


def _run_calls(home: str) -> list[list[str]]:
    log = Path(home) / "argv.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [argv[1:] for argv in map(json.loads, lines) if argv[1:2] == ["run"]]


def _has_workdir(argv: list[str]) -> bool:
    """Whether ``run`` argv sets ``-w`` (flags come in pairs before the command)."""
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] == "-w":
            return True
        i += 2
    return False


@pytest.mark.parametrize("user", ["root", "john.doe"])
def test_a_relative_path_in_run_never_touches_the_directory_pytest_runs_in(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    orbsim_env: dict[str, str],
    user: str,
) -> None:
    monkeypatch.setenv("ORBSIM_USER", user)  # the default user of new machines, as on a Mac
    pytester.makepyfile(CWD_SUITE)
    before = len(_run_calls(orbsim_env["ORBSIM_HOME"]))  # the session's home: earlier tests' runs too
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1)
    made = ["build", "marker", "argv-marker", "cfg.yml", "root-marker"]
    assert [name for name in made if (pytester.path / name).exists()] == []
    runs = _run_calls(orbsim_env["ORBSIM_HOME"])[before:]
    without_w = [argv for argv in runs if not _has_workdir(argv)]
    assert runs
    assert all(argv[-3:] == list(PROBE) for argv in without_w), without_w  # only the readiness probe
    assert_no_leftovers()


NON_ROOT_CONFTEST = """
def pytest_orbstack_provision(machine, config):
    assert machine.run("id -u").stdout.strip() == "501"
    machine.write_text("/etc/provisioned", "yes\\n", user="root")
    machine.write_text("in-home.txt", "home\\n")
    machine.run("sudo mkdir -p /srv/app && sudo chown $(id -un) /srv/app")
"""

NON_ROOT_SUITE = """
import pytest
from pytest_orbstack import CommandFailedError

def test_default_user_is_not_root(orb_vm):
    assert orb_vm.run("id -un").stdout.strip() == orb_vm.user == "john.doe"
    assert orb_vm.run("id -u").stdout.strip() == "501"
    assert orb_vm.run("sudo -n id -u").stdout.strip() == "0"

def test_provisioned_as_the_default_user_and_as_root(orb_vm):
    assert orb_vm.read_text("/etc/provisioned") == "yes\\n"
    assert orb_vm.read_text("in-home.txt") == "home\\n"
    assert orb_vm.run(["stat", "-c", "%U", "/srv/app"]).stdout.strip() == "john.doe"

def test_root_paths_say_user_root(orb_vm):
    with pytest.raises(CommandFailedError) as excinfo:
        orb_vm.write_text("/etc/app.conf", "x")
    assert 'use write_text(\\'/etc/app.conf\\', ..., user="root")' in str(excinfo.value)
    orb_vm.write_text("/etc/app.conf", "x", user="root")
    assert orb_vm.read_text("/etc/app.conf") == "x"
    with pytest.raises(CommandFailedError, match=r"use read_text\\('/etc/shadow', user=\\"root\\"\\)"):
        orb_vm.read_text("/etc/shadow")
    assert "root:" in orb_vm.read_text("/etc/shadow", user="root")

def test_push_and_pull_as_the_default_user(orb_vm, tmp_path):
    (tmp_path / "in.txt").write_text("pushed\\n")
    orb_vm.push(tmp_path / "in.txt", "pushed.txt")  # relative: the default user's home
    assert orb_vm.run(["stat", "-c", "%U", orb_vm.home + "/pushed.txt"]).stdout.strip() == "john.doe"
    orb_vm.pull("pushed.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "pushed\\n"
"""


def test_a_non_root_default_user_works_for_run_push_pull_files_and_provision_hooks(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORBSIM_USER", "john.doe")  # a macOS short name, UID 501
    pytester.makeconftest(NON_ROOT_CONFTEST)
    pytester.makepyfile(NON_ROOT_SUITE)
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=4)
    assert_no_leftovers()


MACHINE_ID_SUITE = """
def test_clones_differ(orb_machines):
    a, b = orb_machines.create_many(2)
    ids = [m.read_text("/etc/machine-id").strip() for m in (a, b)]
    print("MACHINE IDS", ids)
    assert all(len(i) == 32 for i in ids), ids
    assert ids[0] != ids[1]
"""


def test_two_clones_of_one_base_report_different_machine_ids(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(MACHINE_ID_SUITE)
    result = run_pytest("-p", "no:xdist", "--orb-clone", "always", "-s")
    result.assert_outcomes(passed=1)
    assert_no_leftovers()


TMP_CONFTEST = """
def pytest_orbstack_provision(machine, config):
    machine.run("echo seed > /tmp/seed")
    machine.write_text("/var/tmp/kept", "kept", user="root")
"""

TMP_SUITE = """
import pytest

@pytest.mark.parametrize("i", range(2))
def test_fresh(orb_vm_fresh, i):
    assert orb_vm_fresh.read_text("/var/tmp/kept") == "kept"
    assert orb_vm_fresh.run("test -e /tmp/seed", check=False).returncode == 1  # the clone booted afresh

@pytest.mark.orb(image="debian:12")
def test_other_base(orb_vm_fresh):
    assert orb_vm_fresh.read_text("/var/tmp/kept") == "kept"
"""


def test_a_provision_hook_writing_under_tmp_is_warned_about_once(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makeconftest(TMP_CONFTEST)
    pytester.makepyfile(TMP_SUITE)
    result = run_pytest("-p", "no:xdist", "--orb-clone", "always", "-W", "always")
    result.assert_outcomes(passed=3)
    text = result.stdout.str()
    assert text.count("VolatileProvisionWarning: pytest_orbstack_provision ran a command that names") == 1
    assert "sh -c 'echo seed > /tmp/seed'" in text
    assert_no_leftovers()
