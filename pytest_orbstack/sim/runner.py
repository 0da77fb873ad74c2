"""The one place where orbsim runs helper programs.

Every external program orbsim uses (mount, ip, nsenter, unshare, debootstrap,
tar, cp, ...) goes through this module: argv lists only, never a shell string
built from user data, and always a timeout.  The *user's* command (``orbsim
run``) is ``relay.interactive``: it has no deadline of its own, exactly like
``orbctl run`` (the caller decides how long it waits), and it is on the fast
start-up path, which this module (``subprocess``) is not.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import IO, Callable, Optional, Union

from .relay import debug

Stream = Union[int, IO[bytes], None]


#: Default deadline, in seconds, for a helper program (mount, ip, ...).
DEFAULT_TIMEOUT = 30.0


class RunError(Exception):
    """A helper program failed or timed out; keeps argv, exit code and output."""

    def __init__(
        self,
        argv: Sequence[str],
        returncode: Optional[int],
        stdout: str,
        stderr: str,
        timeout: Optional[float] = None,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timeout = timeout
        what = f"timed out after {timeout:g}s" if timeout is not None else f"exited with {returncode}"
        detail = (stderr or stdout).strip().splitlines()
        tail = f": {detail[-1]}" if detail else ""
        super().__init__(f"`{shlex.join(self.argv)}` {what}{tail}")


class Result:
    """What a finished helper program returned."""

    __slots__ = ("argv", "returncode", "stderr", "stdout")

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def run(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    input: Optional[bytes] = None,
    stdin: Stream = None,
    stdout: Stream = None,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    capture: bool = True,
) -> Result:
    """Run ``argv`` to completion with a deadline.

    Output is captured (text, errors replaced) unless ``capture`` is false or
    ``stdout`` names a file.  A timeout kills the program's whole process
    group and raises :class:`RunError`; so does a non-zero exit when ``check``.
    """
    debug("run", argv)
    out: Stream = stdout if stdout is not None else (subprocess.PIPE if capture else None)
    err: Stream = subprocess.PIPE if capture else None
    try:
        proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
            list(argv),
            stdin=_stdin(input, stdin),
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise RunError(argv, None, "", f"cannot run {argv[0]}: {exc.strerror}") from exc
    try:
        raw_out, raw_err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        raw_out, raw_err = proc.communicate()
        raise RunError(argv, None, _text(raw_out), _text(raw_err), timeout=timeout) from None
    result = Result(argv, proc.returncode, _text(raw_out), _text(raw_err))
    if check and proc.returncode != 0:
        raise RunError(argv, proc.returncode, result.stdout, result.stderr)
    return result


def stream(
    argv: Sequence[str],
    *,
    timeout: float,
    on_line: Callable[[str], None],
    env: Optional[Mapping[str, str]] = None,
) -> None:
    """Run ``argv`` with a deadline, handing each line it prints (stdout and stderr) to ``on_line``.

    For long builds whose progress the user should see.  A timeout kills the
    program's process group; it and a non-zero exit raise :class:`RunError`
    with the last lines printed.
    """
    debug("stream", argv)
    try:
        proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    except OSError as exc:
        raise RunError(argv, None, "", f"cannot run {argv[0]}: {exc.strerror}") from exc
    assert proc.stdout is not None
    tail: collections.deque[str] = collections.deque(maxlen=20)
    deadline = time.monotonic() + timeout
    pending = b""
    fd = proc.stdout.fileno()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_group(proc.pid)
                proc.wait()
                raise RunError(argv, None, "\n".join(tail), "", timeout=timeout)
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = _text(raw).rstrip()
                if line:
                    tail.append(line)
                    on_line(line)
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        proc.stdout.close()
    if pending.strip():
        tail.append(_text(pending).rstrip())
        on_line(tail[-1])
    returncode = proc.wait()
    if returncode != 0:
        raise RunError(argv, returncode, "\n".join(tail), "")


def spawn_daemon(
    argv: Sequence[str], *, log_path: str, stdout: Optional[int] = None, stdin: Optional[int] = None
) -> int:
    """Start ``argv`` detached (own session, stdin /dev/null, output to ``log_path``); return its pid.

    ``stdout``, if given, replaces the log as the program's stdout (e.g. a pipe to report readiness);
    ``stdin``, if given, replaces /dev/null (e.g. a pipe on which it waits for a go).

    Used only for a machine's long-lived init, whose life is managed by the engine.
    """
    debug("spawn", argv)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
            list(argv),
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=log if stdout is None else stdout,
            stderr=log,
            start_new_session=True,
        )
    return proc.pid


def _stdin(data: Optional[bytes], stdin: Stream) -> Stream:
    if data is not None:
        return subprocess.PIPE
    return stdin if stdin is not None else subprocess.DEVNULL


def _kill_group(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def _text(data: Optional[bytes]) -> str:
    return data.decode("utf-8", "replace") if data else ""
