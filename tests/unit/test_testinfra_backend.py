"""The ``orb://`` testinfra backend with a recording client: what it asks orbctl, and when it raises."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from fakes import ScriptedOrb, in_turn

testinfra = pytest.importorskip("testinfra")

from pytest_orbstack import testinfra_backend  # noqa: E402 - after the skip: testinfra is optional
from pytest_orbstack.client import CommandResult  # noqa: E402
from pytest_orbstack.errors import (  # noqa: E402
    InvalidSpecError,
    MachineNotFoundError,
    OrbStackNotRunningError,
)
from pytest_orbstack.testinfra_backend import OrbBackend, OrbHostError  # noqa: E402

NOT_FOUND = "[-32098] machine not found: 'web'\n"


def answering(*answers: tuple[int, bytes, bytes], exists: bool = True) -> ScriptedOrb:
    """``run`` answers (exit code, stdout, stderr) in turn; ``info`` finds machine ``web`` or not."""
    replies = in_turn(*answers)

    def run(machine: str, command: Sequence[str], **kwargs: Any) -> CommandResult:
        code, out, err = replies()
        argv = ("orbctl", "run", "-m", machine, *command)
        text, errors = out.decode(errors="replace"), err.decode(errors="replace")
        return CommandResult(argv, code, text, errors, 0.01, stdout_bytes=out, stderr_bytes=err)

    client = ScriptedOrb("web").on("run", run)
    if not exists:
        client.script("info", MachineNotFoundError(["orbctl", "info", "web"], 1, "", NOT_FOUND))
    return client


def runs(client: ScriptedOrb) -> list[tuple[Any, ...]]:
    """The ``run`` calls as (machine, command, user, timeout, check)."""
    return [
        (c.args[0], c.command, c.kwargs.get("user"), c.kwargs.get("timeout"), c.kwargs.get("check"))
        for c in client.asked("run")
    ]


def backend(spec: str, client: ScriptedOrb, **kwargs: Any) -> OrbBackend:
    return OrbBackend(spec, client=client, **kwargs)  # type: ignore[arg-type]


def test_registered_in_testinfra_by_dotted_path() -> None:
    assert testinfra.backend.BACKENDS["orb"] == "pytest_orbstack.testinfra_backend.OrbBackend"
    assert testinfra.backend.get_backend_class("orb") is OrbBackend


def test_run_is_sh_c_of_testinfras_quoted_command_as_the_user() -> None:
    client = answering((0, b"x\n", b""))
    result = backend("root@web", client, timeout="2.5").run("ls -l -- %s", "/;echo inject")
    assert runs(client) == [("web", ["sh", "-c", "ls -l -- '/;echo inject'"], "root", 2.5, False)]
    assert (result.rc, result.stdout, result.command) == (0, "x\n", b"ls -l -- '/;echo inject'")


def test_sudo_wraps_the_command_in_the_machines_sudo() -> None:
    client = answering((0, b"", b""), (0, b"", b""))
    b = backend("web", client, sudo=True)
    b.run("id")
    b.sudo_user = "bob"
    b.run("id")
    assert [call[1][2] for call in runs(client)] == ["sudo /bin/sh -c id", "sudo -u bob /bin/sh -c id"]
    assert [call[2] for call in runs(client)] == [None, None]


def test_output_bytes_reach_testinfra_unchanged() -> None:
    client = answering((5, b"\xff\xfe", b"caf\xc3\xa9\n"))
    result = backend("web", client).run("true")
    assert (result.rc, result.stdout_bytes, result.stderr_bytes) == (5, b"\xff\xfe", b"caf\xc3\xa9\n")


def test_exit_1_with_the_commands_own_stderr_asks_nothing_more() -> None:
    client = answering((1, b"", b"grep: x: No such file\n"))
    assert backend("web", client).run("grep a x").rc == 1
    assert client.verbs() == ["run"]


def test_silent_exit_1_checks_the_machine_once() -> None:
    client = answering((1, b"", b""))
    assert backend("web", client).run("test -e /x").rc == 1
    assert client.said()[1:] == [("info", "web")]


def test_silent_exit_1_of_a_missing_machine_raises() -> None:
    client = answering((1, b"", b""), exists=False)
    with pytest.raises(OrbHostError, match=r"orb://web: machine 'web' does not exist \(orbctl: \[-32098\]"):
        backend("web", client).run("test -e /x")


def test_orbctl_error_text_raises_without_asking_info() -> None:
    client = answering((1, b"", NOT_FOUND.encode()))
    with pytest.raises(MachineNotFoundError) as excinfo:
        backend("alice@web", client).run("true")
    assert str(excinfo.value).startswith("Unexpected exit code 1 for CommandResult(")
    assert "orb://alice@web: machine 'web' does not exist" in str(excinfo.value)
    assert client.verbs() == ["run"]


def test_orbstack_not_running_raises_its_own_error() -> None:
    client = answering((1, b"", b"[-32098] start VM: timed out waiting for VM to start\n"))
    with pytest.raises(OrbStackNotRunningError):
        backend("web", client).run("true")


@pytest.mark.parametrize(
    ("spec", "field"),
    [("bad_name", "orb:// machine"), ("-x", "orb:// machine"), ("Bad User@web", "user")],
)
def test_bad_host_spec_is_refused_before_any_call(spec: str, field: str) -> None:
    client = answering()
    with pytest.raises(InvalidSpecError) as excinfo:
        backend(spec, client)
    assert excinfo.value.field == field
    assert client.received == []


def test_a_password_in_the_spec_is_refused_and_not_shown() -> None:
    with pytest.raises(InvalidSpecError) as excinfo:
        backend("alice:s3cret@web", answering())
    assert "s3cret" not in str(excinfo.value)
    assert "orbctl takes no password" in str(excinfo.value)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_bad_timeout_is_refused(value: str) -> None:
    with pytest.raises(InvalidSpecError, match="a finite number of seconds > 0"):
        backend("web", answering(), timeout=value)


def test_get_host_parses_the_spec_and_uses_the_client_factory() -> None:
    client = answering((0, b"web\n", b""))
    previous = testinfra_backend.use_client(lambda: client)  # type: ignore[arg-type,return-value]
    try:
        host = testinfra.get_host("orb://alice@unit-web?timeout=7")
        assert host.check_output("hostname") == "web"
        assert host.backend.get_pytest_id() == "orb://alice@unit-web"
    finally:
        testinfra_backend.use_client(previous)
    assert runs(client) == [("unit-web", ["sh", "-c", "hostname"], "alice", 7.0, False)]
