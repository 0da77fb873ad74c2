"""What pytest-orbstack tells the user: the header line, progress lines, the summary, failure sections.

Progress lines travel on test reports: the process that made a machine puts
its lines in the ``orbstack_events`` attribute of the next report it makes,
and whoever prints reports (the only process, or the xdist controller, which
receives worker reports) writes them to the terminal.  xdist serialises report
attributes, so the lines reach the controller's terminal as the run goes.
Counters travel at the end: each worker puts :meth:`Stats.to_dict` in
``config.workeroutput`` and the controller merges them.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Optional

if TYPE_CHECKING:
    from pytest_orbstack.backend import Located
    from pytest_orbstack.machine import Machine
    from pytest_orbstack.models import MachineInfo
    from pytest_orbstack.results import CommandRecord
    from pytest_orbstack.settings import Settings

__all__ = [
    "EVENTS_ATTR",
    "Stats",
    "delete_command",
    "failure_section",
    "header_line",
    "machine_properties",
    "summary_lines",
]

#: The test report attribute that carries progress lines.
EVENTS_ATTR: Final = "orbstack_events"
#: The ``config.workeroutput`` key that carries a worker's counters.
WORKEROUTPUT_KEY: Final = "orbstack_stats"


def header_line(located: Optional[Located], settings: Settings, run_id: str) -> str:
    """The header's line: which orbctl (``None``: none was found), image, prefix and run id."""
    where = f"image {settings.image}, prefix {settings.prefix}, run id {run_id}"
    if located is None:
        return f"orbstack: orbctl not found (tests that need a machine will error), {where}"
    path, kind = located
    if kind == "orbsim-fallback":
        return f"orbstack: orbsim (OrbStack double, used because no orbctl was found) {path}, {where}"
    if kind == "orbsim":
        return f"orbstack: orbsim (OrbStack double) {path}, {where}"
    return f"orbstack: orbctl {path}, {where}"


def delete_command(orbctl: str, names: Iterable[str]) -> str:
    """The command a user runs to delete ``names`` by hand."""
    return shlex.join([orbctl, "delete", "-f", *names])


class Stats:
    """Counters of one process, mergeable across xdist workers.  Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.created = 0
        self.deleted = 0
        self.purged = 0
        self.create_seconds: list[float] = []
        self.ready_seconds: list[float] = []
        self.kept: list[str] = []
        #: machine name -> first line of the error of its failed delete
        self.failed_deletes: dict[str, str] = {}
        self._events: list[tuple[bool, str]] = []
        #: writes a line to the terminal now (set by the plugin); see :meth:`waiting`
        self.notify: Optional[Callable[[str], None]] = None

    def record_created(self, create_seconds: float, ready_seconds: float) -> None:
        with self._lock:
            self.created += 1
            self.create_seconds.append(create_seconds)
            self.ready_seconds.append(ready_seconds)

    def record_deleted(self) -> None:
        with self._lock:
            self.deleted += 1

    def record_kept(self, name: str) -> None:
        with self._lock:
            self.kept.append(name)

    def record_failed_delete(self, name: str, error: str) -> None:
        with self._lock:
            self.failed_deletes[name] = error

    def record_purged(self, names: Iterable[str]) -> None:
        """Machines deleted by a purge; a purged machine's earlier failed delete is settled."""
        with self._lock:
            for name in names:
                self.purged += 1
                self.failed_deletes.pop(name, None)

    def event(self, line: str, *, verbose: bool = False) -> None:
        """Queue a progress line for the next test report (``verbose``: shown only with ``-v``)."""
        with self._lock:
            self._events.append((verbose, line))

    def waiting(self, line: str) -> None:
        """Say now, before a wait that can be long, what is waited for (default verbosity).

        Only the thread a test waits on says it now; a background thread's
        wait becomes a ``-v`` progress line.
        """
        notify = self.notify
        if notify is not None and threading.current_thread() is threading.main_thread():
            notify(line)
        else:
            self.event(line, verbose=True)

    def take_events(self) -> list[tuple[bool, str]]:
        with self._lock:
            events, self._events = self._events, []
        return events

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "created": self.created,
                "deleted": self.deleted,
                "purged": self.purged,
                "create_seconds": list(self.create_seconds),
                "ready_seconds": list(self.ready_seconds),
                "kept": list(self.kept),
                "failed_deletes": dict(self.failed_deletes),
            }

    def merge(self, data: Mapping[str, Any]) -> None:
        """Add the counters of another process (from its :meth:`to_dict`)."""
        with self._lock:
            self.created += int(data.get("created", 0))
            self.deleted += int(data.get("deleted", 0))
            self.purged += int(data.get("purged", 0))
            self.create_seconds.extend(float(x) for x in data.get("create_seconds", ()))
            self.ready_seconds.extend(float(x) for x in data.get("ready_seconds", ()))
            self.kept.extend(str(x) for x in data.get("kept", ()))
            self.failed_deletes.update({str(k): str(v) for k, v in data.get("failed_deletes", {}).items()})
            self._events.extend((bool(verbose), str(line)) for verbose, line in data.get("events", ()))

    @property
    def anything(self) -> bool:
        return bool(self.created or self.deleted or self.purged or self.kept or self.failed_deletes)


def _mean(values: Sequence[float]) -> str:
    return f"{sum(values) / len(values):.2f}s" if values else "-"


def summary_lines(stats: Stats, orbctl: str) -> list[str]:
    """The lines of the ``orbstack`` terminal summary section."""
    lines = [
        f"machines: {stats.created} created, {stats.deleted} deleted, {len(stats.kept)} kept, "
        f"{stats.purged} purged; mean create {_mean(stats.create_seconds)}, "
        f"mean ready {_mean(stats.ready_seconds)}"
    ]
    if stats.kept:
        lines.append(f"kept for debugging: {', '.join(sorted(stats.kept))}")
        lines.append(f"delete them with: {delete_command(orbctl, sorted(stats.kept))}")
    for name, error in sorted(stats.failed_deletes.items()):
        lines.append(f"could not delete {name}: {error}")
    if stats.failed_deletes:
        lines.append(f"delete by hand: {delete_command(orbctl, sorted(stats.failed_deletes))}")
    return lines


def machine_properties(machines: Iterable[Machine]) -> list[tuple[str, object]]:
    """``user_properties`` of a test that used ``machines`` (``--junitxml`` shows them): name, image, address.

    From what the plugin last saw of each machine (no orbctl call per test).
    """
    properties: list[tuple[str, object]] = []
    for machine in machines:
        info = machine._info  # from readiness or the last info(); the address of a running machine
        properties.append(("orbstack_machine", machine.name))
        properties.append(("orbstack_image", info.image if info is not None else machine.spec.image))
        properties.append(("orbstack_ip4", (info.ip4 if info is not None else None) or ""))
    return properties


def failure_section(
    info: Optional[MachineInfo],
    info_error: Optional[str],
    history: Sequence[CommandRecord],
    logs: Optional[str] = None,
) -> str:
    """The text of the report section added to a failed test that used a machine."""
    lines = []
    if info is not None:
        lines.append(f"name:  {info.name}")
        lines.append(f"id:    {info.id}")
        lines.append(f"image: {info.image} ({info.arch}, {info.variant})")
        lines.append(f"state: {info.state}")
        lines.append(f"ip4:   {info.ip4 or '-'}")
        lines.append(f"ip6:   {info.ip6 or '-'}")
    else:
        lines.append(f"info unavailable: {info_error}")
    if logs is not None:
        lines.append("orbctl logs (last lines):")
        lines.append(logs)
    lines.append(f"last commands ({len(history)}):" if history else "no commands run")
    for record in history:
        if record.returncode is not None:
            code = f"exit {record.returncode}"
        else:
            code = f"no exit code ({record.note or 'orbctl failed'})"
        lines.append(f"  $ {record.command}  -> {code} in {record.duration:.2f}s")
    return "\n".join(lines)
