"""Each pytest_orbstack_* hook, implemented in a pytester conftest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

HOOKS_CONFTEST = """
import json, os

LOG = os.environ["HOOK_LOG"]

def _log(event, machine):
    with open(LOG, "a") as f:
        f.write(json.dumps([event, machine.name]) + "\\n")

def pytest_orbstack_provision(machine, config):
    _log("provision", machine)
    machine.write_text("/tmp/provisioned", "yes", user="root")

def pytest_orbstack_machine_ready(machine, config):
    assert machine.read_text("/tmp/provisioned") == "yes"
    _log("ready", machine)

def pytest_orbstack_machine_teardown(machine, config):
    _log("teardown", machine)
    # still alive: logs can be collected here
    assert machine.run("cat /tmp/provisioned").stdout == "yes"
"""


def _events(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_machine_hooks_run_in_order_on_every_machine(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    mode: list[str],
) -> None:
    log = tmp_path / "hooks.log"
    monkeypatch.setenv("HOOK_LOG", str(log))
    pytester.makeconftest(HOOKS_CONFTEST)
    pytester.makepyfile(
        """
        def test_shared(orb_vm):
            assert orb_vm.read_text("/tmp/provisioned") == "yes"

        def test_fresh(orb_vm_fresh):
            assert orb_vm_fresh.read_text("/tmp/provisioned") == "yes"

        def test_factory(orb_machines):
            for m in orb_machines.create_many(2):
                assert m.read_text("/tmp/provisioned") == "yes"
        """
    )
    result = run_pytest(*mode, "--orb-clone", "never")  # cloning: see test_clone.py
    result.assert_outcomes(passed=3)
    events = _events(log)
    names = {name for _, name in events}
    assert len(names) >= 4  # at least one orb_vm, one fresh, two from the factory
    for name in names:
        assert [event for event, n in events if n == name] == ["provision", "ready", "teardown"], name
    assert_no_leftovers()


def test_failing_provision_hook_errors_the_test_and_deletes_the_machine(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makeconftest(
        """
        def pytest_orbstack_provision(machine, config):
            machine.run("echo cannot install >&2; exit 7")
        """
    )
    pytester.makepyfile("def test_it(orb_vm_fresh):\n    pass\n\ndef test_plain():\n    pass\n")
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*exit code 7*", "*cannot install*"])
    assert_no_leftovers()


def test_failing_teardown_hook_warns_and_still_deletes(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makeconftest(
        """
        def pytest_orbstack_machine_teardown(machine, config):
            raise RuntimeError("log collection broke")
        """
    )
    pytester.makepyfile("def test_it(orb_vm_fresh):\n    pass\n")
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*pytest_orbstack_machine_teardown failed for pytest-test-*log collection broke*"]
    )
    assert_no_leftovers()


def test_make_client_hook_wraps_the_client(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    mode: list[str],
) -> None:
    log = tmp_path / "calls.log"
    monkeypatch.setenv("HOOK_LOG", str(log))
    pytester.makeconftest(
        """
        import os
        from pytest_orbstack.client import OrbctlClient, find_orbctl

        class CountingClient(OrbctlClient):
            def execute(self, args, **kwargs):
                with open(os.environ["HOOK_LOG"], "a") as f:
                    f.write(args[0] + "\\n")
                return super().execute(args, **kwargs)

        def pytest_orbstack_make_client(config):
            return CountingClient(find_orbctl())
        """
    )
    pytester.makepyfile("def test_it(orb_vm):\n    orb_vm.run('true')\n")
    result = run_pytest(*mode)
    result.assert_outcomes(passed=1)
    calls = log.read_text().split()
    assert "create" in calls
    assert "run" in calls
    assert "delete" in calls
    assert_no_leftovers()


def test_failing_teardown_hook_under_warnings_as_errors_still_deletes(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makeconftest(
        """
        def pytest_orbstack_machine_teardown(machine, config):
            raise RuntimeError("log collection broke")
        """
    )
    pytester.makepyfile("def test_it(orb_machines):\n    orb_machines.create_many(2)\n")
    result = run_pytest("-p", "no:xdist", "-W", "error")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*machines: 2 created, 2 deleted*"])
    assert_no_leftovers()
