"""diagnostics.py, the reporting helpers of report.py and timeout.py, without orbctl."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any, NamedTuple, Union

import pytest
from fakes import ScriptedOrb, info, machine_on

from pytest_orbstack.diagnostics import LOG_LINES, logs_tail, with_logs
from pytest_orbstack.errors import MachineNotFoundError, MachineNotReadyError
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.report import Stats, failure_section, machine_properties
from pytest_orbstack.results import CommandRecord
from pytest_orbstack.timeout import TimeoutPause


def logs(said: Union[str, Exception]) -> ScriptedOrb:
    """A client whose ``orbctl logs`` prints ``said`` (or fails with it)."""
    return ScriptedOrb().script("logs", said)


def test_logs_tail_keeps_the_last_lines_in_one_call() -> None:
    client = logs("".join(f"line {n}\n" for n in range(100)))
    tail = logs_tail(client, "m1")
    assert client.said() == [("logs", "m1")]
    assert tail.splitlines() == [f"  line {n}" for n in range(100 - LOG_LINES, 100)]


def test_logs_tail_clips_long_lines_and_skips_blank_ones() -> None:
    tail = logs_tail(logs("x" * 5000 + "\n\n   \nlast\n"), "m1")
    first, last = tail.splitlines()
    assert len(first) < 400
    assert last == "  last"


def test_logs_tail_never_raises() -> None:
    error = MachineNotFoundError(["orbctl", "logs", "m1"], 1, "", "machine not found: 'm1'")
    assert logs_tail(logs(error), "m1").startswith("  (orbctl logs failed: ")
    assert logs_tail(object(), "m1") == "  (the orbctl client has no logs())"
    assert logs_tail(logs(""), "m1") == "  (empty)"


def test_logs_errors_printed_on_stdout_are_shown_as_printed() -> None:
    # orbctl logs reports its own errors on stdout with exit 0
    tail = logs_tail(logs("[-32098] machine not found: 'm1'\n"), "m1")
    assert tail == "  [-32098] machine not found: 'm1'"


def test_with_logs_and_not_ready_error_show_the_tail() -> None:
    text = with_logs("it broke", logs("boot 1\n"), "m1")
    assert text == "it broke\nlast lines of orbctl logs m1:\n  boot 1"
    error = MachineNotReadyError("m1", 3.0, "running", "no IPv4 address yet", "  boot 1")
    assert error.logs == "  boot 1"
    assert str(error).endswith("(last state: running)\nlast lines of orbctl logs m1:\n  boot 1")
    assert "\n" not in str(MachineNotReadyError("m1", 3.0, None, "timed out"))


def test_failure_section_shows_logs_and_why_a_command_has_no_exit_code() -> None:
    history = [
        CommandRecord("sh -c 'echo hi'", 0, 0.1),
        CommandRecord("sh -c 'sleep 60'", None, 5.0, "interrupted while running: Failed"),
        CommandRecord("true", None, 0.0),
    ]
    text = failure_section(None, "machine not found", history, "  boot 1")
    assert text.splitlines() == [
        "info unavailable: machine not found",
        "orbctl logs (last lines):",
        "  boot 1",
        "last commands (3):",
        "  $ sh -c 'echo hi'  -> exit 0 in 0.10s",
        "  $ sh -c 'sleep 60'  -> no exit code (interrupted while running: Failed) in 5.00s",
        "  $ true  -> no exit code (orbctl failed) in 0.00s",
    ]


def test_machine_properties_come_from_what_was_seen() -> None:
    client, spec = ScriptedOrb(), MachineSpec("ubuntu:22.04")
    machines = [
        machine_on(client, "a", spec, info("running", "198.19.249.7", name="a")),  # ubuntu:jammy
        machine_on(client, "b", spec),
    ]
    assert machine_properties(machines) == [
        ("orbstack_machine", "a"),
        ("orbstack_image", "ubuntu:jammy"),
        ("orbstack_ip4", "198.19.249.7"),
        ("orbstack_machine", "b"),
        ("orbstack_image", "ubuntu:22.04"),
        ("orbstack_ip4", ""),
    ]


def test_waiting_is_said_now_on_the_main_thread_and_queued_elsewhere() -> None:
    stats = Stats()
    stats.waiting("no notifier yet")
    said: list[str] = []
    stats.notify = said.append
    stats.waiting("building base")
    thread = threading.Thread(target=stats.waiting, args=("in the background",))
    thread.start()
    thread.join()
    assert said == ["building base"]
    assert stats.take_events() == [(True, "no notifier yet"), (True, "in the background")]


class Settings(NamedTuple):
    timeout: float
    method: str


class FakeTimer:
    """pytest-timeout's two hooks, through a TimeoutPause wrapped around them (as pluggy would)."""

    def __init__(self, pause: TimeoutPause) -> None:
        self.pause = pause
        self.armed: list[float] = []
        self.cancelled = 0

    def set_timer(self, item: Any, settings: Settings) -> None:
        wrapper = self.pause.pytest_timeout_set_timer(item, settings)
        next(wrapper)
        self.armed.append(settings.timeout)
        with pytest.raises(StopIteration):
            next(wrapper)

    def cancel_timer(self, item: Any) -> None:
        wrapper = self.pause.pytest_timeout_cancel_timer(item)
        next(wrapper)
        self.cancelled += 1
        with pytest.raises(StopIteration):
            next(wrapper)


def _item(timer: FakeTimer) -> Any:
    hook = SimpleNamespace(
        pytest_timeout_set_timer=timer.set_timer,
        pytest_timeout_cancel_timer=timer.cancel_timer,
    )
    return SimpleNamespace(config=SimpleNamespace(hook=hook))


def test_pause_disarms_and_rearms_with_the_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("pytest_orbstack.timeout.time.monotonic", lambda: now[0])
    pause = TimeoutPause()
    timer = FakeTimer(pause)
    item = _item(timer)
    timer.set_timer(item, Settings(10.0, "signal"))
    now[0] += 4.0  # the test ran 4 s
    with pause.paused():
        assert timer.cancelled == 1
        now[0] += 100.0  # making the machine: not charged
        with pause.paused():  # nested: nothing more
            pass
    assert timer.cancelled == 1
    assert timer.armed == [10.0, 6.0]
    now[0] += 1.0
    with pause.paused():
        pass
    assert timer.armed == [10.0, 6.0, 5.0]


def test_pause_does_nothing_without_a_running_timer_or_off_the_main_thread() -> None:
    pause = TimeoutPause()
    timer = FakeTimer(pause)
    item = _item(timer)
    with pause.paused():
        pass
    timer.set_timer(item, Settings(10.0, "signal"))
    thread = threading.Thread(target=lambda: pause.paused().__enter__())
    thread.start()
    thread.join()
    timer.cancel_timer(item)
    with pause.paused():
        pass
    assert timer.armed == [10.0]
    assert timer.cancelled == 1
