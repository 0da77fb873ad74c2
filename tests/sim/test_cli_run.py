"""``run``'s own flag parser, exit codes, stdin, ORBENV, auto-start, and push/pull."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from orbsim_cli_helpers import Sim, expect_service_error, make_sim

M = "pytest-test-run"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    steps = make_sim(tmp_path)
    s = next(steps)
    s.ok("create", "ubuntu", M)
    yield s
    s.ok("delete", "-f", M)
    for _ in steps:  # the leftover checks
        pass


def test_flags_stop_at_the_first_non_flag(sim: Sim) -> None:
    proc = sim.ok("run", "-m", M, "echo", "-m", "x", "--", "-u")
    assert proc.stdout == "-m x -- -u\n"


def test_long_flags_and_equals_forms(sim: Sim) -> None:
    assert sim.ok("run", "--machine", M, "echo", "a").stdout == "a\n"
    assert sim.ok("run", f"--machine={M}", "echo", "b").stdout == "b\n"


def test_exit_code_and_streams_pass_through(sim: Sim) -> None:
    proc = sim("run", "-m", M, "sh", "-c", "echo out; echo err >&2; exit 42")
    assert (proc.returncode, proc.stdout, proc.stderr) == (42, "out\n", "err\n")


def test_command_not_found_is_127(sim: Sim) -> None:
    assert sim("run", "-m", M, "no-such-command-xyz").returncode == 127


def test_stdin_is_passed_through(sim: Sim) -> None:
    assert sim.ok("run", "-m", M, "cat", input="piped\n").stdout == "piped\n"


def test_env_is_forwarded_only_through_orbenv(sim: Sim) -> None:
    env = {"SECRET_A": "alpha", "SECRET_B": "beta"}
    script = 'echo "${SECRET_A:-unset} ${SECRET_B:-unset}"'
    assert sim.ok("run", "-m", M, "sh", "-c", script, env=env).stdout == "unset unset\n"
    env["ORBENV"] = "SECRET_B"
    assert sim.ok("run", "-m", M, "sh", "-c", script, env=env).stdout == "unset beta\n"


def test_shell_flag_runs_through_a_shell(sim: Sim) -> None:
    assert sim.ok("run", "-m", M, "-s", "echo", "$((6*7))").stdout == "42\n"


def test_args_are_not_shell_parsed_without_s(sim: Sim) -> None:
    assert sim.ok("run", "-m", M, "echo", "$((6*7))", "a;b").stdout == "$((6*7)) a;b\n"


def test_stopped_machine_is_started_by_run(sim: Sim) -> None:
    sim.ok("stop", M)
    assert sim.ok("run", "-m", M, "true").returncode == 0
    assert json.loads(sim.ok("info", M, "-f", "json").stdout)["record"]["state"] == "running"


def test_unknown_machine_fails_with_exit_1(sim: Sim) -> None:
    proc = sim("run", "-m", "pytest-test-nosuch", "true")
    expect_service_error(proc, "machine not found: 'pytest-test-nosuch'")


def test_push_and_pull_round_trip(sim: Sim, tmp_path: Path) -> None:
    src = tmp_path / "hello.txt"
    src.write_text("hi there\n")
    sim.ok("push", "-m", M, str(src))
    assert sim.ok("run", "-m", M, "sh", "-c", "cat ~/hello.txt").stdout == "hi there\n"
    sim.ok("push", "-m", M, str(src), "renamed.txt")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    sim.ok("pull", "-m", M, "renamed.txt", str(out_dir))
    assert (out_dir / "renamed.txt").read_text() == "hi there\n"
    proc = sim("pull", "-m", M, "missing.txt", str(out_dir))
    assert proc.returncode == 1
    assert "cp: cannot stat" in proc.stderr
    assert "No such file or directory" in proc.stderr
