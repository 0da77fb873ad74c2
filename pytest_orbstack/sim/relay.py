"""The user's command (``orbsim run``): run with orbsim's stdin/stdout/stderr, output relayed.

``interactive`` has no deadline of its own, exactly like ``orbctl run``: the
caller decides how long it waits.  ``orbsim run`` imports this module on its
fast path: only cheap modules at import time (``os``, ``select``, ``stat``,
``sys``, ``time``: built into the interpreter).

Output relay
------------
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
import select
import stat
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Optional

    from .enter import Entry


def debug(what: str, argv: Sequence[str]) -> None:
    """Log ``argv`` at DEBUG on the ``orbsim`` logger.

    ``logging`` is not imported for this (it costs milliseconds on every
    ``orbsim run``): if nothing imported it, nothing can have configured it.
    """
    logging = sys.modules.get("logging")
    if logging is not None:
        import shlex  # start-up time: shlex loads re; only needed when logging is in use

        logging.getLogger("orbsim").debug("%s: %s", what, shlex.join(argv))


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
    debug("interactive", argv)
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
