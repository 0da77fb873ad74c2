"""The orbctl client: a real fake-orbctl executable per test, and the classifier over real error texts."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeOrbctl, ScriptedOrb, machine_on

from pytest_orbstack import (
    CommandResult,
    InvalidSpecError,
    MachineNotFoundError,
    OrbctlClient,
    OrbctlCommandError,
    OrbctlTimeoutError,
    OrbStackNotRunningError,
    OrbVersion,
    Timeouts,
    find_orbctl,
    runner,
)
from pytest_orbstack import client as client_module
from pytest_orbstack.client import classify
from pytest_orbstack.errors import (
    ImageNotFoundError,
    InvalidMachineNameError,
    MachineExistsError,
    OrbctlNotFoundError,
    OrbctlParseError,
    TransientOrbctlError,
    UnsupportedFeatureError,
)
from pytest_orbstack.results import CommandFailedError

DATA = Path(__file__).resolve().parent.parent / "data"
SECRET = "s3cr3t-value-do-not-leak"

# --- classify: one case per real error text in the spec ------------------------------------------

USAGE = "\nUsage:\n  orbctl create [flags] DISTRO[:VERSION] [NAME]\n"


def fails(argv: list[str], stderr: str, expected: type[Exception]) -> tuple[Any, ...]:
    """A case of orbctl exiting 1 with nothing on stdout."""
    return (argv, 1, "", stderr, expected)


@pytest.mark.parametrize(
    ("argv", "code", "stdout", "stderr", "expected"),
    [
        fails(["info", "web"], "[-32098] machine not found: 'web'\n", MachineNotFoundError),
        fails(["info", "web"], "[-32098] machine not found\n", MachineNotFoundError),  # 1.x
        fails(["delete", "-f", "a1", "x1"], "[-32098] machine not found: 'x1'\n", MachineNotFoundError),
        fails(
            ["create", "ubuntu", "web"],
            "[-32098] create 'web': machine already exists: 'web'\n",
            MachineExistsError,
        ),
        fails(
            ["create", "ubuntu", "web"],
            "[-32098] create 'web': invalid machine name 'web'\n",
            InvalidMachineNameError,
        ),
        fails(
            ["create", "ubuntu:focal", "web"],
            "[-32098] create 'web': make rootfs: image not found: {ubuntu focal arm64 default}\n",
            ImageNotFoundError,
        ),
        fails(
            ["create", "ubuntu:99.04", "web"],
            "[-32098] create 'web': make rootfs: image not found: {ubuntu 99.04 arm64 default}\n",
            ImageNotFoundError,
        ),
        fails(["create", "windows"], "Error: invalid distro: windows" + USAGE, ImageNotFoundError),
        fails(
            ["create", "ubuntu", "web"],
            "[-32098] create 'web': setup: machine didn't start in 30s (missing IP address)\n",
            TransientOrbctlError,
        ),
        fails(
            ["create", "ubuntu", "web"],
            "[-32098] create 'web': make rootfs: download metadata: GET download status: 502 Bad Gateway\n",
            TransientOrbctlError,
        ),
        fails(
            ["list", "-f", "json"], "start VM: timed out waiting for VM to start\n", OrbStackNotRunningError
        ),
        fails(["list", "-f", "json"], "timed out waiting for services to start\n", TransientOrbctlError),
        fails(
            ["delete", "-f", "web"],
            "[-32098] cannot transition from creating to deleting\n",
            TransientOrbctlError,
        ),
        fails(
            ["start", "web"], "[-32098] cannot transition from creating to starting\n", TransientOrbctlError
        ),
        (["status"], 1, "Stopped\n", "", OrbStackNotRunningError),
        (["status"], 2, "Starting\n", "", TransientOrbctlError),
        # everything else is the base class
        fails(["create", "-a", "x", "ubuntu"], "Error: invalid architecture: x" + USAGE, OrbctlCommandError),
        fails(["info"], "Error: accepts 1 arg(s), received 0" + USAGE, OrbctlCommandError),
        fails(["list", "--foo"], "Error: unknown flag: --foo" + USAGE, OrbctlCommandError),
        fails(["list", "-x"], "Error: unknown shorthand flag: 'x' in -x" + USAGE, OrbctlCommandError),
        fails(["create", "-a"], "Error: flag needs an argument: --arch" + USAGE, OrbctlCommandError),
        fails(["foo"], 'Error: unknown command "foo" for "orbctl"\n', OrbctlCommandError),
        fails(["delete"], "Error: no machines specified" + USAGE, OrbctlCommandError),
        fails(["list", "-f", "yaml"], "Error: invalid format: yaml\n", OrbctlCommandError),
        fails(["run", "--", "ls"], "Error: unknown flag --\n", OrbctlCommandError),
        fails(
            ["create", "-c", "/x.yml", "ubuntu"],
            "open /x.yml: no such file or directory\n",
            OrbctlCommandError,
        ),
        fails(
            ["push", "-m", "web", "/nope"],
            "cp: cannot stat '/mnt/mac/nope': No such file or directory\n",
            OrbctlCommandError,
        ),
        fails(["run", "-m", "nosuch", "true"], "", OrbctlCommandError),  # unknown -m, no message
        (["status"], 3, "", "", OrbctlCommandError),
    ],
)
def test_classify(argv: list[str], code: int, stdout: str, stderr: str, expected: type[Exception]) -> None:
    full = ["/usr/local/bin/orbctl", *argv]
    error = classify(full, code, stdout, stderr)
    assert type(error) is expected
    assert (error.argv, error.returncode, error.stdout, error.stderr) == (full, code, stdout, stderr)
    assert f"command: {shlex.join(full)}" in str(error)
    assert f"exit code: {code}" in str(error)


def test_error_message_shows_command_exit_code_stdout_and_stderr() -> None:
    error = classify(["orbctl", "info", "web"], 1, "partial out\n", "[-32098] machine not found: 'web'\n")
    text = str(error)
    assert (
        text.splitlines()[0] == "orbctl info web failed with exit code 1: [-32098] machine not found: 'web'"
    )
    assert "stdout: partial out" in text
    assert "stderr: [-32098] machine not found: 'web'" in text


# --- find_orbctl ---------------------------------------------------------------------------------


def test_find_orbctl_precedence(fake_orbctl: FakeOrbctl, tmp_path: Path) -> None:
    other = tmp_path / "other" / "orbctl"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    env = {"ORBCTL": str(other), "PATH": str(fake_orbctl.dir)}
    assert find_orbctl(str(fake_orbctl.path), env) == str(fake_orbctl.path)  # --orb-orbctl first
    assert find_orbctl(None, env) == str(other)  # then $ORBCTL
    assert find_orbctl(None, {"PATH": str(fake_orbctl.dir)}) == str(fake_orbctl.path)  # then PATH
    assert find_orbctl("orbctl", {"PATH": str(fake_orbctl.dir)}) == str(fake_orbctl.path)  # a bare name


@pytest.mark.parametrize(
    ("explicit", "env", "names"),
    [
        (None, {"PATH": "/nonexistent"}, ["--orb-orbctl", "$ORBCTL", "PATH"]),
        ("/nonexistent/orbctl", {"PATH": "/nonexistent"}, ["--orb-orbctl", "/nonexistent/orbctl", "$ORBCTL"]),
        (
            None,
            {"ORBCTL": "/nonexistent/orbctl", "PATH": "/nonexistent"},
            ["$ORBCTL", "--orb-orbctl", "PATH"],
        ),
    ],
)
def test_find_orbctl_not_found(explicit: str | None, env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(OrbctlNotFoundError) as excinfo:
        find_orbctl(explicit, env)
    message = str(excinfo.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_find_orbctl_uses_process_environment(
    monkeypatch: pytest.MonkeyPatch, fake_orbctl: FakeOrbctl
) -> None:
    monkeypatch.setenv("ORBCTL", str(fake_orbctl.path))
    assert find_orbctl() == str(fake_orbctl.path)


# --- Timeouts ------------------------------------------------------------------------------------


def test_timeout_defaults() -> None:
    t = Timeouts()
    assert (t.query, t.lifecycle, t.create, t.clone, t.run) == (30.0, 120.0, 600.0, 300.0, 3600.0)


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), None, True, "30"])
def test_timeouts_must_be_finite_positive(bad: Any) -> None:
    with pytest.raises(InvalidSpecError):
        Timeouts(query=bad)
    with pytest.raises(InvalidSpecError):
        OrbctlClient("/bin/true").execute(["status"], timeout=bad)


class Recording(OrbctlClient):
    """Records (args, timeout, env) instead of running anything; answers from ``replies``."""

    def __init__(self, replies: dict[str, str] | None = None, timeouts: Timeouts | None = None) -> None:
        super().__init__("orbctl", timeouts)
        self.replies = replies or {}
        self.calls: list[tuple[list[str], float, dict[str, str] | None]] = []

    def execute(self, args: Sequence[str], *, timeout: float, **kwargs: Any) -> CommandResult:
        self.calls.append((list(args), timeout, kwargs.get("env")))
        return CommandResult(("orbctl", *args), 0, self.replies.get(args[0], ""), "", 0.0)


def test_each_operation_uses_its_timeout() -> None:
    t = Timeouts(query=1, lifecycle=2, create=3, clone=4, run=5)
    client = Recording(
        {
            "version": "Version: 2.2.0 (2020000)\n",
            "list": "[]",
            "info": (DATA / "info_v1_bare.json").read_text(),
        },
        t,
    )
    client.status()
    client.list()
    client.info("m1")
    client.logs("m1")
    client.create("ubuntu", "m1")
    client.start("m1")
    client.stop("m1")
    client.restart("m1")
    client.delete("m1")
    client.rename("m1", "m2")
    client.clone("m1", "m3")
    client.run("m1", ["true"])
    client.push("m1", ["a"])
    client.pull("m1", ["a"])
    client.run("m1", ["true"], timeout=7)
    client.create("ubuntu", "m4", timeout=8)
    client.push("m1", ["a"], timeout=9)
    client.pull("m1", ["a"], timeout=10)
    got = [(args[0], timeout) for args, timeout, _ in client.calls]
    assert got == [
        ("status", 1), ("list", 1), ("info", 1), ("logs", 1),
        ("create", 3), ("start", 2), ("stop", 2), ("restart", 2), ("delete", 2), ("rename", 2),
        ("version", 1), ("clone", 4), ("run", 5), ("push", 5), ("pull", 5), ("run", 7), ("create", 8),
        ("push", 9), ("pull", 10),
    ]  # fmt: skip


# --- execute against a real executable -----------------------------------------------------------


def test_execute_success(fake_orbctl: FakeOrbctl, caplog: pytest.LogCaptureFixture) -> None:
    fake_orbctl.answer("list", stdout="[]\n", stderr="note\n")
    client = OrbctlClient(str(fake_orbctl.path))
    with caplog.at_level(logging.DEBUG, logger="pytest_orbstack.client"):
        result = client.execute(["list", "-f", "json"], timeout=30)
    assert result.args == (str(fake_orbctl.path), "list", "-f", "json")
    assert (result.returncode, result.stdout, result.stderr) == (0, "[]\n", "note\n")
    assert result.duration > 0
    assert shlex.join([str(fake_orbctl.path), "list", "-f", "json"]) in caplog.text
    (call,) = fake_orbctl.calls()
    assert call["argv"] == ["list", "-f", "json"]
    assert call["stdin"] == "/dev/null"  # never a terminal: orbctl would prompt


def test_execute_input_goes_to_stdin(fake_orbctl: FakeOrbctl) -> None:
    OrbctlClient(str(fake_orbctl.path)).execute(["run", "-m", "m1", "cat"], timeout=30, input="héllo\n")
    assert fake_orbctl.calls()[0]["input"] == "héllo\n"


def test_execute_decodes_bad_utf8_with_replacement(fake_orbctl: FakeOrbctl) -> None:
    fake_orbctl.answer(stdout_hex=b"ok \xff\xfe end".hex())
    result = OrbctlClient(str(fake_orbctl.path)).execute(["logs", "m1"], timeout=30)
    assert result.stdout == "ok \ufffd\ufffd end"
    assert result.stdout_bytes == b"ok \xff\xfe end"  # the exact bytes stay available


def test_execute_failure_is_classified(fake_orbctl: FakeOrbctl) -> None:
    fake_orbctl.answer(stderr="[-32098] machine not found: 'm1'\n", code=1)
    client = OrbctlClient(str(fake_orbctl.path))
    with pytest.raises(MachineNotFoundError) as excinfo:
        client.execute(["info", "m1", "-f", "json"], timeout=30)
    assert excinfo.value.returncode == 1
    assert excinfo.value.argv == [str(fake_orbctl.path), "info", "m1", "-f", "json"]
    result = client.execute(["info", "m1", "-f", "json"], timeout=30, check=False)
    assert result.returncode == 1
    assert "machine not found" in result.stderr


def test_execute_env_is_added_to_the_environment(
    fake_orbctl: FakeOrbctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEP_ME", "yes")
    OrbctlClient(str(fake_orbctl.path)).execute(["status"], timeout=30, env={"EXTRA": "1"})
    env = fake_orbctl.calls()[0]["env"]
    assert env["EXTRA"] == "1"
    assert env["KEEP_ME"] == "yes"


def test_timeout_kills_the_whole_process_group(fake_orbctl: FakeOrbctl) -> None:
    fake_orbctl.answer("create", stdout="partial out\n", stderr="partial err\n", sleep=60, grandchild=True)
    client = OrbctlClient(str(fake_orbctl.path))
    with pytest.raises(OrbctlTimeoutError) as excinfo:
        client.execute(["create", "ubuntu", "m1"], timeout=1.5)
    error = excinfo.value
    assert error.timeout == 1.5
    assert error.returncode is None
    assert error.stdout == "partial out\n"
    assert error.stderr == "partial err\n"
    assert "did not finish within 1.5s" in str(error)
    pid = fake_orbctl.grandchild_pid()
    assert pid is not None
    assert not fake_orbctl.sleep_alive(pid), "the grandchild holding the pipe survived the timeout"
    assert not is_alive(fake_orbctl.calls()[0]["pid"])


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_interrupt_kills_the_process_group(fake_orbctl: FakeOrbctl, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_orbctl.answer(sleep=60, grandchild=True)
    original = runner._collect
    interrupted: list[bool] = []

    def collect(*args: Any, **kwargs: Any) -> Any:
        if not interrupted:
            interrupted.append(True)
            deadline = time.monotonic() + 30
            while fake_orbctl.grandchild_pid() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "_collect", collect)
    with pytest.raises(KeyboardInterrupt):
        OrbctlClient(str(fake_orbctl.path)).execute(["status"], timeout=30)
    pid = fake_orbctl.grandchild_pid()
    assert pid is not None
    assert not fake_orbctl.sleep_alive(pid)


def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(OrbctlNotFoundError) as excinfo:
        OrbctlClient(str(tmp_path / "nope")).status()
    message = str(excinfo.value)
    assert "\n" not in message
    assert "--orb-orbctl" in message
    assert "$ORBCTL" in message
    assert "PATH" in message


def test_binary_not_executable(tmp_path: Path) -> None:
    path = tmp_path / "orbctl"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o644)  # no execute bit: not even root may run it
    with pytest.raises(OrbctlNotFoundError, match="--orb-orbctl"):
        OrbctlClient(str(path)).version()


# --- high-level methods against the fake ---------------------------------------------------------


@pytest.mark.parametrize(("code", "word"), [(0, "Running"), (1, "Stopped"), (2, "Starting")])
def test_status_returns_the_word(fake_orbctl: FakeOrbctl, code: int, word: str) -> None:
    fake_orbctl.answer("status", stdout=word + "\n", code=code)
    client = OrbctlClient(str(fake_orbctl.path))
    assert client.status() == word


def test_status_raises_on_other_failures(fake_orbctl: FakeOrbctl) -> None:
    fake_orbctl.answer("status", stderr="boom\n", code=1)
    with pytest.raises(OrbctlCommandError, match="boom"):
        OrbctlClient(str(fake_orbctl.path)).status()


def test_version_is_parsed_and_cached(fake_orbctl: FakeOrbctl) -> None:
    fake_orbctl.answer("version", stdout=(DATA / "version_2.0.4.txt").read_text())
    client = OrbctlClient(str(fake_orbctl.path))
    assert client.version() == OrbVersion(2, 0, 4)
    assert client.version().build == 2000400
    assert fake_orbctl.argvs() == [["version"]]
    fake_orbctl.answer("version", stdout="nonsense")
    with pytest.raises(OrbctlParseError):
        OrbctlClient(str(fake_orbctl.path)).version()


def test_list_and_info_parse(fake_orbctl: FakeOrbctl) -> None:
    fake_orbctl.answer("list", stdout=(DATA / "list_v2.json").read_text())
    fake_orbctl.answer("info", stdout=(DATA / "info_v2_running.json").read_text())
    client = OrbctlClient(str(fake_orbctl.path))
    assert [m.name for m in client.list()] == ["web-server", "worker.1"]
    assert client.info("web-server").ip4 == "192.168.139.76"
    assert fake_orbctl.argvs() == [["list", "-f", "json"], ["info", "web-server", "-f", "json"]]


def test_create_sends_flags_and_asks_version_only_for_gated_flags(
    fake_orbctl: FakeOrbctl, tmp_path: Path
) -> None:
    fake_orbctl.answer("version", stdout="Version: 2.2.1 (2020100)\n")
    user_data = tmp_path / "user data; $(x).yaml"
    user_data.write_text("#cloud-config\n")
    client = OrbctlClient(str(fake_orbctl.path))
    client.create("ubuntu:22.04", "m1", arch="amd64", user="tester", user_data=user_data)
    client.create("debian", "m2", cpus=2, memory="4G", isolated=True)
    assert fake_orbctl.argvs() == [
        ["create", "-a", "amd64", "-u", "tester", "-c", str(user_data), "ubuntu:22.04", "m1"],
        ["version"],
        ["create", "--cpus", "2", "--memory", "4G", "--isolated", "debian", "m2"],
    ]


def test_create_refuses_before_running_orbctl(fake_orbctl: FakeOrbctl, tmp_path: Path) -> None:
    fake_orbctl.answer("version", stdout="Version: 2.0.4 (2000400)\n")
    client = OrbctlClient(str(fake_orbctl.path))
    with pytest.raises(InvalidSpecError, match="readable"):
        client.create("ubuntu", "m1", user_data=tmp_path / "missing.yaml")
    with pytest.raises(InvalidSpecError, match="machine name"):
        client.create("ubuntu", "vm")
    with pytest.raises(UnsupportedFeatureError, match=re.escape("--disk needs OrbStack >= 2.2.0")):
        client.create("ubuntu", "m1", disk="10G")
    assert fake_orbctl.argvs() == [["version"]]


def test_lifecycle_commands(fake_orbctl: FakeOrbctl) -> None:
    fake_orbctl.answer("version", stdout="Version: 2.0.4 (2000400)\n")
    fake_orbctl.answer("logs", stdout="boot ok\n")
    client = OrbctlClient(str(fake_orbctl.path))
    client.start("m1", "m2")
    client.stop("m1", force=True)
    client.restart("m1")
    client.delete()  # no names: nothing sent
    client.delete("m1", "m2")
    client.clone("m1", "m3")
    client.rename("m3", "m4")
    client.push("m1", ["/tmp/a b"], "dest")
    client.pull("m1", ["/etc/hostname"], "/tmp")
    assert client.logs("m1", all_logs=True) == "boot ok\n"
    assert fake_orbctl.argvs() == [
        ["start", "m1", "m2"], ["stop", "-f", "m1"], ["restart", "m1"], ["delete", "-f", "m1", "m2"],
        ["version"], ["clone", "m1", "m3"], ["rename", "m3", "m4"],
        ["push", "-m", "m1", "/tmp/a b", "dest"], ["pull", "-m", "m1", "/etc/hostname", "/tmp"],
        ["logs", "m1", "-a"],
    ]  # fmt: skip


def test_clone_needs_orbstack_2(fake_orbctl: FakeOrbctl) -> None:
    fake_orbctl.answer("version", stdout="Version: 1.11.3 (1110300)\n")
    with pytest.raises(UnsupportedFeatureError, match=re.escape("clone needs OrbStack >= 2.0.0")):
        OrbctlClient(str(fake_orbctl.path)).clone("m1", "m2")
    assert fake_orbctl.argvs() == [["version"]]


# --- run -----------------------------------------------------------------------------------------


def test_run_env_values_never_in_argv_logs_or_errors(
    fake_orbctl: FakeOrbctl, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ORBENV", "ALREADY:")
    fake_orbctl.answer("run", stdout="out\n", stderr="err\n", code=3)
    client = OrbctlClient(str(fake_orbctl.path))
    with (
        caplog.at_level(logging.DEBUG, logger="pytest_orbstack.client"),
        pytest.raises(OrbctlCommandError) as exc,
    ):
        client.run("m1", ["sh", "-c", 'echo "$TOKEN"'], env={"TOKEN": SECRET, "ALREADY": "x"})
    (call,) = fake_orbctl.calls()
    assert call["env"]["TOKEN"] == SECRET
    assert call["env"]["ORBENV"] == "ALREADY:TOKEN"
    assert call["argv"] == ["run", "-m", "m1", "sh", "-c", 'echo "$TOKEN"']
    assert SECRET not in " ".join(call["argv"])
    assert SECRET not in caplog.text
    assert SECRET not in str(exc.value)
    assert SECRET not in repr(exc.value.argv)


def test_run_result_and_check(fake_orbctl: FakeOrbctl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORBENV", raising=False)
    fake_orbctl.answer("run", stdout="hello\n", stderr="warn\n", code=7)
    client = OrbctlClient(str(fake_orbctl.path))
    result = client.run("m1", ["false"], user="root", workdir="/srv", check=False, input="data")
    assert (result.returncode, result.stdout, result.stderr) == (7, "hello\n", "warn\n")
    assert result.duration > 0
    assert fake_orbctl.calls()[0]["input"] == "data"
    with pytest.raises(OrbctlCommandError) as excinfo:
        client.run("m1", ["false"])
    text = str(excinfo.value)
    assert "command: " + shlex.join([str(fake_orbctl.path), "run", "-m", "m1", "false"]) in text
    assert "exit code: 7" in text
    assert "stdout: hello" in text
    assert "stderr: warn" in text
    assert "ORBENV" not in fake_orbctl.calls()[1]["env"]  # no env given: no ORBENV added


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"1BAD": "x"}, "env name"),
        ({"A-B": "x"}, "env name"),
        ({"ORBENV": "x"}, "env name"),
        ({"OK": "a\0" + SECRET}, "env value"),
        ({"OK": 5}, "env value"),
    ],
)
def test_run_bad_env_is_refused_without_showing_values(
    fake_orbctl: FakeOrbctl, env: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidSpecError) as excinfo:
        OrbctlClient(str(fake_orbctl.path)).run("m1", ["true"], env=env)
    assert excinfo.value.field == field
    assert SECRET not in str(excinfo.value)
    assert fake_orbctl.calls() == []


def test_run_uses_a_finite_default_timeout(fake_orbctl: FakeOrbctl) -> None:
    fake_orbctl.answer("run", sleep=60)
    client = OrbctlClient(str(fake_orbctl.path), Timeouts(run=1))
    with pytest.raises(OrbctlTimeoutError) as excinfo:
        client.run("m1", ["sleep", "60"])
    assert excinfo.value.timeout == 1


def test_client_repr_names_the_binary() -> None:
    assert repr(OrbctlClient("/opt/orbctl")) == "OrbctlClient('/opt/orbctl')"


def test_a_directory_is_not_an_orbctl(tmp_path: Path) -> None:
    with pytest.raises(OrbctlNotFoundError, match="--orb-orbctl"):
        OrbctlClient(str(tmp_path)).status()


def test_other_os_errors_are_not_disguised_as_a_missing_orbctl(
    fake_orbctl: FakeOrbctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    def popen(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(OSError, match="Too many open files") as excinfo:
        OrbctlClient(str(fake_orbctl.path)).status()
    assert not isinstance(excinfo.value, OrbctlNotFoundError)


# --- hard limits: bounded output, a deadline for the whole call ---------------------------------


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "orbctl"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_output_keeps_a_bounded_tail_and_counts_what_was_dropped(tmp_path: Path) -> None:
    binary = _script(tmp_path, "seq 1 200000\nseq 1 100 >&2\n")
    client = OrbctlClient(binary, output_limit=1000)
    result = client.execute(["run"], timeout=60)
    expected = "".join(f"{n}\n" for n in range(1, 200001))
    assert result.stdout == expected[-1000:]
    assert result.stdout_dropped == len(expected) - 1000
    assert result.stderr == "".join(f"{n}\n" for n in range(1, 101))
    assert result.stderr_dropped == 0
    small = client.execute(["run"], timeout=60, output_limit=10)
    assert small.stdout == expected[-10:]
    assert small.stderr_dropped == 292 - 10


def test_a_flood_of_output_is_killed_at_the_deadline_with_bounded_memory(tmp_path: Path) -> None:
    binary = _script(tmp_path, "exec yes\n")
    client = OrbctlClient(binary, output_limit=4096)
    started = time.monotonic()
    with pytest.raises(OrbctlTimeoutError) as excinfo:
        client.execute(["run", "yes"], timeout=2)
    elapsed = time.monotonic() - started
    print(f"yes with timeout=2 raised after {elapsed:.2f}s")
    assert len(excinfo.value.stdout) == 4096
    assert set(excinfo.value.stdout) == {"y", "\n"}
    assert excinfo.value.hint == "the timeout= argument"


def test_the_drain_after_a_kill_is_bounded_when_an_escaped_process_holds_the_pipe(tmp_path: Path) -> None:
    # setsid takes the writer out of orbctl's process group: killing the group cannot stop it
    pidfile = tmp_path / "escaped.pid"
    binary = _script(tmp_path, f"setsid sh -c 'echo $$ > {pidfile}; exec yes' &\nsleep 60\n")
    client = OrbctlClient(binary, output_limit=1024)
    started = time.monotonic()
    try:
        with pytest.raises(OrbctlTimeoutError):
            client.execute(["create", "x"], timeout=1)
        elapsed = time.monotonic() - started
        print(f"timeout=1 with an escaped writer raised after {elapsed:.2f}s")
        assert elapsed < 30, "the call waited for a process outside its group"  # a hang, not a timing
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.mark.parametrize(
    ("command", "option"), [("create", "--orb-create-timeout"), ("clone", "--orb-clone-timeout")]
)
def test_a_timeout_names_the_option_to_raise(fake_orbctl: FakeOrbctl, command: str, option: str) -> None:
    fake_orbctl.answer(command, sleep=30)
    with pytest.raises(TimeoutError) as excinfo:  # OrbctlTimeoutError is a TimeoutError
        OrbctlClient(str(fake_orbctl.path)).execute([command, "x"], timeout=0.5)
    assert isinstance(excinfo.value, OrbctlTimeoutError)
    first = str(excinfo.value).splitlines()[0]
    assert (
        first
        == f"orbctl {command} did not finish within 0.5s and was killed; raise {option} if it needs longer"
    )


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_output_limit_must_be_a_positive_whole_number(bad: Any) -> None:
    with pytest.raises(InvalidSpecError, match="output_limit"):
        OrbctlClient("/bin/true", output_limit=bad)


# --- secrets: env names that would change orbctl itself are refused ------------------------------


@pytest.mark.parametrize(
    "name", ["PATH", "HOME", "LD_PRELOAD", "DYLD_INSERT_LIBRARIES", "PYTHONHOME", "XDG_CONFIG_HOME",
             "ORBSIM_HOME", "GODEBUG", "TMPDIR", "http_proxy"],
)  # fmt: skip
def test_run_env_names_that_change_orbctl_are_refused(fake_orbctl: FakeOrbctl, name: str) -> None:
    with pytest.raises(InvalidSpecError) as excinfo:
        OrbctlClient(str(fake_orbctl.path)).run("m1", ["true"], env={name: SECRET})
    message = str(excinfo.value)
    assert "\n" not in message
    assert name in message
    assert "orbctl's own behaviour" in message
    assert SECRET not in message
    assert fake_orbctl.calls() == []


def test_env_names_are_case_sensitive_and_go_means_only_gos_own(fake_orbctl: FakeOrbctl) -> None:
    """``path`` is not ``PATH``; ``GOOGLE_*`` is not one of Go's runtime variables."""
    client = OrbctlClient(str(fake_orbctl.path))
    client.run("m1", ["true"], env={"path": "x", "GOOGLE_CLOUD_PROJECT": "p"})
    assert len(fake_orbctl.calls()) == 1


def test_invalid_env_name_is_one_line_without_the_value(fake_orbctl: FakeOrbctl) -> None:
    with pytest.raises(InvalidSpecError) as excinfo:
        OrbctlClient(str(fake_orbctl.path)).run("m1", ["true"], env={"API-KEY": SECRET})
    message = str(excinfo.value)
    assert message == "invalid env name 'API-KEY': expected [A-Za-z_][A-Za-z0-9_]* (value not shown)"


def test_masked_env_shows_names_only() -> None:
    masked = client_module.MaskedEnv({"TOKEN": SECRET, "B": "x"})
    assert repr(masked) == "{'TOKEN': '***', 'B': '***'}"
    assert str(masked) == repr(masked)
    assert masked["TOKEN"] == SECRET


# --- orbctl's own failures are told apart from the command's ------------------------------------


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ("[-32098] machine not found: 'm1'\n", True),
        ("[-32098] machine not found\n", True),
        ("start VM: timed out waiting for VM to start\n", True),
        ("timed out waiting for services to start\n", True),
        ("cat: machine not found: No such file or directory\n", False),
        ("grep: [-32098] nothing\n", False),
        ("", False),
    ],
)
def test_orbctl_failure_recognises_orbctls_own_texts(stderr: str, expected: bool) -> None:
    assert client_module.orbctl_failure(stderr) is expected


def run_client(code: int, stderr: str, state: str = "running") -> ScriptedOrb:
    """``run`` answers one recorded reply; ``info`` tells what ``state`` says of ``m1``."""
    client = ScriptedOrb().script(
        "run", CommandResult(("orbctl", "run", "-m", "m1", "x"), code, "", stderr, 0.1)
    )
    argv = ["orbctl", "info", "m1"]
    if state == "gone":
        client.script("info", classify(argv, 1, "", "[-32098] machine not found: 'm1'\n"))
    elif state == "orbstack-stopped":
        client.script("info", classify(argv, 1, "", "start VM: timed out waiting for VM to start\n"))
    elif state == "info-hangs":
        client.script("info", OrbctlTimeoutError(argv, 30))
    else:
        client.machines["m1"] = state
    return client


@pytest.mark.parametrize("check", [True, False])
@pytest.mark.parametrize(
    ("stderr", "error"),
    [
        ("[-32098] machine not found: 'm1'\n", MachineNotFoundError),
        ("[-32098] machine not found\n", MachineNotFoundError),
        ("start VM: timed out waiting for VM to start\n", OrbStackNotRunningError),
        ("[-32098] cannot transition from stopping to starting\n", TransientOrbctlError),
        ("[-32098] something new went wrong\n", OrbctlCommandError),
    ],
)
def test_run_raises_the_typed_error_when_orbctl_itself_failed(
    stderr: str, error: type[Exception], check: bool
) -> None:
    client = run_client(1, stderr)
    with pytest.raises(error) as excinfo:
        machine_on(client).run("true", check=check)
    assert not isinstance(excinfo.value, CommandFailedError)
    assert len(client.asked("info")) == 0  # stderr said it: no extra call


@pytest.mark.parametrize(
    ("state", "error", "said"),
    [
        ("gone", MachineNotFoundError, "machine not found: 'm1'"),
        ("orbstack-stopped", OrbStackNotRunningError, "timed out waiting for VM to start"),
    ],
)
def test_silent_exit_1_asks_info_once_before_blaming_the_command(
    state: str, error: type[Exception], said: str
) -> None:
    client = run_client(1, "", state)
    with pytest.raises(error) as excinfo:
        machine_on(client).run("true", check=False)
    assert len(client.asked("info")) == 1
    first = str(excinfo.value).splitlines()[0]
    assert first.startswith("orbctl run failed in 'm1', not the command: ")
    assert said in first


@pytest.mark.parametrize("state", ["running", "stopped", "info-hangs"])
def test_silent_exit_1_of_a_live_machine_is_the_commands(state: str) -> None:
    client = run_client(1, "", state)
    result = machine_on(client).run("grep -q x /nothing", check=False)
    assert result.returncode == 1
    assert len(client.asked("info")) == 1
    with pytest.raises(CommandFailedError):
        machine_on(client).run("grep -q x /nothing")
    assert len(client.asked("info")) == 2  # once per call


@pytest.mark.parametrize(("code", "stderr"), [(2, ""), (1, "grep: /x: No such file or directory\n")])
def test_a_command_failure_costs_no_info_call(code: int, stderr: str) -> None:
    client = run_client(code, stderr)
    assert machine_on(client).run("cmd", check=False).returncode == code
    assert len(client.asked("info")) == 0


def test_machine_run_masks_env_in_its_frame_and_keeps_dropped_counts() -> None:
    client = ScriptedOrb("m1").script("run", CommandResult(("orbctl", "run"), 0, "tail", "", 0.1, 5, 7))
    result = machine_on(client).run("true", env={"TOKEN": SECRET}, output_limit=4)
    call = client.asked("run")[-1]  # the command (the home look-up before it has no env)
    assert repr(call.kwargs["env"]) == "{'TOKEN': '***'}"
    assert call.kwargs["env"]["TOKEN"] == SECRET
    assert call.kwargs["output_limit"] == 4
    assert (result.stdout, result.stdout_dropped, result.stderr_dropped) == ("tail", 5, 7)


def test_a_failure_message_masks_env_values_the_command_printed() -> None:
    printed = CommandResult(("orbctl", "run"), 3, f"token={SECRET}\n", f"{SECRET} bad\n", 0.1)
    client = ScriptedOrb("m1").script("run", printed)
    with pytest.raises(CommandFailedError) as excinfo:
        machine_on(client).run("false", env={"TOKEN": SECRET, "SHORT": "1"})
    message = str(excinfo.value)
    assert SECRET not in message
    assert "stdout: token=***" in message
    assert "stderr: *** bad" in message
    assert excinfo.value.stdout == f"token={SECRET}\n"  # the attributes keep what the command said


def test_a_failure_message_says_how_much_output_was_dropped() -> None:
    client = ScriptedOrb("m1").script(
        "run", CommandResult(("orbctl", "run"), 2, "tail\n", "", 0.1, 123456, 0)
    )
    with pytest.raises(CommandFailedError) as excinfo:
        machine_on(client).run("noisy")
    lines = str(excinfo.value).splitlines()
    assert "  stdout (123456 earlier bytes dropped, see output_limit): tail" in lines
    assert "  stderr: (empty)" in lines


def test_orbctl_gets_an_explicit_environment_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never ``env=None``: the child would read the C ``environ`` another thread may be changing."""
    seen: list[Any] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("env"))
        return real_popen(*args, **kwargs)

    monkeypatch.setenv("PYTEST_ORBSTACK_SNAPSHOT_MARK", "1")
    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    OrbctlClient("/bin/true").execute(["status"], timeout=10)
    (env,) = seen
    assert env is not None
    assert dict(env)["PYTEST_ORBSTACK_SNAPSHOT_MARK"] == "1"


@pytest.mark.parametrize("command", ["push", "pull"])
def test_a_copy_that_hangs_is_killed_at_its_timeout(fake_orbctl: FakeOrbctl, command: str) -> None:
    fake_orbctl.answer(command, sleep=30)
    copy = getattr(OrbctlClient(str(fake_orbctl.path)), command)
    with pytest.raises(OrbctlTimeoutError) as excinfo:
        copy("m1", ["/tmp/a"], "/tmp/b", timeout=0.5)
    first = str(excinfo.value).splitlines()[0]
    assert first.startswith(f"orbctl {command} did not finish within 0.5s and was killed; raise the timeout=")
