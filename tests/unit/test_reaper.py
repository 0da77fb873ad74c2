"""The watchdog's mechanics, with real processes and a small fake orbctl.

Each test runs a stand-in for pytest (``RUN_CODE``): it takes the run's lease,
starts the watchdog, then obeys commands (finish, die, ...).  The stand-in is
forked by a harness that is a child subreaper, so a watchdog that outlives its
pytest is reparented to the harness, which reaps it and reports its exit code:
"never a zombie, never outlives its job" is checked, not assumed.

The fake orbctl keeps machine names in a JSON file, answers ``list -f json``
and the all-or-nothing multi-name ``delete`` like orbctl-spec.md, and records
every argv.  Scenarios against orbsim and the real plugin are in
``tests/reliability/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest

from pytest_orbstack import signals
from pytest_orbstack.naming import kept_name, machine_name
from pytest_orbstack.ownership import RunLease
from pytest_orbstack.reaper import (
    LOG_NAME,
    InsecureStateDirError,
    Watchdog,
    WatchdogError,
    WatchdogSettings,
    WorkerPin,
    check_state_dir,
    workers_gone,
)
from pytest_orbstack.watchdog import _parse

PREFIX = "pytest-test-"
RUN = "ownrun01"

FAKE_ORBCTL = r"""#!{python}
import fcntl, json, os, sys
state = os.environ["FAKE_ORBCTL_STATE"]
with open(state + ".argv", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
lock = open(state + ".lock", "a")
fcntl.flock(lock, fcntl.LOCK_EX)
with open(state) as f:
    data = json.load(f)
def save(data):
    with open(state + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(state + ".tmp", state)  # readers never see a half-written file
args = sys.argv[1:]
if args[:1] == ["version"]:
    print("Version: 2.0.4 (2000400)\nCommit: 0000000 (v2.0.4)")
elif args[:1] == ["status"]:
    print("Running")
elif args[:1] == ["list"]:
    rec = lambda n: {{"id": "01K2G8TY5GM9C3CN95KCB4ZG8B"[:20] + str(abs(hash(n)))[:6].ljust(6, "0"),
        "name": n, "image": {{"distro": "ubuntu", "version": "jammy", "arch": "arm64",
        "variant": "default"}}, "config": {{"isolated": False, "default_username": "alice"}},
        "builtin": False, "state": "running"}}
    print(json.dumps([rec(n) for n in sorted(data["machines"])], indent=2))
elif args[:1] == ["delete"]:
    names = [a for a in args[1:] if not a.startswith("-")]
    if data.get("fail_deletes", 0):
        data["fail_deletes"] -= 1
        save(data)
        sys.stderr.write("[-32098] delete: service unavailable\n")
        sys.exit(1)
    missing = [n for n in names if n not in data["machines"]]
    if missing:
        sys.stderr.write("[-32098] machine not found: '%s'\n" % missing[0])
        sys.exit(1)
    data["machines"] = [n for n in data["machines"] if n not in names]
    save(data)
else:
    sys.stderr.write("Error: unknown command %r for \"orbctl\"\n" % args[:1])
    sys.exit(1)
"""

#: A stand-in for pytest, forked by the harness: lease, watchdog, then commands from stdin.
RUN_CODE = r"""
import json, os, signal, sys, time
from pathlib import Path
from pytest_orbstack.ownership import RunLease
from pytest_orbstack.reaper import Watchdog, WatchdogSettings

def pytest_standin(state, orbctl, run_id, prefix, settings, keep):
    lease = RunLease.acquire(run_id, prefix, orbctl, Path(state))
    if keep:
        lease.keep(keep)
    dog = Watchdog.start(run_id, prefix, orbctl, Path(state), settings=WatchdogSettings(**settings))
    print("watchdog", dog.pid, flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "finish":
            print("finished", dog.finish(), flush=True)
        elif cmd[0] == "handover":
            dog.handover()
            print("handed over", flush=True)
        elif cmd[0] == "release":
            lease.release()
            print("released", flush=True)
        elif cmd[0] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif cmd[0] == "exit":
            os._exit(3)
        elif cmd[0] == "fork-holding-pipe":
            # a child that keeps the watchdog's pipe open (forked without exec), but not the lease
            pid = os.fork()
            if pid == 0:
                os.close(lease._fd)
                time.sleep(float(cmd[1]))
                os._exit(0)
            print("forked", pid, flush=True)
        elif cmd[0] == "fork-holding-lease":
            # a child that keeps both the pipe and the lease (forked without exec)
            pid = os.fork()
            if pid == 0:
                time.sleep(float(cmd[1]))
                os._exit(0)
            print("forked", pid, flush=True)
"""

#: The harness: a child subreaper that forks the stand-in and reaps everything, reporting exits.
HARNESS_CODE = r"""
import ctypes, json, os, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
exec(open(sys.argv[1]).read())
args = json.loads(sys.argv[2])
child = os.fork()
if child == 0:
    try:
        pytest_standin(**args)
    finally:
        os._exit(0)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    code = os.waitstatus_to_exitcode(status)
    print("reaped", pid, code, flush=True)
"""


class Orbctl:
    """The fake orbctl's machines and the argv it received."""

    def __init__(self, base: Path) -> None:
        self.path = base / "orbctl"
        self.state = base / "orbctl-state.json"
        self.path.write_text(FAKE_ORBCTL.format(python=sys.executable))
        self.path.chmod(0o755)
        self.write([])

    def write(self, machines: list[str], fail_deletes: int = 0) -> None:
        with self._locked():
            self._save({"machines": machines, "fail_deletes": fail_deletes})

    def add(self, name: str) -> None:
        with self._locked():
            data = json.loads(self.state.read_text())
            data["machines"].append(name)
            self._save(data)

    def _save(self, data: dict[str, object]) -> None:
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.state)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(str(self.state) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @property
    def machines(self) -> list[str]:
        return sorted(json.loads(self.state.read_text())["machines"])

    @property
    def calls(self) -> list[list[str]]:
        log = Path(str(self.state) + ".argv")
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def orbctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Orbctl:
    fake = Orbctl(tmp_path)
    monkeypatch.setenv("FAKE_ORBCTL_STATE", str(fake.state))
    return fake


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


FAST = {"poll": 0.2, "confirm_timeout": 2.0, "purge_deadline": 3.0, "linger": 0.3, "workers_timeout": 20.0}


class Run:
    """A pytest stand-in (and its harness) running in other processes."""

    def __init__(self, proc: subprocess.Popen[str], watchdog_pid: int) -> None:
        self.proc = proc
        self.watchdog_pid = watchdog_pid
        self.reaped: dict[int, int] = {}

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        while line.startswith("reaped "):
            _, pid, code = line.split()
            self.reaped[int(pid)] = int(code)
            line = self.proc.stdout.readline()
        return line.strip()

    def watchdog_exit(self, within: float = 30.0) -> int:
        """The watchdog's exit code once the harness reaped it (it was orphaned)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + within
        while self.watchdog_pid not in self.reaped:
            assert time.monotonic() < deadline, "the watchdog did not exit"
            line = self.proc.stdout.readline()
            assert line, "the harness ended without reaping the watchdog"
            if line.startswith("reaped "):
                _, pid, code = line.split()
                self.reaped[int(pid)] = int(code)
        return self.reaped[self.watchdog_pid]


@pytest.fixture
def start_run(tmp_path: Path, orbctl: Orbctl, state: Path) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []
    code = tmp_path / "standin.py"
    code.write_text(RUN_CODE)

    def start(run_id: str = RUN, keep: tuple[str, ...] = (), **settings: float) -> Run:
        args = {
            "state": str(state),
            "orbctl": str(orbctl.path),
            "run_id": run_id,
            "prefix": PREFIX,
            "settings": {**FAST, **settings},
            "keep": list(keep),
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", HARNESS_CODE, str(code), json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        assert first[:1] == ["watchdog"], first
        run = Run(proc, int(first[1]))
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.proc.stdin is not None:
            run.proc.stdin.close()
        try:
            run.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.proc.wait(timeout=10)
        assert run.proc.stdout is not None
        run.proc.stdout.close()


def wait_until(condition: Callable[[], bool], within: float, what: str) -> float:
    """Poll ``condition``; return the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < within, f"not within {within:g}s: {what}"
        time.sleep(0.02)
    return time.monotonic() - start


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def ignores_sigint(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
    return bool(ignored & (1 << (signal.SIGINT - 1)))


@pytest.fixture
def other_live_run(state: Path) -> Iterator[str]:
    """Another run, alive in another process for the whole test."""
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from pytest_orbstack.ownership import RunLease
        RunLease.acquire("otherrun", {PREFIX!r}, "orbctl", Path({str(state)!r}))
        print("held", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    assert proc.stdout.readline().strip() == "held"
    yield "otherrun"
    proc.stdin.close()
    proc.wait(timeout=10)
    proc.stdout.close()


def own(token: str, worker: str = "main") -> str:
    return machine_name(PREFIX, RUN, worker, token)


def log_text(state: Path) -> str:
    log = state / LOG_NAME
    return log.read_text() if log.exists() else ""


# ---------------------------------------------------------------------------


def test_clean_finish_reaps_the_watchdog_at_once_and_touches_nothing(
    orbctl: Orbctl, state: Path, start_run: Callable[..., Run]
) -> None:
    machines = sorted([own("aaaaaa"), own("bbbbbb"), "ubuntu"])
    orbctl.write(machines)
    run = start_run()
    run.send("finish")
    assert run.read() == "finished 0"  # exit code 0, reaped by pytest itself
    assert not alive(run.watchdog_pid)
    run.send("release")
    assert run.read() == "released"
    run.proc.stdin.close()  # type: ignore[union-attr]
    run.proc.wait(timeout=10)
    assert orbctl.machines == machines
    assert orbctl.calls == []  # a clean finish costs no orbctl call
    assert log_text(state) == ""


@pytest.mark.parametrize("death", ["kill", "exit"])
def test_a_dead_pytest_has_its_machines_deleted(
    death: str, orbctl: Orbctl, state: Path, start_run: Callable[..., Run], other_live_run: str
) -> None:
    others = sorted([machine_name(PREFIX, other_live_run, "gw0", "cccccc"), "ubuntu", "pytest_test_x"])
    orbctl.write(sorted([own("aaaaaa"), own("bbbbbb", "gw1"), *others]))
    run = start_run()
    run.send(death)  # SIGKILL, or os._exit as pytest-timeout's thread method does
    # promised within 5 s; polled with the suite's 10 s bound, as machines here are shared and noisy
    wait_until(lambda: orbctl.machines == others, 10.0, "the run's machines deleted")
    assert run.watchdog_exit() == 0
    deletes = [c for c in orbctl.calls if c[0] == "delete"]
    assert len(deletes) == 1  # one multi-name delete
    named = [arg for arg in deletes[0][1:] if not arg.startswith("-")]
    assert sorted(named) == sorted([own("aaaaaa"), own("bbbbbb", "gw1")])
    assert not (state / "runs" / f"{RUN}.json").exists()  # the lease is removed
    assert own("aaaaaa") in log_text(state)


def test_kept_machines_and_their_lease_survive_a_crash(
    orbctl: Orbctl, state: Path, start_run: Callable[..., Run]
) -> None:
    kept = kept_name(own("keptkk"))  # what the plugin renames a kept machine to
    orbctl.write(sorted([own("aaaaaa"), kept]))
    run = start_run(keep=(kept,))
    run.send("kill")
    assert run.watchdog_exit() == 0
    assert orbctl.machines == [kept]
    lease = json.loads((state / "runs" / f"{RUN}.json").read_text())
    assert lease["kept"] == [kept]


def test_the_watchdog_imports_nothing_from_the_state_dir_or_the_current_directory(
    orbctl: Orbctl, state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "planted-code-ran"
    planted = f"open({str(marker)!r}, 'w').close()\nraise SystemExit(99)\n"
    state.mkdir(mode=0o700)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for where in (state, cwd):
        for module in ("argparse.py", "select.py", "runpy.py", "pytest_orbstack.py"):
            (where / module).write_text(planted)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PYTHONPATH", str(cwd))
    monkeypatch.setenv("PYTHONSTARTUP", str(cwd / "argparse.py"))
    lease = RunLease.acquire(RUN, PREFIX, str(orbctl.path), state)
    try:
        dog = Watchdog.start(RUN, PREFIX, str(orbctl.path), state)
        wait_until(lambda: ignores_sigint(dog.pid), 10.0, "the watchdog set up its signals")
        argv = Path(f"/proc/{dog.pid}/cmdline").read_bytes().split(b"\0")
        assert os.readlink(f"/proc/{dog.pid}/cwd") == "/"
        assert dog.finish() == 0
    finally:
        lease.release()
    assert argv[1] == b"-I"
    assert not marker.exists()


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o1777])
def test_a_state_dir_others_can_write_is_refused_in_one_line(orbctl: Orbctl, state: Path, mode: int) -> None:
    state.mkdir()
    state.chmod(mode)
    with pytest.raises(InsecureStateDirError) as info:
        Watchdog.start(RUN, PREFIX, str(orbctl.path), state)
    message = str(info.value)
    assert "\n" not in message
    assert "writable by group or others" in message
    assert str(state) in message
    assert "PYTEST_ORBSTACK_STATE_DIR" in message
    assert not (state / LOG_NAME).exists()  # nothing was started from it


def test_a_state_dir_of_another_user_is_refused(
    orbctl: Orbctl, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state.mkdir(mode=0o700)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(state).st_uid + 1)
    with pytest.raises(InsecureStateDirError, match="owned by another user"):
        check_state_dir(state)


def test_a_closed_pipe_while_pytest_lives_deletes_nothing_until_pytest_exits(
    orbctl: Orbctl, state: Path, start_run: Callable[..., Run]
) -> None:
    orbctl.write([own("aaaaaa")])
    run = start_run()
    run.send("handover")
    assert run.read() == "handed over"
    time.sleep(1.0)  # longer than the watchdog's poll and confirm steps: it must still wait
    assert alive(run.watchdog_pid)
    assert orbctl.machines == [own("aaaaaa")]
    assert orbctl.calls == []
    run.send("exit")
    assert run.watchdog_exit() == 0
    assert orbctl.machines == []


def test_an_orphaned_watchdog_acts_although_a_forked_child_keeps_its_pipe(
    orbctl: Orbctl, state: Path, start_run: Callable[..., Run]
) -> None:
    orbctl.write([own("aaaaaa")])
    run = start_run()
    run.send("fork-holding-pipe 8")
    forked = int(run.read().split()[1])
    try:
        run.send("kill")
        wait_until(lambda: orbctl.machines == [], 10.0, "purge although the pipe is still open")
        assert run.watchdog_exit() == 0
    finally:
        os.kill(forked, signal.SIGKILL)


def test_a_lease_still_held_is_never_purged_and_the_wait_is_bounded(
    orbctl: Orbctl, state: Path, start_run: Callable[..., Run]
) -> None:
    orbctl.write([own("aaaaaa")])
    run = start_run(confirm_timeout=1.0)
    run.send("fork-holding-lease 30")
    forked = int(run.read().split()[1])
    try:
        run.send("kill")
        assert run.watchdog_exit(within=10) == 2
        assert orbctl.machines == [own("aaaaaa")]
        assert "still locked" in log_text(state)
    finally:
        os.kill(forked, signal.SIGKILL)


def test_a_failing_purge_is_retried_then_succeeds(
    orbctl: Orbctl, state: Path, start_run: Callable[..., Run]
) -> None:
    orbctl.write([own("aaaaaa")], fail_deletes=2)
    run = start_run()
    run.send("kill")
    assert run.watchdog_exit() == 0
    assert orbctl.machines == []
    assert [c[0] for c in orbctl.calls].count("delete") == 3


def test_a_purge_that_keeps_failing_is_logged_and_bounded(
    orbctl: Orbctl, state: Path, start_run: Callable[..., Run]
) -> None:
    orbctl.write([own("aaaaaa")], fail_deletes=1000)
    run = start_run(purge_deadline=1.0)
    run.send("kill")
    assert run.watchdog_exit(within=15) == 1
    assert orbctl.machines == [own("aaaaaa")]
    log = log_text(state)
    assert "purge failed" in log
    assert "service unavailable" in log
    assert not (state / "runs" / f"{RUN}.json").exists()


def test_a_missing_orbctl_is_logged_and_bounded(
    orbctl: Orbctl, state: Path, start_run: Callable[..., Run]
) -> None:
    run = start_run(purge_deadline=0.5)
    orbctl.path.unlink()
    run.send("kill")
    assert run.watchdog_exit(within=15) == 1
    assert "purge failed" in log_text(state)


def test_the_watchdog_keeps_purging_while_xdist_workers_outlive_their_controller(
    orbctl: Orbctl, state: Path, start_run: Callable[..., Run]
) -> None:
    orbctl.write([own("aaaaaa", "gw0")])
    run = start_run()
    pin = WorkerPin.hold(RUN, state)  # a worker of the run (our process stands in for it)
    try:
        run.send("kill")
        wait_until(lambda: orbctl.machines == [], 10.0, "first purge")
        orbctl.add(own("latecr", "gw0"))  # the orphaned worker creates one more machine
        wait_until(lambda: orbctl.machines == [], 10.0, "purge while the worker lives")
        orbctl.add(own("latec2", "gw0"))
        time.sleep(0.2)
        assert alive(run.watchdog_pid)
    finally:
        pin.release()
    assert run.watchdog_exit() == 0
    assert orbctl.machines == []
    assert not pin.path.exists()


def test_finish_hands_over_while_a_worker_holds_its_pin(
    orbctl: Orbctl, state: Path, start_run: Callable[..., Run]
) -> None:
    run = start_run()
    pin = WorkerPin.hold(RUN, state)
    try:
        run.send("finish")
        assert run.read() == "finished None"
        run.send("release")
        assert run.read() == "released"
        orbctl.add(own("strggl", "gw1"))  # a machine the worker made late
        time.sleep(0.5)
        assert alive(run.watchdog_pid)
    finally:
        pin.release()
    run.send("exit")
    assert run.watchdog_exit() == 0
    assert orbctl.machines == []


def test_the_watchdog_runs_in_its_own_session_and_ignores_the_terminals_ctrl_c(
    orbctl: Orbctl, state: Path, start_run: Callable[..., Run]
) -> None:
    run = start_run()
    wait_until(lambda: ignores_sigint(run.watchdog_pid), 10.0, "the watchdog set up its signals")
    assert os.getsid(run.watchdog_pid) == run.watchdog_pid
    assert os.getpgid(run.watchdog_pid) != os.getpgid(run.proc.pid)
    os.kill(run.watchdog_pid, signal.SIGINT)  # even sent directly, Ctrl-C does not stop it
    time.sleep(0.3)
    assert alive(run.watchdog_pid)
    run.send("finish")
    assert run.read() == "finished 0"


def test_finish_kills_a_watchdog_that_does_not_answer(state: Path, tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.PIPE)
    dog = Watchdog(sleeper, RUN, state / LOG_NAME, state / "runs" / f"{RUN}.workers")
    assert dog.finish(timeout=0.5) == -signal.SIGKILL
    assert dog.exit_code() == -signal.SIGKILL


def test_a_watchdog_that_cannot_start_is_a_typed_error(
    orbctl: Orbctl, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(state / "no-such-python"))
    with pytest.raises(WatchdogError, match="cannot start the pytest-orbstack watchdog") as info:
        Watchdog.start(RUN, PREFIX, str(orbctl.path), state)
    assert info.value.log == state.absolute() / LOG_NAME


def test_the_log_is_rotated_past_one_mebibyte(orbctl: Orbctl, state: Path) -> None:
    state.mkdir()
    (state / LOG_NAME).write_bytes(b"x" * (2 << 20))
    lease = RunLease.acquire(RUN, PREFIX, str(orbctl.path), state)
    try:
        dog = Watchdog.start(RUN, PREFIX, str(orbctl.path), state)
        assert dog.finish() == 0
    finally:
        lease.release()
    assert (state / (LOG_NAME + ".1")).stat().st_size == 2 << 20
    assert (state / LOG_NAME).stat().st_size == 0


def test_settings_travel_to_the_watchdog_unchanged() -> None:
    settings = WatchdogSettings(
        poll=0.5, confirm_timeout=7.0, purge_deadline=9.5, linger=1.0, workers_timeout=3
    )
    common = ["--run-id", RUN, "--prefix", PREFIX, "--orbctl", "/o", "--state-dir", "/s", "--parent-pid", "1"]
    args, parsed = _parse([*common, *settings.to_argv()])
    assert parsed == settings
    assert (args.run_id, args.prefix, args.orbctl, args.state_dir, args.parent_pid) == (
        RUN,
        PREFIX,
        "/o",
        "/s",
        1,
    )
    assert _parse(common)[1] == WatchdogSettings()


def test_a_worker_pin_is_visible_until_released(state: Path) -> None:
    pin = WorkerPin.hold(RUN, state)
    assert pin.held
    assert not workers_gone(pin.path)
    second = WorkerPin.hold(RUN, state)  # another worker shares it
    pin.release()
    assert not workers_gone(pin.path)
    second.release()
    second.release()  # idempotent
    assert workers_gone(pin.path, remove=True)
    assert not pin.path.exists()
    assert workers_gone(pin.path)  # no file: no worker


# ---------------------------------------------------------------------------
# signals.py


SIGTERM_CODE = r"""
import os, signal, sys, time
from pytest_orbstack import signals
assert signals.install_sigterm_handler()
try:
    print("ready", flush=True)
    time.sleep(30)
except signals.Terminated as exc:
    print("teardown:", exc, isinstance(exc, KeyboardInterrupt), flush=True)
signals.restore_sigterm_handler()
print("restored", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
"""


def test_sigterm_becomes_a_keyboard_interrupt_and_is_restored() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_CODE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert out.splitlines() == [
        "teardown: received SIGTERM: tearing down as for Ctrl-C True",
        "restored True",
    ]
    assert proc.returncode == 0


@pytest.fixture
def sigterm_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """SIGTERM at its default and no install counted, whatever the pytest running us installed."""
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    monkeypatch.setattr(signals, "_depth", 0)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("sigterm_default")
def test_a_handler_set_by_someone_else_is_never_replaced() -> None:
    def theirs(signum: int, frame: object) -> None:
        pass

    signal.signal(signal.SIGTERM, theirs)
    assert not signals.install_sigterm_handler()
    assert signal.getsignal(signal.SIGTERM) is theirs
    signals.restore_sigterm_handler()
    assert signal.getsignal(signal.SIGTERM) is theirs


@pytest.mark.usefixtures("sigterm_default")
def test_nested_installs_restore_at_the_outermost_and_leave_a_later_handler_alone() -> None:
    assert signals.install_sigterm_handler()  # the outer pytest
    ours = signal.getsignal(signal.SIGTERM)
    assert ours is not signal.SIG_DFL
    assert signals.install_sigterm_handler()  # a pytester run inside it
    signals.restore_sigterm_handler()  # the inner run ends: the outer run keeps its handler
    assert signal.getsignal(signal.SIGTERM) is ours
    signals.restore_sigterm_handler()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    signals.restore_sigterm_handler()  # unpaired: no-op
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signals.install_sigterm_handler()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # someone replaced ours meanwhile
    signals.restore_sigterm_handler()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


@pytest.mark.usefixtures("sigterm_default")
def test_no_handler_from_another_thread() -> None:
    result: list[Optional[bool]] = [None]
    thread = threading.Thread(target=lambda: result.__setitem__(0, signals.install_sigterm_handler()))
    thread.start()
    thread.join()
    assert result == [False]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
