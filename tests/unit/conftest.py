"""A scriptable fake ``orbctl`` for the client tests: a real executable that records its calls."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SCRIPT = """#!{python}
import json, os, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "spec.json")) as f:
    spec = json.load(f)
argv = sys.argv[1:]
data = sys.stdin.read()
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({{"argv": argv, "env": dict(os.environ), "stdin": os.path.realpath("/proc/self/fd/0"),
                        "input": data, "pid": os.getpid()}}) + "\\n")
answers = spec["answers"]
answer = answers.get(argv[0] if argv else "", answers.get("*", {{}}))
if answer.get("grandchild"):
    child = subprocess.Popen(["sleep", "300"])
    with open(os.path.join(here, "grandchild.pid"), "w") as f:
        f.write(str(child.pid))
if "stdout_hex" in answer:
    sys.stdout.buffer.write(bytes.fromhex(answer["stdout_hex"]))
sys.stdout.write(answer.get("stdout", ""))
sys.stdout.flush()
sys.stderr.write(answer.get("stderr", ""))
sys.stderr.flush()
time.sleep(answer.get("sleep", 0))
sys.exit(answer.get("code", 0))
"""


class FakeOrbctl:
    """An executable ``orbctl`` stand-in; ``answer()`` sets what a subcommand prints and returns."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / "orbctl"
        self.path.write_text(_SCRIPT.format(python=sys.executable))
        self.path.chmod(0o755)
        self._answers: dict[str, dict[str, Any]] = {}
        self._write()

    def _write(self) -> None:
        (self.dir / "spec.json").write_text(json.dumps({"answers": self._answers}))

    def answer(self, command: str = "*", **behaviour: Any) -> FakeOrbctl:
        """``stdout``, ``stderr``, ``code``, ``sleep``, ``grandchild``, ``stdout_hex`` for ``command``."""
        self._answers[command] = behaviour
        self._write()
        return self

    def calls(self) -> list[dict[str, Any]]:
        log = self.dir / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]

    @staticmethod
    def sleep_alive(pid: int) -> bool:
        """Whether ``pid`` is still the fake's ``sleep 300`` grandchild (not a zombie, not reused)."""
        return is_our_sleep(pid)

    def grandchild_pid(self) -> int | None:
        path = self.dir / "grandchild.pid"
        return int(path.read_text()) if path.exists() else None


@pytest.fixture
def fake_orbctl(tmp_path: Path) -> Iterator[FakeOrbctl]:
    directory = tmp_path / "fake-bin"
    directory.mkdir()
    fake = FakeOrbctl(directory)
    yield fake
    pid = fake.grandchild_pid()
    if pid is not None and is_our_sleep(pid):  # only ever the sleep this fake started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def is_our_sleep(pid: int) -> bool:
    """Whether ``pid`` is still the fake's ``sleep 300`` (not a zombie, not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return cmdline == b"sleep\x00300\x00" and state != "Z"
