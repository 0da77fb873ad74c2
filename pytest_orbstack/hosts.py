"""One run over several hosts (pytest-xdist gateways): each host keeps its own machines.

A *host* is an ``orbctl`` with its state directory: an xdist worker is on
the controller's host when it has the controller's host name and state
directory (:func:`identity`), else on another host (``--tx ssh=...``, or a
``popen`` worker given another ``PYTEST_ORBSTACK_STATE_DIR``).

On another host the controller's pid means nothing (its process table is
not the host's), so the host's machines are owned by a process of that
host: the first worker of the run that reaches the host, elected through a
lock in the host's state directory (:func:`elect`), makes a *host run id*
from its own pid and holds that host's lease and watchdog and runs its
start-up purge; the run's other workers on the host join and name their
machines with that run id.  At the end the elected worker waits until its
peers on the host have torn their machines down (their pins), then purges
the host run's leftovers (:class:`HostDuties`).  The controller never runs
``orbctl`` for machines made on another host.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Optional

from pytest_orbstack import naming, ownership, reaper

__all__ = [
    "HOST_KEY",
    "HOST_OUTPUT_KEY",
    "HostDuties",
    "HostTally",
    "elect",
    "elsewhere_by_spec",
    "host_lines",
    "identity",
    "is_remote",
    "worker_host",
]

#: ``workerinput`` key: the controller's host identity (:func:`identity`).
HOST_KEY: Final = "orbstack_host"
#: ``workeroutput`` key: the worker's host (:func:`worker_host`).
HOST_OUTPUT_KEY: Final = "orbstack_host"
#: How long a worker waits for the host's election lock (the elected worker's start-up purge).
_ELECTION_TIMEOUT: Final = 300.0
#: How long the elected worker waits for its peers on the host to tear their machines down.
_PEERS_TIMEOUT: Final = 600.0
#: Variables of a gateway spec (``//env:NAME=...``) that move a worker to another state directory.
_STATE_VARIABLES: Final = (ownership.STATE_DIR_ENV, "XDG_STATE_HOME", "HOME")


def identity() -> str:
    """This process's host: its host name and state directory."""
    return f"{socket.gethostname()}:{ownership.state_dir().absolute()}"


def is_remote(workerinput: Mapping[str, Any]) -> bool:
    """True in a worker that is not on its controller's host (see the module's docstring)."""
    controller = workerinput.get(HOST_KEY)
    return controller is not None and controller != identity()


def worker_host(remote: bool) -> dict[str, Any]:
    """What a worker tells its controller about its host (``workeroutput``)."""
    return {"hostname": socket.gethostname(), "state_dir": str(ownership.state_dir()), "remote": remote}


def elsewhere_by_spec(spec: Any) -> bool:
    """For a worker that died without a word: was it (by its gateway spec) on another host?"""
    if not getattr(spec, "popen", False) or getattr(spec, "via", None):
        return True
    env = getattr(spec, "env", None) or {}
    return any(name in env for name in _STATE_VARIABLES)


def _host_file(controller_run_id: str) -> Path:
    return ownership.runs_dir() / f"{controller_run_id}.host"


def _bases_file(host_run_id: str) -> Path:
    return ownership.runs_dir() / f"{host_run_id}.bases"


@dataclass
class HostDuties:
    """A remote worker's part of its host's duties."""

    #: the controller's run id (names the election files)
    controller_run_id: str
    #: the host run id: the one this worker's machines carry
    run_id: str
    #: True in the worker that holds the host's lease and watchdog
    elected: bool
    #: why no machine can be made on this host (the host's prepare step), or ``None``
    unavailable: Optional[str] = None
    #: this worker's pin on the host run (see :class:`pytest_orbstack.reaper.WorkerPin`)
    pin: Optional[reaper.WorkerPin] = field(default=None, repr=False)

    def leave(self, built_bases: Iterable[str]) -> None:
        """A peer ends: record the run-scoped bases it built, then drop its pin."""
        names = sorted(built_bases)
        if names:
            with contextlib.suppress(OSError), open(_bases_file(self.run_id), "a") as out:
                out.write("".join(f"{name}\n" for name in names))
        if self.pin is not None:
            self.pin.release()

    def wait_for_peers(self, timeout: float = _PEERS_TIMEOUT) -> tuple[bool, set[str]]:
        """The elected worker ends: wait until the host's other workers dropped their pins.

        Returns (all gone, the bases they built).  Interruptible (a lost
        controller's SIGINT): the watchdog then purges once this worker is gone.
        """
        if self.pin is not None:
            self.pin.release()
        pins = reaper.pins_path(ownership.state_dir(), self.run_id)
        deadline = time.monotonic() + timeout
        gone = reaper.workers_gone(pins)
        while not gone and time.monotonic() < deadline:
            time.sleep(0.1)
            gone = reaper.workers_gone(pins)
        path = _bases_file(self.run_id)
        try:
            names = {line.strip() for line in path.read_text().splitlines() if line.strip()}
        except OSError:
            names = set()
        return gone, names

    def forget(self) -> None:
        """The elected worker ended the host run: its election files are of no more use."""
        host_file = _host_file(self.controller_run_id)
        for path in (host_file, _bases_file(self.run_id), host_file.with_name(host_file.name + ".lock")):
            with contextlib.suppress(OSError):
                path.unlink()


def elect(controller_run_id: str, start: Callable[[str], Optional[str]]) -> HostDuties:
    """Join the run's duties on this host, or take them (the first worker that gets here).

    ``start(host_run_id)`` is called in the elected worker, under the lock,
    before anyone joins: it takes the host's lease, starts its watchdog and
    purges the host's orphans, and returns why no machine can be made on
    this host (or ``None``).  A host run whose elected worker died is not
    joined: the worker that finds it takes the duties over with a new run id.
    """
    import filelock  # noqa: PLC0415 (only workers that make machines need it)

    directory = ownership.state_dir()
    reaper.check_state_dir(directory)
    runs = ownership.runs_dir()
    runs.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    runs.mkdir(mode=0o700, exist_ok=True)
    path = _host_file(controller_run_id)
    with filelock.FileLock(str(path) + ".lock", timeout=_ELECTION_TIMEOUT):
        known = _read(path)
        pin: Optional[reaper.WorkerPin] = None
        if known is not None:
            # pinned before the check: a watchdog purging the moment the elected worker dies sees
            # the pin; a dead host run is left (its pin released) and its duties taken over
            pin = reaper.WorkerPin.hold(known[0])
            if not ownership.run_is_live(known[0]):
                pin.release()
                pin = None
        if known is not None and pin is not None:
            run_id, unavailable = known
            elected = False
        else:
            run_id = naming.new_run_id()
            unavailable = start(run_id)
            elected = True
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"run_id": run_id, "unavailable": unavailable}))
            os.replace(tmp, path)
            pin = reaper.WorkerPin.hold(run_id)  # before the first machine
    return HostDuties(controller_run_id, run_id, elected, unavailable, pin)


def _read(path: Path) -> Optional[tuple[str, Optional[str]]]:
    try:
        data = json.loads(path.read_text())
        unavailable = data.get("unavailable")
        return str(data["run_id"]), (None if unavailable is None else str(unavailable))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass
class HostTally:
    """The controller's count of one host's machines, from its workers' reports."""

    hostname: str
    state_dir: str
    remote: bool
    workers: set[str] = field(default_factory=set)
    created: int = 0
    deleted: int = 0
    purged: int = 0

    def add(self, worker: str, stats: Mapping[str, Any]) -> None:
        self.workers.add(worker)
        self.created += int(stats.get("created", 0))
        self.deleted += int(stats.get("deleted", 0))
        self.purged += int(stats.get("purged", 0))


def host_lines(tallies: Iterable[HostTally]) -> list[str]:
    """One summary line per host (named by its host name, plus its state directory when needed)."""
    hosts = sorted(tallies, key=lambda t: (t.remote, t.hostname, t.state_dir))
    if not any(t.remote for t in hosts):
        return []
    names = [t.hostname for t in hosts]
    lines = []
    for tally in hosts:
        name = tally.hostname if names.count(tally.hostname) == 1 else f"{tally.hostname}:{tally.state_dir}"
        where = "" if tally.remote else " (the controller's)"
        workers = ", ".join(sorted(tally.workers, key=lambda w: (len(w), w)))
        lines.append(
            f"host {name}{where} [{workers}]: {tally.created} created, {tally.deleted} deleted, "
            f"{tally.purged} purged"
        )
    return lines
