"""health.py: the shared machine between tests, against a fake provisioner."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Optional

import pytest
from fakes import reply

from pytest_orbstack.errors import MachineNotFoundError, OrbStackNotRunningError
from pytest_orbstack.health import SharedMachine, boot_mark
from pytest_orbstack.report import Stats

STAT = "1 (systemd) S 0 1 1 0 -1 4194560 1 2 0 0 0 0 0 0 20 0 1 0 {start} 1000 10 1"


class FakeClient:
    def __init__(self) -> None:
        self.state: Optional[str] = "running"
        self.boot = "500"
        self.calls: list[str] = []

    def info(self, name: str) -> Any:
        self.calls.append("info")
        if self.state is None:
            raise MachineNotFoundError(["orbctl", "info", name], 1, "", f"machine not found: '{name}'")
        return SimpleNamespace(name=name, state=self.state)

    def run(self, name: str, command: list[str], **kwargs: Any) -> Any:
        self.calls.append("run")
        assert command == ["cat", "/proc/1/stat"]
        return reply(0, STAT.format(start=self.boot), "")


class FakeProvisioner:
    def __init__(self) -> None:
        self.client = FakeClient()
        self.stats = Stats()
        self.readied: list[str] = []
        self.started: list[str] = []
        self.hooks = SimpleNamespace(ready=lambda m: self.readied.append(m.name))

    def start(self, machine: Any) -> None:
        self.started.append(machine.name)
        self.client.state = "running"
        self.client.boot = str(int(self.client.boot) + 1)


def machine(name: str = "m1") -> Any:
    return SimpleNamespace(name=name, suspect=None, deleted=False)


def setup(watch_boot: bool = True) -> tuple[SharedMachine, FakeProvisioner, Any, list[str]]:
    shared, p, m = SharedMachine(), FakeProvisioner(), machine()
    finished: list[str] = []
    shared.bind(lambda: finished.append("finished"))
    shared.handed_out(m, p, watch_boot=watch_boot)  # type: ignore[arg-type]
    p.client.calls.clear()
    return shared, p, m, finished


def events(p: FakeProvisioner) -> list[str]:
    return [line for _, line in p.stats.take_events()]


def test_boot_mark_is_the_init_start_time_even_with_spaces_in_its_name() -> None:
    client = FakeClient()
    client.boot = "4242"
    assert boot_mark(client, "m1") == "4242"
    client.run = lambda *a, **k: reply(0, "1 (my init) S 0", "")  # type: ignore[method-assign]
    assert boot_mark(client, "m1") is None
    assert boot_mark(object(), "m1") is None


def test_no_sign_no_call_without_ready_hooks() -> None:
    shared, p, _m, finished = setup(watch_boot=False)
    p.client.boot = "900"
    for _ in range(5):
        shared.before_test(p)  # type: ignore[arg-type]
    assert p.client.calls == []
    assert finished == []


def test_with_ready_hooks_no_sign_costs_one_run_a_test() -> None:
    shared, p, _m, finished = setup()
    for _ in range(3):
        shared.before_test(p)  # type: ignore[arg-type]
    assert p.client.calls == ["run", "run", "run"]
    assert p.readied == []
    assert finished == []


def test_with_ready_hooks_a_restart_without_a_sign_is_announced_again() -> None:
    shared, p, m, _ = setup()
    p.client.boot = "900"  # the command that killed init exited 0; the next run started it
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.readied == ["m1"]
    assert m.suspect is None
    assert "restarted before this test (its init is not the one the ready hook saw)" in events(p)[0]
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.readied == ["m1"]


def test_with_ready_hooks_a_machine_gone_without_a_sign_is_replaced() -> None:
    shared, p, m, finished = setup()
    p.client.state = None
    p.client.run = lambda *a, **k: reply(1, "", "machine not found")  # type: ignore[method-assign]
    shared.before_test(p)  # type: ignore[arg-type]
    assert finished == ["finished"]
    assert m.deleted


def test_a_gone_machine_is_replaced_once_and_named_with_the_test() -> None:
    shared, p, m, finished = setup()
    shared.used_by(SimpleNamespace(nodeid="t.py::test_kill"), failed=False)  # type: ignore[arg-type]
    m.suspect = "orbctl failed running 'true'"
    p.client.state = None
    shared.before_test(p)  # type: ignore[arg-type]
    assert finished == ["finished"]
    assert shared.replaced == 1
    (line,) = events(p)
    assert line.startswith("orb_vm machine m1 is gone during t.py::test_kill (orbctl failed running 'true')")
    assert p.client.calls == ["info"]
    assert m.suspect is None


def test_a_deleted_machine_is_replaced_without_asking() -> None:
    shared, p, m, finished = setup()
    m.deleted, m.suspect = True, "the test deleted it"
    shared.before_test(p)  # type: ignore[arg-type]
    assert finished == ["finished"]
    assert p.client.calls == []


def test_without_a_way_to_replace_the_test_fails_with_one_line() -> None:
    shared, p, m, _ = setup()
    shared.bind(None)  # type: ignore[arg-type]
    m.deleted, m.suspect = True, "the test deleted it"
    with pytest.raises(pytest.fail.Exception, match=r"orb_vm machine m1 is gone .*cannot be replaced"):
        shared.before_test(p)  # type: ignore[arg-type]


def test_a_stopped_machine_is_started_and_announced_again() -> None:
    shared, p, m, finished = setup()
    m.suspect = "the test stopped it"
    p.client.state = "stopped"
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.started == ["m1"]
    assert p.readied == ["m1"]
    assert finished == []
    assert "pytest_orbstack_machine_ready runs again" in events(p)[0]


def test_a_restarted_machine_is_announced_again_once() -> None:
    shared, p, m, _ = setup()
    p.client.boot = "900"
    m.suspect = "the test failed"
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.readied == ["m1"]
    m.suspect = "the test failed"
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.readied == ["m1"]  # same boot: nothing to do
    assert p.client.calls == ["info", "run", "info", "run"]


def test_without_ready_hooks_a_restart_costs_only_the_info() -> None:
    shared, p, m, _ = setup(watch_boot=False)
    p.client.boot = "900"
    m.suspect = "the test failed"
    shared.before_test(p)  # type: ignore[arg-type]
    assert p.client.calls == ["info"]
    assert p.readied == []


def test_orbstack_trouble_keeps_the_suspicion_for_the_next_test() -> None:
    shared, p, m, finished = setup()
    m.suspect = "the test failed"

    def down(name: str) -> Any:
        raise OrbStackNotRunningError(["orbctl", "info", name], 1, "", "start VM: timed out")

    p.client.info = down  # type: ignore[method-assign]
    shared.before_test(p)  # type: ignore[arg-type]
    assert m.suspect == "the test failed"
    assert finished == []


def test_a_failed_test_makes_the_machine_suspect() -> None:
    shared, _p, m, _ = setup()
    shared.used_by(SimpleNamespace(nodeid="t.py::test_a"), failed=True)  # type: ignore[arg-type]
    assert m.suspect == "the test failed"
    assert shared.last_test == "t.py::test_a"
