"""orbsim's helper programs (runner.py): posix_spawn, deadlines, process groups, nothing slow to import."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_orbstack.sim import runner

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def _gone(pid: int, within: float = 3.0) -> bool:
    """``pid`` has died (gone, or a zombie of a parent that is not us) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat[stat.rfind(")") + 2] in "ZX":
            return True
        time.sleep(0.01)
    return False


def _stat_fields(text: str) -> list[str]:
    """The fields of a /proc/PID/stat line after ``(comm)``: state, ppid, pgrp, session, ..."""
    return text[text.rfind(")") + 2 :].split()


def test_large_output_on_both_streams_does_not_deadlock() -> None:
    # stderr first, then stdout, each far beyond a pipe's 64 KiB: a reader waiting on one stream alone
    # would wait forever.
    script = f"head -c {2 * MIB} /dev/zero | tr '\\0' e >&2; head -c {2 * MIB} /dev/zero | tr '\\0' o"
    res = runner.run(["sh", "-c", script], timeout=20)
    assert res.returncode == 0
    assert res.stdout == "o" * (2 * MIB)
    assert res.stderr == "e" * (2 * MIB)


def test_large_input_comes_back_through_cat() -> None:
    data = bytes(range(32, 127)) * (MIB // 95 + 1)
    res = runner.run(["cat"], input=data, timeout=20)
    assert res.stdout.encode() == data


def test_input_not_read_is_no_error() -> None:
    # the program exits without reading: the rest of the input goes nowhere (EPIPE), quietly
    res = runner.run(["true"], input=b"x" * MIB)
    assert res.returncode == 0


def test_non_zero_exit_raises_with_code_and_last_stderr_line() -> None:
    with pytest.raises(runner.RunError) as caught:
        runner.run(["sh", "-c", "echo out; echo first >&2; echo last >&2; exit 3"])
    err = caught.value
    assert err.returncode == 3
    assert err.timeout is None
    assert (err.stdout, err.stderr) == ("out\n", "first\nlast\n")
    assert str(err) == "`sh -c 'echo out; echo first >&2; echo last >&2; exit 3'` exited with 3: last"


def test_check_false_returns_the_code() -> None:
    res = runner.run(["sh", "-c", "echo hi; exit 7"], check=False)
    assert (res.returncode, res.stdout, res.stderr, res.argv) == (
        7,
        "hi\n",
        "",
        ["sh", "-c", "echo hi; exit 7"],
    )


def test_killed_by_a_signal_is_a_negative_code() -> None:
    res = runner.run(["sh", "-c", "kill -9 $$"], check=False)
    assert res.returncode == -signal.SIGKILL


def test_timeout_kills_the_whole_group() -> None:
    start = time.monotonic()
    with pytest.raises(runner.RunError) as caught:
        runner.run(["sh", "-c", "sleep 30 & echo $!; echo partial >&2; wait"], timeout=0.5)
    assert time.monotonic() - start < 3
    err = caught.value
    assert (err.timeout, err.returncode) == (0.5, None)
    assert err.stderr == "partial\n"  # what was captured before the deadline
    assert str(err).startswith("`sh -c 'sleep 30 & echo $!; echo partial >&2; wait'` timed out after 0.5s")
    assert _gone(int(err.stdout))  # the background sleep, not only sh


def test_a_program_that_cannot_be_run() -> None:
    with pytest.raises(runner.RunError) as caught:
        runner.run(["orbsim-no-such-program"])
    assert caught.value.returncode is None
    assert caught.value.stderr == "cannot run orbsim-no-such-program: No such file or directory"


def test_the_program_is_found_on_the_path_of_its_environment(tmp_path: Path) -> None:
    # as with subprocess: the child's PATH decides, not orbsim's (posix_spawnp alone would use orbsim's)
    prog = tmp_path / "orbsim-test-prog"
    prog.write_text("#!/bin/sh\necho found\n")
    prog.chmod(0o755)
    assert runner.run(["orbsim-test-prog"], env={"PATH": f"/nonexistent:{tmp_path}"}).stdout == "found\n"
    with pytest.raises(runner.RunError, match="cannot run true: No such file or directory"):
        runner.run(["true"], env={"PATH": str(tmp_path)})


def test_env_is_passed() -> None:
    res = runner.run(["sh", "-c", 'echo "$ORBSIM_T"; echo "${HOME-unset}"'], env={"ORBSIM_T": "yes"})
    assert res.stdout == "yes\nunset\n"


def test_the_program_runs_in_a_session_of_its_own() -> None:
    pid, fields = runner.run(["sh", "-c", 'echo $$; cat "/proc/$$/stat"']).stdout.split("\n", 1)
    _, _, pgrp, session = _stat_fields(fields)[:4]
    assert int(session) == int(pgrp) == int(pid)
    assert int(session) != os.getsid(0)


def test_the_program_gets_no_descriptor_beyond_0_1_2() -> None:
    kept_r, kept_w = os.pipe()  # close-on-exec, as Python makes them
    given_r, given_w = os.pipe()
    os.set_inheritable(given_w, True)  # as if orbsim's own caller had passed it: closed in the child too
    try:
        for kwargs in ({}, {"input": b""}, {"input": b"x"}):
            res = runner.run(["sh", "-c", 'cat >/dev/null; ls "/proc/$$/fd"'], **kwargs)  # type: ignore[arg-type]
            assert res.stdout.split() == ["0", "1", "2"], kwargs
    finally:
        for fd in (kept_r, kept_w, given_r, given_w):
            os.close(fd)


def test_sigpipe_is_back_to_its_default() -> None:
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across exec unless reset
    line = runner.run(["grep", "^SigIgn:", "/proc/self/status"]).stdout
    ignored = int(line.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))


def test_file_objects_as_stdin_and_stdout(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"from a file\n")
    with open(tmp_path / "in", "rb") as fin, open(tmp_path / "out", "wb") as fout:
        res = runner.run(["sh", "-c", "cat; echo note >&2"], stdin=fin, stdout=fout)
    assert (res.stdout, res.stderr) == ("", "note\n")
    assert (tmp_path / "out").read_bytes() == b"from a file\n"
    fd = os.open(tmp_path / "in", os.O_RDONLY)
    try:
        assert runner.run(["cat"], stdin=fd).stdout == "from a file\n"
    finally:
        os.close(fd)


def test_stdin_is_dev_null_by_default() -> None:
    assert runner.run(["sh", "-c", "readlink /proc/$$/fd/0"]).stdout == "/dev/null\n"


def test_orbsim_started_with_its_standard_descriptors_closed(tmp_path: Path) -> None:
    # The pipe for stderr then gets fd 1, which the child's stdout dup2 would overwrite first; and the
    # pipe for input gets fd 0, dup2'ed onto itself (which must clear its close-on-exec flag).
    (tmp_path / "in").write_bytes(b"input\n")
    script = f"""
import os, sys
sys.path.insert(0, {str(REPO)!r})
from pytest_orbstack.sim import runner
fin, fout = open({str(tmp_path / "in")!r}, "rb"), open({str(tmp_path / "out")!r}, "wb")
os.close(0); os.close(1); os.close(2)
res = runner.run(["sh", "-c", "cat; echo err >&2"], stdin=fin, stdout=fout)
fed = runner.run(["cat"], input=b"fed")
with open({str(tmp_path / "result")!r}, "w") as fh:
    fh.write(repr((res.stderr, fed.stdout)))
"""
    subprocess.run([sys.executable, "-I", "-S", "-c", script], check=True, timeout=10)
    assert (tmp_path / "out").read_bytes() == b"input\n"
    assert (tmp_path / "result").read_text() == repr(("err\n", "fed"))


def test_stream_hands_lines_in_order() -> None:
    lines: list[str] = []
    runner.stream(
        ["sh", "-c", "printf 'a\\nb\\n'; echo c >&2; echo; printf 'd  '"], timeout=10, on_line=lines.append
    )
    assert lines == ["a", "b", "c", "d"]


def test_stream_raises_on_non_zero_exit_with_the_tail() -> None:
    lines: list[str] = []
    with pytest.raises(runner.RunError) as caught:
        runner.stream(
            ["sh", "-c", "i=0; while [ $i -lt 30 ]; do i=$((i+1)); echo line$i; done; exit 2"],
            timeout=10,
            on_line=lines.append,
        )
    assert len(lines) == 30
    assert caught.value.returncode == 2
    assert caught.value.stdout == "\n".join(f"line{i}" for i in range(11, 31))
    assert str(caught.value).endswith("exited with 2: line30")


def test_stream_timeout() -> None:
    start = time.monotonic()
    with pytest.raises(runner.RunError) as caught:
        runner.stream(["sh", "-c", "echo started; sleep 30"], timeout=0.3, on_line=lambda _: None)
    assert time.monotonic() - start < 3
    assert (caught.value.timeout, caught.value.stdout) == (0.3, "started")


def test_stream_cannot_run() -> None:
    with pytest.raises(runner.RunError, match="cannot run orbsim-no-such-program"):
        runner.stream(["orbsim-no-such-program"], timeout=10, on_line=lambda _: None)


def test_an_exception_while_waiting_kills_the_group() -> None:
    pids: list[int] = []

    def on_line(line: str) -> None:
        pids.append(int(line))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.stream(["sh", "-c", "sleep 30 & echo $!; wait"], timeout=10, on_line=on_line)
    assert _gone(pids[0])


def test_spawn_daemon(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("before\n")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    try:
        script = "echo to-log >&2; read go; echo ready $go; exec sleep 30"
        pid = runner.spawn_daemon(["sh", "-c", script], log_path=str(log), stdout=ready_w, stdin=go_r)
    finally:
        os.close(ready_w)
        os.close(go_r)
    try:
        assert os.getsid(pid) == pid != os.getsid(0)
        os.write(go_w, b"now\n")
        assert os.read(ready_r, 100) == b"ready now\n"
        deadline = time.monotonic() + 3
        while log.read_text() != "before\nto-log\n" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.read_text() == "before\nto-log\n"  # appended
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(go_w)


def test_spawn_daemon_defaults_dev_null_in_and_the_log_out(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    pid = runner.spawn_daemon(["sh", "-c", 'readlink /proc/$$/fd/0; ls "/proc/$$/fd"'], log_path=str(log))
    os.waitpid(pid, 0)
    assert log.read_text().split() == ["/dev/null", "0", "1", "2"]


def test_spawn_daemon_that_cannot_start_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        runner.spawn_daemon(["orbsim-no-such-program"], log_path=str(tmp_path / "log"))


def test_runner_imports_nothing_slow(tmp_path: Path) -> None:
    slow = (
        *("subprocess", "contextlib", "collections", "typing", "shlex"),
        *("signal", "enum", "re", "threading", "selectors"),
    )
    script = f"""
import os, sys
sys.path.insert(0, {str(REPO)!r})
import pytest_orbstack.sim.runner as r
r.run(["true"])
r.run(["cat"], input=b"x")
r.stream(["true"], timeout=10, on_line=print)
os.waitpid(r.spawn_daemon(["true"], log_path={str(tmp_path / "log")!r}), 0)
print(sorted(m for m in {slow!r} if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], check=True, capture_output=True, text=True, timeout=10
    )
    assert out.stdout == "[]\n"


def test_which_finds_what_shutil_which_finds(tmp_path: Path) -> None:
    tool = tmp_path / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (tmp_path / "bin" / "plain").write_text("not executable")
    (tmp_path / "bin" / "adir").mkdir()
    search = f"/nonexistent:{tmp_path / 'bin'}:/usr/bin"
    for name in ("tool", "plain", "adir", "sh", "no-such-tool-xyz", str(tool), "/etc/passwd"):
        assert runner.which(name, search) == shutil.which(name, path=search), name
