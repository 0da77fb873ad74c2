"""One program run with a deadline and bounded output (runner.py), and the environment orbctl gets."""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING

import pytest

from pytest_orbstack import runner
from pytest_orbstack.client import OrbctlClient

if TYPE_CHECKING:
    from fakes import FakeOrbctl

ENV = {"PATH": os.defpath}


def test_a_program_that_ends_gives_its_exit_code_and_output() -> None:
    outcome = runner.run(
        ["/bin/sh", "-c", "printf out; printf err >&2; exit 3"], env=ENV, input=None, seconds=30, limit=1024
    )
    assert outcome.finished
    assert outcome.returncode == 3
    assert (outcome.stdout.text(), outcome.stderr.text()) == ("out", "err")
    assert outcome.duration > 0


def test_input_reaches_stdin_and_no_input_is_dev_null() -> None:
    assert runner.run(["cat"], env=ENV, input=b"hello", seconds=30, limit=1024).stdout.text() == "hello"
    outcome = runner.run(
        ["/bin/sh", "-c", "readlink /proc/self/fd/0"], env=ENV, input=None, seconds=30, limit=1024
    )
    assert outcome.stdout.text().strip() == "/dev/null"


def test_only_the_last_bytes_are_kept() -> None:
    outcome = runner.run(
        ["/bin/sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a; printf END"],
        env=ENV,
        input=None,
        seconds=30,
        limit=1024,
    )
    assert len(outcome.stdout.data()) == 1024
    assert outcome.stdout.text().endswith("aEND")
    assert outcome.stdout.dropped == 5003 - 1024


def test_a_program_still_running_at_its_deadline_is_killed_with_its_output_so_far() -> None:
    outcome = runner.run(
        ["/bin/sh", "-c", "printf partial; exec sleep 30"], env=ENV, input=None, seconds=0.5, limit=1024
    )
    assert not outcome.finished
    assert outcome.returncode is None
    assert outcome.stdout.text() == "partial"


def test_a_program_that_cannot_start_raises_oserror() -> None:
    with pytest.raises(OSError):
        runner.run(["/nonexistent/orbctl"], env=ENV, input=None, seconds=30, limit=1024)


class Vanishing(MutableMapping[str, str]):
    """``os.environ`` as a thread making machines sees it while pytest removes a variable: ``GONE``
    is listed, then gone before its value is read."""

    def __init__(self, data: MutableMapping[str, str]) -> None:
        self._data = dict(data)

    def __iter__(self) -> Iterator[str]:
        return iter([*self._data, "GONE"])

    def __len__(self) -> int:
        return len(self._data) + 1

    def __getitem__(self, key: str) -> str:
        return self._data[key]  # KeyError for GONE

    def __setitem__(self, key: str, value: str) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]


def test_a_variable_removed_meanwhile_by_another_thread_is_left_out(
    fake_orbctl: FakeOrbctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_orbctl.answer("status", stdout="Running\n")
    with monkeypatch.context() as patch:
        patch.setenv("KEEP_ME", "yes")
        patch.setattr(os, "environ", Vanishing(os.environ))
        assert OrbctlClient(str(fake_orbctl.path)).status() == "Running"
    env = fake_orbctl.calls()[0]["env"]
    assert env["KEEP_ME"] == "yes"
    assert "GONE" not in env
