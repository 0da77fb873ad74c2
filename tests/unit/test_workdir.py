"""Where commands run in a machine, user names, root paths: the Mac differences, with fake clients.

``orbctl run`` without ``-w`` runs in the Mac's current directory (shared into
the machine), so :class:`Machine` always passes ``-w``: the user's Linux home,
learnt from the readiness probe (no extra orbctl call per command).
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any, Optional

import pytest
from fakes import RUNNING, Call, ScriptedOrb, machine_on, reply

from pytest_orbstack import commands
from pytest_orbstack.errors import InvalidSpecError, MachineNotFoundError
from pytest_orbstack.machine import Machine
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.readiness import PROBE, wait_ready
from pytest_orbstack.results import CommandFailedError, RunResult

#: what a command that printed nothing and succeeded returns
OK = reply(0)


def homes_client(homes: Optional[dict[Optional[str], str]] = None, answer: RunResult = OK) -> ScriptedOrb:
    """Answers the home probe per user from ``homes`` (an unknown user: the probe fails), then ``answer``."""
    known = {} if homes is None else homes

    def run(machine: str, command: list[str], **kwargs: Any) -> Any:
        if list(command) == list(PROBE):
            user = kwargs.get("user")
            if user not in known:
                return reply(1, "", "no such user")
            return reply(0, known[user] + "\n", "")
        return answer

    return ScriptedOrb(RUNNING.name).script("info", RUNNING).on("run", run)


def commands_run(client: ScriptedOrb) -> list[Call]:
    return [c for c in client.asked("run") if c.command != list(PROBE)]


def probes(client: ScriptedOrb) -> list[Call]:
    return [c for c in client.asked("run") if c.command == list(PROBE)]


def machine(client: ScriptedOrb, home: Optional[str] = "/home/alice", user: Optional[str] = None) -> Machine:
    info = RUNNING if home is None else dataclasses.replace(RUNNING, home=home)
    return machine_on(client, RUNNING.name, MachineSpec("ubuntu:22.04", user=user), info)


# --- the home, from the readiness probe -------------------------------------------------------


def test_readiness_probe_prints_the_home_and_the_info_carries_it() -> None:
    client = homes_client({None: "/home/john.doe"})
    info = wait_ready(client, RUNNING.name, 5, started=True, sleep=lambda s: None)
    assert info.home == "/home/john.doe"
    assert info.ip4 == RUNNING.ip4
    assert [c.command for c in client.asked("run")] == [list(PROBE)]
    assert client.asked("run")[0].kwargs.get("workdir") is None  # the probe itself only prints


def test_a_probe_that_prints_no_absolute_path_leaves_the_home_unknown() -> None:
    client = homes_client({None: ""})
    assert wait_ready(client, RUNNING.name, 5, started=True, sleep=lambda s: None).home is None


def test_orbctl_info_never_has_a_home() -> None:
    assert RUNNING.home is None
    assert dataclasses.replace(RUNNING, home="/home/x") == RUNNING  # not part of equality


# --- the default workdir ----------------------------------------------------------------------


def test_commands_run_in_the_default_users_home_without_any_extra_call() -> None:
    client = homes_client()
    vm = machine(client)
    vm.run("rm -rf build")
    vm.run(["ls"])
    vm.write_text("cfg.yml", "a: 1\n")
    vm.read_text("cfg.yml")
    assert [c.kwargs["workdir"] for c in commands_run(client)] == ["/home/alice"] * 4
    assert probes(client) == []
    assert vm.home == "/home/alice"


def test_workdir_argument_still_wins() -> None:
    client = homes_client()
    machine(client).run("pwd", workdir="/srv")
    assert commands_run(client)[0].kwargs["workdir"] == "/srv"


def test_root_runs_in_root_home_without_a_lookup() -> None:
    client = homes_client()
    machine(client).run("pwd", user="root")
    assert commands_run(client)[0].kwargs["workdir"] == "/root"
    assert probes(client) == []


def test_the_spec_user_is_the_default_user() -> None:
    client = homes_client()
    machine(client, user="alice").run("pwd", user="alice")
    assert commands_run(client)[0].kwargs["workdir"] == "/home/alice"
    assert probes(client) == []


def test_another_users_home_is_asked_once_as_that_user() -> None:
    client = homes_client({"bob": "/srv/bob"})
    vm = machine(client)
    vm.run("pwd", user="bob")
    vm.run("pwd", user="bob")
    assert [c.kwargs["workdir"] for c in commands_run(client)] == ["/srv/bob", "/srv/bob"]
    [probe] = probes(client)
    assert (probe.kwargs["user"], probe.kwargs["workdir"]) == (
        "bob",
        "/",
    )  # the look-up never runs in the host's cwd


def test_a_user_that_does_not_exist_yet_runs_in_root_dir_and_is_asked_again() -> None:
    homes: dict[Optional[str], str] = {}  # the probe fails: no such user (yet)
    client = homes_client(homes)
    vm = machine(client)
    vm.run("true", user="bob", check=False)
    homes["bob"] = "/home/bob"  # the test added bob
    vm.run("true", user="bob")
    vm.run("true", user="bob")
    assert [c.kwargs["workdir"] for c in commands_run(client)] == ["/", "/home/bob", "/home/bob"]
    assert len(probes(client)) == 2


def test_a_home_that_is_no_absolute_path_means_root_dir_asked_once() -> None:
    client = homes_client({None: ""})
    vm = machine(client, home=None)
    vm.run("true")
    vm.run("true")
    assert [c.kwargs["workdir"] for c in commands_run(client)] == ["/", "/"]
    assert len(probes(client)) == 1


def test_the_default_user_named_explicitly_needs_no_lookup() -> None:
    client = homes_client()
    machine(client).run("pwd", user=RUNNING.default_username)
    assert commands_run(client)[0].kwargs["workdir"] == "/home/alice"
    assert probes(client) == []


def test_unknown_default_home_is_looked_up_once() -> None:
    client = homes_client({None: "/home/alice"})
    vm = machine(client, home=None)
    assert vm.home == "/home/alice"
    vm.run("true")
    assert commands_run(client)[0].kwargs["workdir"] == "/home/alice"
    assert len(probes(client)) == 1


def test_a_lookup_that_fails_on_orbctl_is_not_remembered() -> None:
    gone = MachineNotFoundError(["orbctl", "run"], 1, "", "machine not found: 'x'")
    client = ScriptedOrb(RUNNING.name).script("run", gone, reply(0, "/home/alice\n"))
    vm = machine(client, home=None)
    assert vm.home == "/"
    assert vm.home == "/home/alice"


def test_restart_keeps_a_home_learnt_and_info_refresh_does_not_lose_it() -> None:
    vm = machine(homes_client())
    vm.info()  # orbctl info has no home
    assert vm.home == "/home/alice"


# --- root paths -------------------------------------------------------------------------------


def test_permission_denied_in_write_text_hints_user_root() -> None:
    client = homes_client(answer=reply(1, "", "sh: 1: cannot create /etc/app.conf: Permission denied\n"))
    with pytest.raises(CommandFailedError) as excinfo:
        machine(client).write_text("/etc/app.conf", "x")
    message = str(excinfo.value)
    assert message.splitlines()[-1] == (
        "  hint: /etc/app.conf is not accessible to the default user: "
        "use write_text('/etc/app.conf', ..., user=\"root\")"
    )
    assert excinfo.value.returncode == 1


def test_permission_denied_in_read_text_hints_user_root() -> None:
    client = homes_client(answer=reply(1, "", "cat: /etc/shadow: Permission denied\n"))
    with pytest.raises(CommandFailedError, match=r"use read_text\('/etc/shadow', user=\"root\"\)"):
        machine(client).read_text("/etc/shadow", user="alice")


def test_no_hint_as_root_or_for_other_errors() -> None:
    for answer, user in [
        (reply(1, "", "Permission denied"), "root"),
        (reply(1, "", "No such file or directory"), None),
    ]:
        with pytest.raises(CommandFailedError) as excinfo:
            machine(homes_client(answer=answer)).read_text("/x", user=user)
        assert "hint:" not in str(excinfo.value)


def test_user_argument_reaches_orbctl() -> None:
    client = homes_client()
    machine(client).write_text("/etc/app.conf", "x", user="root")
    assert commands_run(client)[0].kwargs["user"] == "root"
    assert commands_run(client)[0].kwargs["input"] == "x"


# --- user names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["john.doe", "John", "j_doe-2", "_svc", "a", "x" * 32, "1st"])
def test_macos_short_names_are_valid_users(name: str) -> None:
    assert commands.validate_user(name) == name
    assert commands.run("m1", ["true"], user=name) == ["run", "-m", "m1", "-u", name, "true"]
    assert commands.create("ubuntu", "m1", user=name)[1:3] == ["-u", name]


@pytest.mark.parametrize("name", ["", "-u", "bob smith", "a/b", "x" * 33, "1000", ".", "..", "é"])
def test_bad_users_are_refused_saying_what_is_allowed(name: str) -> None:
    with pytest.raises(InvalidSpecError) as excinfo:
        commands.validate_user(name)
    assert "letters, digits, '_', '.', '-'" in str(excinfo.value)


# --- provision hooks that write under /tmp or /run -----------------------------------------------


@pytest.mark.parametrize(
    ("command", "noted"),
    [
        ("curl -o /tmp/x.deb https://example.test/x.deb", True),
        ("echo 1 > /run/app.pid", True),
        ("cd /tmp && make", True),
        ("cp a /tmp", True),
        ("echo ok > /var/tmp/keep", False),
        ("mkdir -p ~/tmp/a", False),
        ("ls /runner/work", False),
        ("cat /etc/tmpfiles.d/x.conf", False),
    ],
)
def test_commands_naming_tmp_or_run_are_noted_while_watching(command: str, noted: bool) -> None:
    vm = machine(homes_client())
    vm.run(command)  # not watching: nothing noted
    vm.watch_volatile()
    vm.run(command)
    assert vm.volatile_commands() == ([shlex.join(["sh", "-c", command])] if noted else [])
    assert vm.volatile_commands() == []  # stopped watching


def test_write_text_and_push_under_tmp_are_noted(tmp_path: Path) -> None:
    vm = machine(homes_client())
    vm.watch_volatile()
    vm.write_text("/tmp/seed.txt", "x")
    vm.push(tmp_path, "/run/app")
    vm.push(tmp_path, "/opt/app")
    noted = vm.volatile_commands()
    assert len(noted) == 2
    assert "/tmp/seed.txt" in noted[0]
    assert noted[1] == f"push {tmp_path} /run/app"


def test_push_and_pull_take_a_timeout_to_the_client(tmp_path: Path) -> None:
    orb = ScriptedOrb("m1")
    vm = machine_on(orb)
    vm.push(tmp_path, "/opt/app", timeout=12)
    vm.pull("/etc/hostname", tmp_path)
    assert [(call.verb, call.kwargs) for call in orb.received if call.verb in ("push", "pull")] == [
        ("push", {"timeout": 12}),
        ("pull", {"timeout": None}),  # the client's default: Timeouts.run
    ]
