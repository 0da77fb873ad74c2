"""readiness.py against a scripted fake client and a fake clock (no sleeping)."""

from __future__ import annotations

import threading
import time
from typing import Any, Union

import pytest
from fakes import FakeClock, ScriptedOrb, in_turn, info, reply

from pytest_orbstack.errors import MachineNotFoundError, MachineNotReadyError, OrbctlTimeoutError
from pytest_orbstack.models import MachineInfo
from pytest_orbstack.readiness import PROBE, Poll, wait_ready


def probes(*codes: Union[int, Exception]) -> Any:
    """A ``run`` handler answering the readiness probe with these exit codes (the last one repeats)."""
    answer = in_turn(*(reply(code) if isinstance(code, int) else code for code in codes))

    def probe(machine: str, command: list[str], **kwargs: Any) -> Any:
        assert command == list(PROBE)
        assert kwargs["check"] is False
        assert kwargs["timeout"] > 0
        return answer()

    return probe


def scripted(
    infos: list[Union[MachineInfo, Exception]], probe_codes: tuple[Union[int, Exception], ...] = (0,)
) -> ScriptedOrb:
    """Successive ``info`` answers and probe exit codes, each list's last one repeating."""
    return ScriptedOrb().script("info", *infos).on("run", probes(*probe_codes))


def asked(client: ScriptedOrb) -> tuple[int, int]:
    """How many ``info`` calls and probes ``client`` received."""
    return len(client.asked("info")), len(client.asked("run"))


def test_ready_at_once_without_sleeping() -> None:
    clock = FakeClock()
    client = scripted([info("running", "198.19.249.2")])
    result = wait_ready(client, "m1", 10, clock=clock, sleep=clock.sleep)
    assert result.ip4 == "198.19.249.2"
    assert clock.sleeps == []
    assert asked(client)[1] == 1


def test_waits_for_running_and_address_with_growing_interval() -> None:
    clock = FakeClock()
    client = scripted([info("creating"), info("starting"), info("running"), info("running", "198.19.249.3")])
    wait_ready(client, "m1", 10, clock=clock, sleep=clock.sleep)
    assert asked(client) == (4, 1)  # no probe before an address
    assert clock.sleeps == pytest.approx([0.05, 0.075, 0.1125])


def test_interval_is_capped() -> None:
    clock = FakeClock()
    client = scripted([info("starting")] * 30 + [info("running", "198.19.249.3")])
    wait_ready(client, "m1", 60, clock=clock, sleep=clock.sleep, poll=Poll(initial=0.05, factor=2, cap=1.0))
    assert max(clock.sleeps) == 1.0
    assert clock.sleeps[:3] == [0.05, 0.1, 0.2]


def test_probe_failure_keeps_polling() -> None:
    clock = FakeClock()
    timeout_error = OrbctlTimeoutError(["orbctl", "run", "-m", "m1", "true"], 5)
    client = scripted([info("running", "198.19.249.3")], probe_codes=(1, timeout_error, 0))
    wait_ready(client, "m1", 10, clock=clock, sleep=clock.sleep)
    assert asked(client)[1] == 3


def test_deadline_names_machine_time_and_last_state() -> None:
    clock = FakeClock()
    client = scripted([info("starting")])
    with pytest.raises(MachineNotReadyError) as excinfo:
        wait_ready(client, "m1", 5, clock=clock, sleep=clock.sleep)
    err = excinfo.value
    assert err.machine == "m1"
    assert err.last_state == "starting"
    assert err.waited == pytest.approx(5.0)
    assert "'m1'" in str(err)
    assert "5.0s" in str(err)
    assert "starting" in str(err)
    assert clock.now == pytest.approx(105.0)  # never slept past the deadline


def test_stopped_machine_fails_fast() -> None:
    clock = FakeClock()
    client = scripted([info("starting"), info("stopped")])
    with pytest.raises(MachineNotReadyError) as excinfo:
        wait_ready(client, "m1", 100, clock=clock, sleep=clock.sleep)
    assert excinfo.value.last_state == "stopped"
    assert clock.now < 101


def test_vanished_machine_fails_fast() -> None:
    clock = FakeClock()
    gone = MachineNotFoundError(["orbctl", "info", "m1"], 1, "", "[-32098] machine not found: 'm1'")
    client = scripted([info("starting"), gone])
    with pytest.raises(MachineNotReadyError) as excinfo:
        wait_ready(client, "m1", 100, clock=clock, sleep=clock.sleep)
    assert "vanished" in str(excinfo.value)
    assert excinfo.value.last_state == "starting"


def test_probe_runs_alongside_info_once_the_machine_was_seen_running() -> None:
    """``info`` answers only once a probe has started: a client that runs them one after the other fails."""
    clock = FakeClock()
    probing = threading.Event()
    overlapped: list[bool] = []
    answer_info = in_turn(info("running"), info("running", "198.19.249.3"))
    probe = probes(0)

    def info_beside_probe(name: str) -> Any:
        if overlapped:  # from the second info on, a probe must be under way
            overlapped.append(probing.wait(timeout=5))
            probing.clear()
        else:
            overlapped.append(False)
        return answer_info()

    def run(machine: str, command: list[str], **kwargs: Any) -> Any:
        probing.set()
        return probe(machine, command, **kwargs)

    client = ScriptedOrb().on("info", info_beside_probe).on("run", run)
    wait_ready(client, "m1", 10, clock=clock, sleep=clock.sleep)
    assert overlapped == [False, True]  # first info alone (state unknown), then info + probe
    assert asked(client)[1] == 1


def test_just_started_machine_is_probed_from_the_first_round() -> None:
    clock = FakeClock()
    probing = threading.Event()
    probe = probes(0)

    def run(machine: str, command: list[str], **kwargs: Any) -> Any:
        probing.set()
        return probe(machine, command, **kwargs)

    def info_after_probe(name: str) -> Any:
        assert probing.wait(timeout=5), "the probe did not start alongside the first info"
        return info("running", "198.19.249.3")

    client = ScriptedOrb().on("run", run).on("info", info_after_probe)
    assert wait_ready(client, "m1", 10, started=True, clock=clock, sleep=clock.sleep).ip4 == "198.19.249.3"
    assert (*asked(client), clock.sleeps) == (1, 1, [])


def test_stopped_machine_is_never_probed_unless_just_started() -> None:
    """``orbctl run`` starts a stopped machine: waiting on one must fail, not wake it."""
    clock = FakeClock()
    client = scripted([info("stopped")])
    with pytest.raises(MachineNotReadyError, match="stopped"):
        wait_ready(client, "m1", 10, clock=clock, sleep=clock.sleep)
    assert asked(client)[1] == 0


def test_a_probe_in_flight_is_waited_for_before_sleeping() -> None:
    clock = FakeClock()
    client = scripted([info("running"), info("running"), info("running", "198.19.249.3")])
    in_flight = threading.Event()
    probe = probes(0)

    def slow_run(machine: str, command: list[str], **kwargs: Any) -> Any:
        in_flight.set()
        time.sleep(0.05)  # outlasts the info it runs beside
        in_flight.clear()
        return probe(machine, command, **kwargs)

    def sleep(seconds: float) -> None:
        assert not in_flight.is_set(), "slept with a probe still running"
        clock.sleep(seconds)

    client.on("run", slow_run)
    wait_ready(client, "m1", 10, clock=clock, sleep=sleep)
    # round 2 probes beside info (state seen running) and waits for it; its success is
    # remembered, so round 3, which sees the address, needs no second probe
    assert (*asked(client), len(clock.sleeps)) == (3, 1, 2)


def test_a_just_started_machine_never_seen_says_so() -> None:
    clock = FakeClock()
    broken = OrbctlTimeoutError(["orbctl", "info", "m1"], 5)
    client = scripted([broken], probe_codes=(0,))
    with pytest.raises(MachineNotReadyError, match="never seen") as excinfo:
        wait_ready(client, "m1", 3, started=True, clock=clock, sleep=clock.sleep)
    assert excinfo.value.last_state is None


def test_an_error_does_not_wait_for_the_probe_in_flight() -> None:
    """The machine is found stopped while the probe still runs: the error comes at once."""
    clock = FakeClock()
    client = scripted([info("stopped")])
    released, done = threading.Event(), threading.Event()
    outcome: list[bool] = []
    probe = probes(0)

    def stuck_run(machine: str, command: list[str], **kwargs: Any) -> Any:
        outcome.append(released.wait(timeout=10))  # False if wait_ready waited for it
        done.set()
        return probe(machine, command, **kwargs)

    client.on("run", stuck_run)
    with pytest.raises(MachineNotReadyError, match="stopped"):
        wait_ready(client, "m1", 10, started=True, clock=clock, sleep=clock.sleep)
    released.set()
    assert done.wait(timeout=15)
    assert outcome == [True]


def test_a_machine_a_command_just_ran_in_is_not_probed_again() -> None:
    clock = FakeClock()
    client = scripted([info("running"), info("running", "198.19.249.2")])
    result = wait_ready(client, "m1", 10, probed=True, clock=clock, sleep=clock.sleep)
    assert result.ip4 == "198.19.249.2"
    assert asked(client) == (2, 0)


def test_a_machine_still_creating_is_waited_for_up_to_the_creating_timeout() -> None:
    clock = FakeClock()
    creating = [info("creating")] * 200
    client = scripted([*creating, info("provisioning"), info("running", "198.19.249.4")])
    result = wait_ready(client, "m1", 5, creating_timeout=300, clock=clock, sleep=clock.sleep)
    assert result.ip4 == "198.19.249.4"
    assert clock.now - 100.0 > 5  # longer than the ready timeout alone


def test_the_ready_timeout_counts_from_leaving_creation() -> None:
    clock = FakeClock()
    client = scripted([info("creating")] * 50 + [info("running")])  # never an address
    with pytest.raises(MachineNotReadyError, match="no IPv4 address yet") as caught:
        wait_ready(client, "m1", 5, creating_timeout=300, clock=clock, sleep=clock.sleep)
    waited_creating = sum(clock.sleeps[:49])
    assert caught.value.waited == pytest.approx(waited_creating + 5, abs=1.5)


def test_a_creation_that_never_ends_names_the_create_timeout() -> None:
    clock = FakeClock()
    client = scripted([info("creating")])
    with pytest.raises(MachineNotReadyError, match=r"still creating .*create-timeout \(60s\)") as caught:
        wait_ready(client, "m1", 5, creating_timeout=60, clock=clock, sleep=clock.sleep)
    assert caught.value.waited == pytest.approx(60)
    assert caught.value.last_state == "creating"


def test_without_a_creating_timeout_creation_gets_the_ready_timeout() -> None:
    clock = FakeClock()
    client = scripted([info("creating")])
    with pytest.raises(MachineNotReadyError, match="--orb-ready-timeout"):
        wait_ready(client, "m1", 5, clock=clock, sleep=clock.sleep)
    assert clock.now - 100.0 == pytest.approx(5)


def test_a_running_machine_waiting_for_its_address_is_polled_at_short_intervals() -> None:
    """OrbStack's start returns before the address: it is looked for often for the first seconds."""
    clock = FakeClock()
    client = scripted([info("running")] * 40 + [info("running", "198.19.249.3")])
    wait_ready(client, "m1", 60, clock=clock, sleep=clock.sleep, started=True)
    poll = Poll()
    early = [pause for pause, at in zip(clock.sleeps, _times(clock.sleeps)) if at < poll.short_for]
    assert early[:5] == pytest.approx([0.05, 0.075, 0.1125, 0.16875, 0.25])
    assert max(early) == poll.short_cap
    assert max(clock.sleeps) == poll.cap  # later it slows down as before (a machine that never gets one)


def _times(sleeps: list[float]) -> list[float]:
    """When each sleep began, counted from the first."""
    began: list[float] = []
    total = 0.0
    for pause in sleeps:
        began.append(total)
        total += pause
    return began


def test_a_machine_with_its_address_whose_probe_fails_is_not_polled_at_short_intervals() -> None:
    """The short interval is for the address OrbStack is about to show, not for a failing command."""
    clock = FakeClock()
    client = scripted([info("running", "198.19.249.3")], probe_codes=(1,) * 8 + (0,))
    wait_ready(client, "m1", 60, clock=clock, sleep=clock.sleep, started=True)
    assert clock.sleeps[:7] == pytest.approx([0.05 * 1.5**i for i in range(7)])  # 0.57 s, within 5 s
