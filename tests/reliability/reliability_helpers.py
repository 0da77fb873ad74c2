"""Helpers of the scenario suite: a real pytest subprocess on orbsim, and what it left behind.

Every scenario gets its own ``ORBSIM_HOME`` and its own state directory
(leases, ``reaper.log``), so its ``argv.log`` holds exactly what its runs
sent, fault counters (``ORBSIM_FAULTS`` ``*N``) start afresh at each
repetition, and a scenario can never see another's machines.  The pytest
under test runs in its own session (its own process group), as it would
from a terminal, so signals can be sent to it (or to its group, as Ctrl-C
does) without reaching this test process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Optional

import pytest

PREFIX = "pytest-test-"
#: Repetitions of each scenario in one run, to flush out races (RELIABILITY_REPEAT=1 for a quick look).
REPEAT = range(int(os.environ.get("RELIABILITY_REPEAT", "3")))
#: Bound of one pytest run under test (a hang is a failure, never a stuck suite).
RUN_TIMEOUT = 120.0
#: The scenario's directory for marker files, passed to the inner tests.
SCENARIO_DIR_ENV = "SCENARIO_DIR"
#: Options of every inner run: plain output, no cache, no stray plugins from the outer run.
INNER_ARGS = ("-p", "no:cacheprovider", "-p", "no:randomly", "-o", "console_output_style=classic")
_CLEARED_ENV = ("ORBSIM_FAULTS", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT")


def proc_state(pid: int) -> Optional[str]:
    """The state letter of ``pid`` (``R``, ``S``, ``Z``...), ``None`` if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def running(pid: int) -> bool:
    """True while ``pid`` runs: a zombie has ended (only its parent has not collected it yet)."""
    return proc_state(pid) not in (None, "Z")


def group_members(pgid: int) -> list[int]:
    """Running processes of process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def watchdogs_of(state_dir: Path) -> list[int]:
    """Running watchdog processes started for ``state_dir``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if b"pytest_orbstack.watchdog" in argv and str(state_dir).encode() in argv and running(int(entry)):
            found.append(int(entry))
    return found


def poll(condition: Callable[[], bool], within: float, interval: float = 0.05) -> bool:
    """Poll until ``condition()`` holds; False if it did not within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class PytestRun:
    """A pytest subprocess under test, in its own session, output in a file."""

    def __init__(self, argv: Sequence[str], cwd: Path, env: dict[str, str], output: Path) -> None:
        self.argv = list(argv)
        self.output_path = output
        self._out = open(output, "wb")  # noqa: SIM115 (closed in wait/kill)
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pid = self.proc.pid

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise AssertionError(f"pytest did not finish within {timeout:g}s:\n{self.output}") from None
        finally:
            self._out.close()
        return code

    @property
    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def signal(self, signum: int, *, group: bool = False) -> None:
        """Send ``signum`` to pytest, or to its whole process group as a terminal's Ctrl-C does."""
        if group:
            os.killpg(self.pid, signum)
        else:
            os.kill(self.pid, signum)

    def kill_group(self) -> None:
        """SIGKILL every process of our pytest's group (ours: it was started in its own session)."""
        for pid in group_members(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.returncode is None:
            self.proc.wait(10)


class Scenario:
    """One scenario's orbsim home, state directory, inner test files and runs."""

    def __init__(self, pytester: pytest.Pytester, base: Path, orbsim_bin: str) -> None:
        self.pytester = pytester
        self.orbsim_bin = orbsim_bin
        self.home = base / "orbsim-home"
        self.state_dir = base / "orbstack-state"
        self.markers = base / "markers"
        self.markers.mkdir()
        self.env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
        self.env.update(
            {
                "ORBSIM_HOME": str(self.home),
                "ORBCTL": orbsim_bin,
                "PYTEST_ORBSTACK_STATE_DIR": str(self.state_dir),
                SCENARIO_DIR_ENV: str(self.markers),
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.runs: list[PytestRun] = []

    # --- the inner test suite -------------------------------------------------------------

    def write_tests(self, source: str, name: str = "test_scenario") -> Path:
        return self.pytester.makepyfile(**{name: textwrap.dedent(source)})

    def start(
        self,
        *args: str,
        env: Optional[dict[str, str]] = None,
        unset: Sequence[str] = (),
        python: Optional[str] = None,
    ) -> PytestRun:
        """Start ``python -m pytest ARGS`` on the inner tests (``unset``: variables to remove)."""
        number = len(self.runs)
        argv = [python or sys.executable, "-m", "pytest", *INNER_ARGS, *args]
        full_env = {k: v for k, v in {**self.env, **(env or {})}.items() if k not in unset}
        run = PytestRun(argv, self.pytester.path, full_env, self.markers.parent / f"out{number}.txt")
        self.runs.append(run)
        return run

    def run(
        self, *args: str, env: Optional[dict[str, str]] = None, timeout: float = RUN_TIMEOUT
    ) -> tuple[int, str]:
        run = self.start(*args, env=env)
        code = run.wait(timeout)
        return code, run.output

    # --- what the inner tests tell us ----------------------------------------------------

    def ready_markers(self) -> list[Path]:
        return sorted(self.markers.glob("ready-*"))

    def wait_ready(self, count: int, run: PytestRun, within: float = 60.0) -> list[str]:
        """Wait until ``count`` inner tests hold their machines; their markers' contents."""
        ok = poll(lambda: len(self.ready_markers()) >= count or run.proc.poll() is not None, within)
        markers = self.ready_markers()
        assert ok, f"no {count} ready markers within {within:g}s:\n{run.output}"
        assert len(markers) >= count, f"pytest ended before {count} tests were ready:\n{run.output}"
        return [m.read_text() for m in markers]

    # --- orbsim ------------------------------------------------------------------------------

    def orbsim(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in self.env.items() if k != "ORBSIM_FAULTS"}
        return subprocess.run(
            [self.orbsim_bin, *args], env=env, capture_output=True, text=True, timeout=timeout, check=check
        )

    def machines(self, prefix: str = "") -> list[str]:
        listed = json.loads(self.orbsim("list", "-f", "json").stdout)
        return sorted(m["name"] for m in listed if m["name"].startswith(prefix))

    def argv_log(self) -> list[list[str]]:
        """The arguments of every call orbsim received in this scenario, oldest first."""
        log = self.home / "argv.log"
        if not log.exists():
            return []
        # each line is the whole argv: the program (orbsim, or its orbctl name) then the arguments
        return [json.loads(line)[1:] for line in log.read_text().splitlines() if line.strip()]

    def calls(self, command: str) -> list[list[str]]:
        """argv of every orbsim call of ``command`` (``create``, ``delete``...)."""
        aliases = {"create": {"create", "add", "new"}, "run": {"run", "exec", "shell"}}.get(
            command, {command}
        )
        return [argv for argv in self.argv_log() if argv and argv[0] in aliases]

    def made(self) -> list[str]:
        """Names of the machines the runs made, by ``create`` or by ``clone`` (its last argument)."""
        return [argv[-1] for argv in self.argv_log() if argv and argv[0] in ("create", "add", "new", "clone")]

    def reaper_log(self) -> str:
        log = self.state_dir / "reaper.log"
        return log.read_text() if log.exists() else ""

    # --- the promises ------------------------------------------------------------------------

    def assert_no_leftovers(self, within: float = 10.0) -> None:
        """orbsim lists no ``pytest-test-`` machine within ``within`` seconds (polled)."""
        left: list[str] = []

        def none_left() -> bool:
            left[:] = self.machines(PREFIX)
            return not left

        assert poll(none_left, within, 0.1), (
            f"orbsim still lists {left} {within:g}s after the run\nreaper.log:\n{self.reaper_log()}"
        )

    def assert_watchdogs_gone(self, within: float = 10.0) -> None:
        """No watchdog of this scenario still runs (it never outlives its job)."""
        assert poll(lambda: not watchdogs_of(self.state_dir), within, 0.1), (
            f"watchdog(s) {watchdogs_of(self.state_dir)} still run {within:g}s after the run\n"
            f"reaper.log:\n{self.reaper_log()}"
        )

    def assert_group_gone(self, run: PytestRun, within: float = 40.0) -> None:
        """Every process of the run (xdist workers too) has ended on its own."""
        assert poll(lambda: not group_members(run.pid), within, 0.1), (
            f"processes {group_members(run.pid)} of the run still alive after {within:g}s"
        )

    def cleanup(self) -> None:
        for run in self.runs:
            run.kill_group()
            if not run._out.closed:
                run._out.close()
        for pid in watchdogs_of(self.state_dir):
            # a watchdog that outlived its bound is a failure already reported; end it (started by our runs)
            os.kill(pid, signal.SIGKILL)
        if self.home.exists():
            self.orbsim("reset", check=False)


def one_line_error(output: str, *needles: str) -> str:
    """The single output line that contains every needle (the one-line error)."""
    lines = [line for line in output.splitlines() if all(n in line for n in needles)]
    assert lines, f"no line contains {needles}:\n{output}"
    return lines[0]
