"""Transient failures, hung creates and failed deletes, injected with ORBSIM_FAULTS."""

from __future__ import annotations

from typing import Callable

import pytest


def test_transient_create_failures_are_retried(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[..., None],
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", "create=download-502*2")
    pytester.makepyfile("def test_vm(orb_vm):\n    assert orb_vm.run('true').ok\n")
    result = run_pytest("-p", "no:xdist", "--orb-retries", "3", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*retrying create of pytest-test-* (attempt 2)*502 Bad Gateway*"])
    assert_no_leftovers()


def test_too_many_transient_failures_error_the_test(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[..., None],
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", "create=download-502*5")
    pytester.makepyfile("def test_vm(orb_vm_fresh):\n    pass\n\ndef test_plain():\n    pass\n")
    result = run_pytest("-p", "no:xdist", "--orb-retries", "1")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*TransientOrbctlError*502 Bad Gateway*"])
    assert_no_leftovers()


def test_setup_timeout_that_left_a_machine_is_adopted(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[..., None],
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", "create=setup-timeout-keep*1")
    pytester.makepyfile("def test_vm(orb_vm):\n    assert orb_vm.run('true').ok\n")
    result = run_pytest("-p", "no:xdist", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*adopting pytest-test-*", "*1 created, 1 deleted*"])
    assert_no_leftovers()


def test_hung_create_that_succeeded_is_adopted(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[..., None],
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", "create=hang:600*1")
    pytester.makepyfile("def test_vm(orb_vm):\n    assert orb_vm.run('true').ok\n")
    result = run_pytest("-p", "no:xdist", "--orb-create-timeout", "3", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*adopting pytest-test-*"])
    assert_no_leftovers()


def test_delete_that_fails_once_is_retried(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[..., None],
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", "delete=conflict*1")
    pytester.makepyfile("def test_vm(orb_vm_fresh):\n    pass\n")
    result = run_pytest("-p", "no:xdist", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*retrying delete of pytest-test-*", "*1 created, 1 deleted, 0 kept, 0 purged*"]
    )
    assert_no_leftovers()


def test_delete_that_keeps_failing_is_reported_and_purged(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[..., None],
) -> None:
    # Every delete naming one machine fails; the controller's final purge (one multi-name
    # delete of the run's leftovers) is the safety net.
    monkeypatch.setenv("ORBSIM_FAULTS", "delete=conflict*3")
    pytester.makepyfile("def test_vm(orb_vm_fresh):\n    pass\n")
    result = run_pytest("-p", "no:xdist", "--orb-retries", "2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*could not delete pytest-test-*cannot transition*",
            "machines: 1 created, 0 deleted, 0 kept, 1 purged*",
        ]
    )
    assert_no_leftovers()
