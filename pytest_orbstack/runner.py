"""Running one program with a deadline and bounded output: the machinery under ``client.execute``.

:func:`run` starts ``argv`` in its own process group (stdin at ``/dev/null``
unless input is given), feeds it its input, and keeps only the last ``limit``
bytes of stdout and of stderr (:class:`Tail`).  ``seconds`` is a deadline for
the whole call: at the deadline, or when the caller is interrupted, the whole
process group is killed, its output collected for at most :data:`DRAIN_SECONDS`
more, and its pipes closed.  Only :meth:`pytest_orbstack.client.OrbctlClient.execute`
calls it: that is where orbctl's argv is logged and its failures are classified.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Optional, final

__all__ = ["DRAIN_SECONDS", "Outcome", "Tail", "run"]

#: Seconds to collect the output of a killed process group (after its deadline).
DRAIN_SECONDS: Final = 0.25
_CHUNK: Final = 65536


class Tail:
    """The last ``limit`` bytes written to it, and how many bytes came before them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._chunks: deque[bytes] = deque()
        self._kept = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._chunks.append(chunk)
        self._kept += len(chunk)
        while self._chunks and self._kept - len(self._chunks[0]) >= self.limit:
            self._kept -= len(self._chunks.popleft())

    @property
    def dropped(self) -> int:
        return max(0, self.total - self.limit)

    def data(self) -> bytes:
        """The kept bytes (the last ``limit``)."""
        joined = b"".join(self._chunks)
        return joined[len(joined) - min(len(joined), self.limit) :]

    def text(self) -> str:
        return self.data().decode("utf-8", errors="replace")


def _collect(proc: subprocess.Popen[bytes], data: bytes, deadline: float, out: Tail, err: Tail) -> bool:
    """Feed ``data`` to stdin and read stdout / stderr until both end; False at ``deadline``."""
    with selectors.DefaultSelector() as selector:
        for pipe, tail in ((proc.stdout, out), (proc.stderr, err)):
            if pipe is not None:
                selector.register(pipe.fileno(), selectors.EVENT_READ, tail)
        if proc.stdin is not None:
            if data:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE, None)
            else:
                proc.stdin.close()
        view = memoryview(data)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for key, _ in selector.select(remaining):
                if key.data is None:  # stdin
                    try:
                        view = view[os.write(key.fd, view[:_CHUNK]) :]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        view = view[:0]
                    if not view:
                        selector.unregister(key.fd)
                        proc.stdin.close()  # type: ignore[union-attr]
                    continue
                chunk = os.read(key.fd, _CHUNK)
                if chunk:
                    key.data.add(chunk)
                else:
                    selector.unregister(key.fd)
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def _kill_group(proc: subprocess.Popen[bytes], out: Tail, err: Tail) -> None:
    """Kill the process group of ``proc``, collect what it printed for a moment, close its pipes."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group may be gone already
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, ValueError):
        _collect(proc, b"", time.monotonic() + DRAIN_SECONDS, out, err)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):  # a process that left the group may hold one
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    if proc.poll() is None:  # not reaped yet: its pid is still its own
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)  # the leader itself, should it have left its group
    proc.wait()


@final
@dataclass(frozen=True)
class Outcome:
    """What one run left: the exit code (``None``: killed at its deadline), the output kept, the time."""

    returncode: Optional[int]
    stdout: Tail
    stderr: Tail
    #: seconds from the start to the end of the output
    duration: float

    @property
    def finished(self) -> bool:
        """Whether the program ended by itself before its deadline."""
        return self.returncode is not None


def run(
    argv: Sequence[str], *, env: Mapping[str, str], input: Optional[bytes], seconds: float, limit: int
) -> Outcome:
    """Run ``argv`` (no shell) until it ends or ``seconds`` pass; raises :class:`OSError` if it cannot start.

    ``input`` (``None``: stdin at ``/dev/null``) is written to its stdin;
    ``limit`` bytes of each output stream are kept.  ``env`` is its whole
    environment.
    """
    __tracebackhide__ = True  # keep env values out of tracebacks (pytest prints frame arguments)
    started = time.monotonic()
    proc = subprocess.Popen(  # noqa: S603 - an argv list built by the caller, no shell
        argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    out, err = Tail(limit), Tail(limit)
    try:
        finished = _collect(proc, input or b"", started + seconds, out, err)
    except BaseException:
        _kill_group(proc, out, err)
        raise
    if not finished:
        _kill_group(proc, out, err)
        return Outcome(None, out, err, time.monotonic() - started)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return Outcome(proc.returncode, out, err, time.monotonic() - started)
