"""The one place where orbsim runs helper programs.

Longer than most modules on purpose: starting, feeding, reading, timing out and
reaping a program without ``subprocess`` (see "Start-up time") is one job, and
its parts only make sense together.

Every external program orbsim uses (mount, ip, nsenter, unshare, debootstrap,
tar, cp, ...) goes through this module: argv lists only, never a shell string
built from user data, and always a timeout.  The *user's* command (``orbsim
run``) is ``relay.interactive``: it has no deadline of its own, exactly like
``orbctl run`` (the caller decides how long it waits).

Start-up time
-------------
Every orbsim command is a fresh Python process, and importing ``subprocess``
costs about 30 ms of CPU (signal, enum, threading, selectors, contextlib, ...).
So this module starts programs with ``os.posix_spawnp`` and waits for them
with ``select.poll`` and ``os.waitpid``, importing only modules built into
the interpreter (and ``shlex``, for an error message only).  It keeps what
``subprocess.Popen`` did for orbsim:

- the program runs in a session of its own, so a timeout kills its whole
  process group (everything it started that did not leave the group);
- it gets only stdin, stdout and stderr: orbsim's own descriptors are
  close-on-exec, and inheritable ones orbsim was given are closed in the child;
- SIGPIPE and SIGXFSZ, which Python ignores, are back to their defaults;
- a program name without a ``/`` is looked up on the PATH of ``env`` when
  one is given (posix_spawnp alone would search orbsim's own PATH).
"""

from __future__ import annotations

import errno
import os
import select
import time

from .relay import debug

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import IO, Optional, Union

    Stream = Union[int, IO[bytes], None]
    _Stdio = tuple[Optional[int], Optional[int], Optional[int]]  # fds for the child's 0, 1, 2


#: Default deadline, in seconds, for a helper program (mount, ip, ...).
DEFAULT_TIMEOUT = 30.0

# Linux's numbers: the signal module would load enum (start-up time).
_SIGPIPE = 13
_SIGXFSZ = 25
_SIGKILL = 9

_CHUNK = 65536


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
        import shlex  # start-up time: shlex loads re; only an error message needs it

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
    capture: bool = True,
) -> Result:
    """Run ``argv`` to completion with a deadline.

    Output is captured (text, errors replaced) unless ``capture`` is false or
    ``stdout`` names a file.  A timeout kills the program's whole process
    group and raises :class:`RunError`; so does a non-zero exit when ``check``.
    """
    debug("run", argv)
    deadline = time.monotonic() + timeout
    out: list[bytes] = []
    err: list[bytes] = []
    with _Fds() as fds:
        feed = out_r = err_r = None
        if input is not None:
            child_in, feed = fds.pipe()
        else:
            child_in = _fileno(stdin) if stdin is not None else fds.open(os.devnull, os.O_RDONLY)
        child_out = _fileno(stdout) if stdout is not None else None
        if child_out is None and capture:
            out_r, child_out = fds.pipe()
        child_err = None
        if capture:
            err_r, child_err = fds.pipe()
        pid = _start(argv, env, fds, (child_in, child_out, child_err))
        readers = {fd: chunks.append for fd, chunks in ((out_r, out), (err_r, err)) if fd is not None}
        try:
            _exchange(fds, feed, input or b"", readers, deadline)
            returncode = _wait(pid, deadline)
        except _Deadline:
            _end(pid)
            _drain(fds, readers)
            raise RunError(argv, None, _text(out), _text(err), timeout=timeout) from None
        except BaseException:
            _end(pid)
            raise
    result = Result(argv, returncode, _text(out), _text(err))
    if check and returncode != 0:
        raise RunError(argv, returncode, result.stdout, result.stderr)
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
    deadline = time.monotonic() + timeout
    tail: list[str] = []
    pending = b""

    def emit(raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(line)
            del tail[:-20]
            on_line(line)

    def take(chunk: bytes) -> None:
        nonlocal pending
        *lines, pending = (pending + chunk).split(b"\n")
        for raw in lines:
            emit(raw)

    with _Fds() as fds:
        r, w = fds.pipe()  # stdout and stderr both: the lines in the order printed
        pid = _start(argv, env, fds, (fds.open(os.devnull, os.O_RDONLY), w, w))
        try:
            _exchange(fds, None, b"", {r: take}, deadline)
            emit(pending)
            returncode = _wait(pid, deadline)
        except _Deadline:
            _end(pid)
            raise RunError(argv, None, "\n".join(tail), "", timeout=timeout) from None
        except BaseException:
            _end(pid)
            raise
    if returncode != 0:
        raise RunError(argv, returncode, "\n".join(tail), "")


def spawn_daemon(
    argv: Sequence[str], *, log_path: str, stdout: Optional[int] = None, stdin: Optional[int] = None
) -> int:
    """Start ``argv`` detached (own session, stdin /dev/null, output to ``log_path``); return its pid.

    ``stdout``, if given, replaces the log as the program's stdout (e.g. a pipe to report readiness);
    ``stdin``, if given, replaces /dev/null (e.g. a pipe on which it waits for a go).

    Used only for a machine's long-lived init, whose life is managed by the engine: it is not
    waited for here.  A program that cannot be started raises :class:`OSError`.
    """
    debug("spawn", argv)
    with _Fds() as fds:
        log = fds.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        child_in = stdin if stdin is not None else fds.open(os.devnull, os.O_RDONLY)
        return _spawn(argv, None, (child_in, log if stdout is None else stdout, log))


class _Deadline(Exception):
    """The deadline passed before the program was done."""


class _Fds:
    """The descriptors one call opens: each closed once, and all of them when the call ends."""

    def __init__(self) -> None:
        self.mine: set[int] = set()

    def __enter__(self) -> _Fds:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for fd in list(self.mine):
            self.close(fd)

    def open(self, path: str, flags: int) -> int:
        fd = os.open(path, flags, 0o666)  # close-on-exec, like every descriptor Python makes (PEP 446)
        self.mine.add(fd)
        return fd

    def pipe(self) -> tuple[int, int]:
        r, w = os.pipe()  # both ends close-on-exec: the child keeps only what is dup2'ed to 0, 1, 2
        self.mine.update((r, w))
        return r, w

    def close(self, fd: Optional[int]) -> None:
        """Close ``fd`` if this call opened it (and has not closed it yet); a caller's fd is left alone."""
        if fd is not None and fd in self.mine:
            self.mine.discard(fd)
            os.close(fd)


def _start(argv: Sequence[str], env: Optional[Mapping[str, str]], fds: _Fds, stdio: _Stdio) -> int:
    """``_spawn`` for run and stream: a program that cannot be run is a :class:`RunError`."""
    try:
        pid = _spawn(argv, env, stdio)
    except OSError as exc:
        raise RunError(argv, None, "", f"cannot run {argv[0]}: {exc.strerror}") from exc
    # The child has its copies; ours would keep its stdin open and its output pipes from ending.
    for fd in stdio:
        fds.close(fd)
    return pid


def _spawn(argv: Sequence[str], env: Optional[Mapping[str, str]], stdio: _Stdio) -> int:
    """Start ``argv`` in a new session with ``stdio`` as its fds 0, 1, 2 (None: orbsim's own); its pid."""
    actions: list[tuple[int, ...]] = []
    copies: list[int] = []
    try:
        for target, fd in enumerate(stdio):
            if fd is None:
                continue
            # The dup2s run in order in the child: a source among 0..2 (orbsim started with one of
            # them closed) could be overwritten by an earlier one.  A copy numbered 3 or more cannot.
            source = fd
            while source < 3:  # dup2 onto itself keeps close-on-exec on glibc before 2.29
                source = os.dup(source)
                copies.append(source)
            actions.append((os.POSIX_SPAWN_DUP2, source, target))
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
        return os.posix_spawnp(
            _program(argv[0], env),
            list(argv),
            os.environ if env is None else env,
            file_actions=actions,
            setsid=True,
            setsigdef=(_SIGPIPE, _SIGXFSZ),
        )
    finally:
        for fd in copies:
            os.close(fd)


def _program(name: str, env: Optional[Mapping[str, str]]) -> str:
    """``name``, or where it is on ``env``'s PATH: the child's PATH decides, as with subprocess."""
    if env is None or "/" in name:
        return name
    found = which(name, env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    return found


def which(name: str, path: Optional[str] = None) -> Optional[str]:
    """Where ``name`` is on ``path`` (default ``$PATH``), as ``shutil.which`` finds it, without ``shutil``."""
    if "/" in name:
        return name if os.access(name, os.X_OK) and not os.path.isdir(name) else None
    search = os.environ.get("PATH", os.defpath) if path is None else path
    for directory in search.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)  # an empty entry is the current directory
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def _inheritable_fds() -> list[int]:
    """orbsim's inheritable descriptors above 2 (given by its own caller): Popen closed them in the child.

    A long-lived child holding, say, the write end of a CI runner's pipe would keep that pipe open.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    found = []
    for name in names:
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            pass  # the descriptor listdir read the directory with, closed by now
    return found


def _exchange(
    fds: _Fds,
    feed: Optional[int],
    data: bytes,
    readers: dict[int, Callable[[bytes], None]],
    deadline: float,
) -> None:
    """Write ``data`` to ``feed``, hand what each reader yields to its function, until all are closed.

    All at once with poll: a program blocked writing a full stderr pipe while we wait on its
    stdout, or blocked writing output while we wait to write its input, would never finish.
    Raises :class:`_Deadline` when the deadline passes first.
    """
    poller = select.poll()
    for fd in readers:
        poller.register(fd, select.POLLIN)
    active = set(readers)
    view = memoryview(data)
    if feed is not None and view:
        os.set_blocking(feed, False)  # write what fits in the pipe; never wait in os.write
        poller.register(feed, select.POLLOUT)
        active.add(feed)
    else:
        fds.close(feed)  # nothing to write: the program reads end-of-file at once
    while active:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Deadline
        for fd, _ in poller.poll(int(left * 1000) + 1):
            if fd == feed:
                try:
                    written = os.write(fd, view[:_CHUNK])
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    written = len(view)  # the program stopped reading (or exited): the rest is not wanted
                view = view[written:]
                if view:
                    continue
            else:
                chunk = os.read(fd, _CHUNK)
                if chunk:
                    readers[fd](chunk)
                    continue
            poller.unregister(fd)
            active.discard(fd)
            fds.close(fd)


def _drain(fds: _Fds, readers: dict[int, Callable[[bytes], None]]) -> None:
    """After a timeout, hand on what is already in the pipes; no waiting (something may still hold them)."""
    for fd, take in readers.items():
        if fd not in fds.mine:
            continue  # read to its end already
        os.set_blocking(fd, False)
        try:
            while chunk := os.read(fd, _CHUNK):
                take(chunk)
        except BlockingIOError:
            pass


def _wait(pid: int, deadline: float) -> int:
    """Reap ``pid`` before ``deadline``; its exit code (minus the signal that ended it, like subprocess).

    Called once its output has ended, so it has usually exited or is exiting: short sleeps
    suffice (no pidfd).  Raises :class:`_Deadline` when the deadline passes first.
    """
    pause = 0.0001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Deadline
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)


def _end(pid: int) -> None:
    """Kill ``pid``'s process group (its session: what it started, too) and reap it."""
    try:
        os.killpg(pid, _SIGKILL)
    except OSError:
        pass  # the group is gone already
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _fileno(stream: Union[int, IO[bytes]]) -> int:
    return stream if isinstance(stream, int) else stream.fileno()


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", "replace")
