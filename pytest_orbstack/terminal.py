"""What reaches the terminal and the test reports: progress lines, the summary, failure sections.

``report.py`` makes the texts; this module writes them where pytest shows
them: a line at once (:func:`say_now`, even during a fixture's setup), the
lines test reports carry (:func:`attach_events`, printed by
:class:`ProgressPrinter`), the ``orbstack`` section of the summary
(:func:`write_summary`) and a failed test's machine section
(:func:`add_machine_section`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_orbstack import hosts
from pytest_orbstack.diagnostics import logs_tail
from pytest_orbstack.errors import OrbstackError, first_line
from pytest_orbstack.report import EVENTS_ATTR, failure_section, summary_lines

if TYPE_CHECKING:
    from pytest_orbstack.machine import Machine
    from pytest_orbstack.runtime import OrbRuntime

__all__ = [
    "ProgressPrinter",
    "add_machine_section",
    "attach_events",
    "say_now",
    "write_line",
    "write_summary",
]


def write_line(reporter: Any, line: str) -> None:
    """Write ``line`` on a line of its own, after pytest's progress row if one is open.

    A row of progress letters then goes on under its file name, as pytest
    starts a row.
    """
    row = getattr(reporter, "currentfspath", None)
    reporter.ensure_newline()
    if getattr(reporter._tw, "width_of_current_line", 0):  # xdist's progress letters
        reporter._tw.line()
    reporter.write_line(line)
    if isinstance(row, Path):  # default verbosity (with -v, pytest writes the test's line again)
        reporter._tw.write(os.path.relpath(row, reporter.config.invocation_params.dir) + " ")
        reporter.currentfspath = row


def say_now(config: pytest.Config, worker: str, line: str) -> None:
    """Write a line to the terminal at once, even during a fixture's setup (``Stats.notify``).

    An xdist worker's stderr is the controller's, so a worker writes there,
    on a line of its own.  Nothing with ``-q``.
    """
    if config.option.verbose < 0:  # -q
        return
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
        if worker != "main":
            sys.stderr.write(f"\norbstack: [{worker}] {line}\n")
            sys.stderr.flush()
            return
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            write_line(reporter, f"orbstack: {line}")
            reporter.flush()


def attach_events(report: pytest.TestReport, runtime: OrbRuntime) -> None:
    """The progress lines of the test so far travel with its report (an xdist worker's too)."""
    events = runtime.stats.take_events()
    if events:
        tag = "" if runtime.worker == "main" else f"[{runtime.worker}] "
        setattr(report, EVENTS_ATTR, [[verbose, f"{tag}{line}"] for verbose, line in events])


class ProgressPrinter:
    """Prints progress lines carried by test reports (registered on the controller / only process)."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        events = getattr(report, EVENTS_ATTR, None)
        if not events:
            return
        reporter = self._config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        show_verbose = self._config.option.verbose > 0
        for verbose, line in events:
            if verbose and not show_verbose:
                continue
            write_line(reporter, f"orbstack: {line}")


def write_summary(
    terminalreporter: Any, runtime: OrbRuntime, *, verbose: bool, tallies: Iterable[hosts.HostTally] = ()
) -> None:
    """The lines not yet shown, then the ``orbstack`` section (``tallies``: the hosts of the workers)."""
    for is_verbose, line in runtime.stats.take_events():
        if not is_verbose or verbose:
            terminalreporter.write_line(f"orbstack: {line}")
    if not runtime.stats.anything:
        return
    try:
        orbctl = runtime.orbctl()[0]
    except OrbstackError:
        orbctl = "orbctl"
    terminalreporter.section("orbstack")
    for line in summary_lines(runtime.stats, orbctl):
        terminalreporter.line(line)
    for line in hosts.host_lines(tallies):
        terminalreporter.line(line)


def _machine_section(runtime: OrbRuntime, machine: Machine) -> str:
    """The failure section of one machine: ``info``, the tail of ``orbctl logs``, the last commands."""
    info, error = None, None
    try:
        info = machine.info()
    except OrbstackError as exc:
        error = first_line(exc)
    return failure_section(info, error, machine.history, logs_tail(runtime.client(), machine.name))


def add_machine_section(report: pytest.TestReport, runtime: OrbRuntime, machine: Machine) -> None:
    """Add the machine's section to the failure's text (what ``--junitxml`` and pytest-html show),
    else to the report."""
    title, text = f"orbstack machine {machine.name}", _machine_section(runtime, machine)
    addsection = getattr(report.longrepr, "addsection", None)
    if callable(addsection):
        addsection(title, text)
    else:
        report.sections.append((title, text))
