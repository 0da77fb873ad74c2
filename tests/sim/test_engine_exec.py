"""Running commands in a namespace machine: codes, users, directories, environment, stdin, background."""

from __future__ import annotations

import time


def test_exit_codes_pass_through(make_machine) -> None:
    m = make_machine("exec-codes")
    assert m.sh("exit 7").returncode == 7
    missing = m.run("no-such-command-xyz")
    assert missing.returncode == 127
    assert "no-such-command-xyz" in missing.stderr
    assert m.sh("kill -TERM $$").returncode == 128 + 15


def test_stdout_stderr_and_stdin(make_machine) -> None:
    m = make_machine("exec-io")
    res = m.sh("cat; echo out; echo err >&2", input=b"from-stdin\n")
    assert res.stdout == "from-stdin\nout\n"
    assert res.stderr == "err\n"
    big = m.run("head", "-c", "300000", "/dev/zero")
    assert len(big.stdout) == 300000


def test_workdir_and_fallback(make_machine) -> None:
    m = make_machine("exec-wd")
    assert m.run("pwd").stdout == "/home/alice\n"
    assert m.run("pwd", workdir="/etc").stdout == "/etc\n"
    assert m.run("pwd", workdir="/no/such/dir").stdout == "/\n"
    assert m.run("pwd", user="root").stdout == "/root\n"


def test_only_given_environment_is_forwarded(make_machine, monkeypatch) -> None:
    monkeypatch.setenv("ORBSIM_TEST_SECRET", "host-only")
    m = make_machine("exec-env")
    res = m.sh('echo "$ORBSIM_TEST_SECRET|$GIVEN|$HOME|$USER"', env={"GIVEN": "yes"})
    assert res.stdout == "|yes|/home/alice|alice\n"


def test_background_process_survives_and_does_not_block_a_capturing_caller(make_machine) -> None:
    m = make_machine("exec-bg")
    # Holds stdout and stderr and keeps writing to them: must neither block us nor die of SIGPIPE.
    res = m.sh("(while :; do echo tick; echo tock >&2; sleep 0.05; done) & echo $! > /tmp/ticker", timeout=30)
    assert res.returncode == 0
    ticker = m.run("cat", "/tmp/ticker").stdout.strip()
    res = m.sh("sleep 300 & echo $!", timeout=30)
    sleeper = res.stdout.strip()
    time.sleep(0.3)  # the ticker has written after its first reader went away
    alive = {line.split()[0] for line in m.run("ps", "-eo", "pid=").stdout.splitlines()}
    assert {ticker, sleeper} <= alive
