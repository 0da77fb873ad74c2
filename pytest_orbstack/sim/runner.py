"""The one place where orbsim runs other programs.

Every external program orbsim uses (mount, ip, nsenter, unshare, debootstrap,
tar, cp, ...) goes through this module: argv lists only, never a shell string
built from user data, and always a timeout, except for :func:`interactive`,
which runs the *user's* command (``orbsim run``) and has no deadline of its
own, exactly like ``orbctl run``: the caller decides how long it waits.

``interactive`` and its output relay
------------------------------------
A command run in a machine may leave a background process behind
(``sh -c 'server &'``).  If that process inherited orbsim's stdout and the
caller captures orbsim's output through a pipe (``subprocess.run(...,
capture_output=True)``), the caller would wait for end-of-file until the
background process exits: forever, for a server.  So:

- when orbsim's stdout and stderr are not pipes or sockets (a terminal, a
  file, /dev/null), the command gets them directly and orbsim ``exec``s it
  (nothing stays in between: the fastest path);
- otherwise the command writes into pipes of orbsim's own, and orbsim copies
  them to its stdout/stderr.  When the command exits, orbsim copies what is
  already buffered and returns its exit code at once; if a background process
  still holds the pipes, a detached drainer process keeps reading (and
  discarding) them until that process closes them, so the background process
  never dies of SIGPIPE and the caller's pipe is closed as soon as orbsim exits.

stdin is always passed straight through.
"""

from __future__ import annotations

import os
import stat
import sys

# Only cheap modules at import time: ``orbsim run`` imports this module on its fast path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import IO, Callable, Optional, Union

    from .enter import Entry

    Stream = Union[int, IO[bytes], None]


def _debug(what: str, argv: Sequence[str]) -> None:
    """Log ``argv`` at DEBUG on the ``orbsim`` logger.

    ``logging`` is not imported for this (it costs milliseconds on every
    ``orbsim run``): if nothing imported it, nothing can have configured it.
    """
    logging = sys.modules.get("logging")
    if logging is not None:
        import shlex

        logging.getLogger("orbsim").debug("%s: %s", what, shlex.join(argv))


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
        import shlex

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
    import subprocess

    _debug("run", argv)
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
    import collections
    import select
    import subprocess
    import time

    _debug("stream", argv)
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


def spawn_daemon(argv: Sequence[str], *, log_path: str, stdout: Optional[int] = None) -> int:
    """Start ``argv`` detached (own session, stdin /dev/null, output to ``log_path``); return its pid.

    ``stdout``, if given, replaces the log as the program's stdout (e.g. a pipe to report readiness).

    Used only for a machine's long-lived init, whose life is managed by the engine.
    """
    import subprocess

    _debug("spawn", argv)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - argv list, never a shell
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log if stdout is None else stdout,
            stderr=log,
            start_new_session=True,
        )
    return proc.pid


def _stdin(data: Optional[bytes], stdin: Stream) -> Stream:
    import subprocess

    if data is not None:
        return subprocess.PIPE
    return stdin if stdin is not None else subprocess.DEVNULL


def _kill_group(pid: int) -> None:
    import contextlib
    import signal

    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def _text(data: Optional[bytes]) -> str:
    return data.decode("utf-8", "replace") if data else ""


def _needs_relay(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def interactive(
    argv: Sequence[str], env: Mapping[str, str], *, exec_ok: bool = True, entry: Optional[Entry] = None
) -> int:
    """Run the user's command with orbsim's stdin/stdout/stderr; return its exit code.

    See the module docstring for the output relay.  With ``exec_ok`` and no
    relay needed, orbsim's process is replaced by the command (this function
    then never returns): only for callers that have nothing left to do.
    With ``entry`` (``enter.prepare``), the child enters a machine itself and
    runs ``argv`` there; orbsim then always stays the parent (``entry`` is closed).
    """
    _debug("interactive", argv)
    sys.stdout.flush()
    sys.stderr.flush()
    relay = [fd for fd in (1, 2) if _needs_relay(fd)]
    if not relay and exec_ok and entry is None:
        try:
            os.execve(argv[0], list(argv), dict(env))
        except OSError as exc:
            sys.stderr.write(f"orbsim: cannot run {argv[0]}: {exc.strerror}\n")
            return 126
    pipes = {fd: os.pipe() for fd in relay}
    try:
        pid = os.fork() if entry is None else entry.fork()
    except BaseException:
        if entry is not None:
            entry.close()
        raise
    if pid == 0:  # child: becomes the command
        try:
            for fd, (r, w) in pipes.items():
                os.dup2(w, fd)
                os.close(w)
                os.close(r)
            if entry is not None:
                entry.become(argv, env)
            os.execve(argv[0], list(argv), dict(env))
        except OSError as exc:
            os.write(2, f"orbsim: cannot run {argv[0]}: {exc.strerror}\n".encode())
        os._exit(126)
    if entry is not None:
        entry.close()
    readers: dict[int, int] = {}
    for fd, (r, w) in pipes.items():
        os.close(w)
        readers[r] = fd
    return _relay(pid, readers)


def _relay(pid: int, readers: dict[int, int]) -> int:
    """Copy the child's pipes to our fds until it exits; hand leftovers to a drainer."""
    import select
    import time

    try:
        exit_fd: Optional[int] = os.pidfd_open(pid)  # readable once the child has exited
    except (AttributeError, OSError):
        exit_fd = None  # old kernel or Python: poll instead
    status: Optional[int] = None
    broken: set[int] = set()
    while readers and status is None:
        watch = list(readers) if exit_fd is None else [*readers, exit_fd]
        ready, _, _ = select.select(watch, [], [], 0.05 if exit_fd is None else None)
        for r in ready:
            if r != exit_fd and not _copy_once(r, readers, broken):
                del readers[r]
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
    if exit_fd is not None:
        os.close(exit_fd)
    if status is None:
        _, status = os.waitpid(pid, 0)
    # The command has exited: everything it wrote is in the pipes already.  Copy
    # that (bounded in time: a background process may keep writing), no more.
    deadline = time.monotonic() + 0.2
    for r in list(readers):
        os.set_blocking(r, False)
        while time.monotonic() < deadline:
            try:
                more = _copy_once(r, readers, broken)
            except BlockingIOError:
                break
            if not more:
                del readers[r]
                break
    if readers:
        _drain_detached(list(readers))
    return os.waitstatus_to_exitcode(status)


def _copy_once(r: int, readers: dict[int, int], broken: set[int]) -> bool:
    """Copy one chunk from ``r``; False at end of file."""
    data = os.read(r, 65536)
    if not data:
        os.close(r)
        return False
    target = readers[r]
    if target not in broken:
        try:
            _write_all(target, data)
        except BrokenPipeError:
            broken.add(target)
            os.close(r)  # like a pipeline: the writer gets SIGPIPE from now on
            return False
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _drain_detached(fds: list[int]) -> None:
    """Leave one detached ``cat`` per pipe, reading it to end of file, so writers never get SIGPIPE."""
    for fd in fds:
        if os.fork() == 0:
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDWR)
                os.set_blocking(fd, True)
                os.dup2(fd, 0)
                os.dup2(null, 1)
                os.dup2(null, 2)
                os.closerange(3, 1 << 16)
                os.execv("/bin/cat", ["cat"])
            finally:
                os._exit(0)
        os.close(fd)
