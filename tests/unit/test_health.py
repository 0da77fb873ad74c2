"""health.py: the shared machine between tests, against a fake provisioner."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fakes import Hooks, ScriptedOrb, machine_on, reply

from pytest_orbstack.errors import OrbctlCommandError, OrbStackNotRunningError
from pytest_orbstack.health import SharedMachine, boot_mark
from pytest_orbstack.machine import Machine
from pytest_orbstack.report import Stats

STAT = "1 (systemd) S 0 1 1 0 -1 4194560 1 2 0 0 0 0 0 0 20 0 1 0 {start} 1000 10 1"


def boots(client: ScriptedOrb, start: int) -> None:
    """The machine's init started ``start`` ticks after boot, as ``cat /proc/1/stat`` says."""

    def stat(machine: str, command: list[str], **kwargs: Any) -> Any:
        assert command == ["cat", "/proc/1/stat"]
        return reply(0, STAT.format(start=start), "")

    client.on("run", stat)


class FakeProvisioner:
    """What the shared machine asks of the provisioner: its client, stats, ready hook and start."""

    def __init__(self) -> None:
        self.client = ScriptedOrb("m1")
        self.boot = 500
        boots(self.client, self.boot)
        self.stats = Stats()
        self.hooks = Hooks()

    def start(self, machine: Machine) -> None:
        self.client.start(machine.name)
        self.boot += 1
        boots(self.client, self.boot)

    def readied(self) -> list[str]:
        return [name for hook, name in self.hooks.events if hook == "ready"]


def setup(watch_boot: bool = True) -> tuple[SharedMachine, FakeProvisioner, Machine, list[str]]:
    shared, p = SharedMachine(), FakeProvisioner()
    m = machine_on(p.client)
    finished: list[str] = []
    shared.bind(lambda: finished.append("finished"))
    shared.handed_out(m, p, watch_boot=watch_boot)  # type: ignore[arg-type]
    p.client.received.clear()
    return shared, p, m, finished


def events(p: FakeProvisioner) -> list[str]:
    return [line for _, line in p.stats.take_events()]


def test_boot_mark_is_the_init_start_time_even_with_spaces_in_its_name() -> None:
    client = ScriptedOrb("m1")
    boots(client, 4242)
    assert boot_mark(client, "m1") == "4242"
    client.script("run", reply(0, "1 (my init) S 0", ""))
    assert boot_mark(client, "m1") is None
    assert boot_mark(object(), "m1") is None


def test_no_sign_no_call_without_ready_hooks() -> None:
    shared, p, _m, finished = setup(watch_boot=False)
    boots(p.client, 900)
    for _ in range(5):
        shared.before_test(p)  # type: ignore[arg-type]
    assert p.client.verbs() == []
    assert finished == []


def test_with_ready_hooks_no_sign_costs_one_run_a_test() -> None:
    shared, p, _m, finished = setup()
    for _ in range(3):
        shared.before_test(p)  # type: ignore[arg-type]
    assert p.client.verbs() == ["run", "run", "run"]
    assert p.readied() == []
    assert finished == []


def test_with_ready_hooks_a_restart_without_a_sign_is_announced_again() -> None:
    shared, p, m, _ = setup()
    boots(p.client, 900)  # the command that killed init exited 0; the next run started it
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.readied() == ["m1"]
    assert m.suspect is None
    assert "restarted before this test (its init is not the one the ready hook saw)" in events(p)[0]
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.readied() == ["m1"]


def test_with_ready_hooks_a_machine_gone_without_a_sign_is_replaced() -> None:
    shared, p, m, finished = setup()
    del p.client.machines["m1"]
    p.client.script("run", reply(1, "", "machine not found"))
    shared.before_test(p)  # type: ignore[arg-type]
    assert finished == ["finished"]
    assert m.deleted


def test_a_gone_machine_is_replaced_once_and_named_with_the_test() -> None:
    shared, p, m, finished = setup()
    shared.used_by(SimpleNamespace(nodeid="t.py::test_kill"), failed=False)  # type: ignore[arg-type]
    m.suspect = "orbctl failed running 'true'"
    del p.client.machines["m1"]
    shared.before_test(p)  # type: ignore[arg-type]
    assert finished == ["finished"]
    assert shared.replaced == 1
    (line,) = events(p)
    assert line.startswith("orb_vm machine m1 is gone during t.py::test_kill (orbctl failed running 'true')")
    assert p.client.verbs() == ["info"]
    assert m.suspect is None


def test_a_deleted_machine_is_replaced_without_asking() -> None:
    shared, p, m, finished = setup()
    m.deleted, m.suspect = True, "the test deleted it"
    shared.before_test(p)  # type: ignore[arg-type]
    assert finished == ["finished"]
    assert p.client.verbs() == []


def test_without_a_way_to_replace_the_test_fails_with_one_line() -> None:
    shared, p, m, _ = setup()
    shared.bind(None)  # type: ignore[arg-type]
    m.deleted, m.suspect = True, "the test deleted it"
    with pytest.raises(pytest.fail.Exception, match=r"orb_vm machine m1 is gone .*cannot be replaced"):
        shared.before_test(p)  # type: ignore[arg-type]


def test_a_stopped_machine_is_started_and_announced_again() -> None:
    shared, p, m, finished = setup()
    m.suspect = "the test stopped it"
    p.client.machines["m1"] = "stopped"
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.client.ops("start") == ["m1"]
    assert p.readied() == ["m1"]
    assert finished == []
    assert "pytest_orbstack_machine_ready runs again" in events(p)[0]


def test_a_restarted_machine_is_announced_again_once() -> None:
    shared, p, m, _ = setup()
    boots(p.client, 900)
    m.suspect = "the test failed"
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.readied() == ["m1"]
    m.suspect = "the test failed"
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.readied() == ["m1"]  # same boot: nothing to do
    assert p.client.verbs() == ["info", "run", "info", "run"]


def test_without_ready_hooks_a_restart_costs_only_the_info() -> None:
    shared, p, m, _ = setup(watch_boot=False)
    boots(p.client, 900)
    m.suspect = "the test failed"
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.client.verbs() == ["info"]
    assert p.readied() == []


def test_orbstack_trouble_keeps_the_suspicion_for_the_next_test() -> None:
    shared, p, m, finished = setup()
    m.suspect = "the test failed"

    p.client.script("info", OrbStackNotRunningError(["orbctl", "info", "m1"], 1, "", "start VM: timed out"))
    shared.before_test(p)  # type: ignore[arg-type]
    assert m.suspect == "the test failed"
    assert finished == []


def test_a_failed_test_makes_the_machine_suspect() -> None:
    shared, _p, m, _ = setup()
    shared.used_by(SimpleNamespace(nodeid="t.py::test_a"), failed=True)  # type: ignore[arg-type]
    assert m.suspect == "the test failed"
    assert shared.last_test == "t.py::test_a"


def test_an_unreadable_init_start_time_is_unknown_not_a_restart() -> None:
    shared, p, m, finished = setup()
    stat = reply(0, STAT.format(start=500), "")
    for failure in (reply(1, "", "orbctl: connection reset"), OrbctlCommandError(["orbctl"], 1, "", "reset")):
        p.client.script("run", failure, failure, stat)  # orbctl failing a while, then the same init
        shared.before_test(p)  # type: ignore[arg-type]
        shared.before_test(p)  # type: ignore[arg-type]
    assert p.readied() == []
    assert m.suspect is None
    assert finished == []
    assert shared.boot == "500"


def test_an_init_start_time_unreadable_at_hand_out_is_learnt_later_without_announcing() -> None:
    shared, p, _m, _ = setup()
    shared.boot = None  # the read when orb_vm handed it out failed
    shared.before_test(p)  # type: ignore[arg-type]
    assert shared.boot == "500"
    boots(p.client, 900)
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.readied() == ["m1"]


def test_a_suspect_machine_whose_init_cannot_be_read_is_not_announced_again() -> None:
    shared, p, m, _ = setup()
    m.suspect = "the test failed"
    p.client.script("run", reply(1, "", "orbctl: connection reset"), reply(0, STAT.format(start=500), ""))
    shared.before_test(p)  # type: ignore[arg-type]
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.readied() == []
    assert shared.boot == "500"
