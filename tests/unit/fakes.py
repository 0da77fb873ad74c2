"""The orbctl double the unit tests share: machines in a dict, faults on demand, every call recorded.

:class:`FakeOrb` stands where an :class:`~pytest_orbstack.orbctl.Orbctl` client goes
(the provisioner, the base store, prefetch, the breaker).  It behaves as orbctl does
where the plugin relies on it: ``create`` of an existing name fails, ``clone`` makes a
stopped copy, ``run`` starts a stopped machine, a missing machine is ``machine not
found``.  Tests that need a real executable use the ``fake_orbctl`` fixture instead.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from pytest_orbstack.bases import CloneSource, install
from pytest_orbstack.errors import (
    ImageNotFoundError,
    MachineExistsError,
    MachineNotFoundError,
    OrbctlTimeoutError,
    TransientOrbctlError,
)
from pytest_orbstack.machine import Machine
from pytest_orbstack.models import MachineSpec, OrbVersion
from pytest_orbstack.provisioner import Provisioner
from pytest_orbstack.report import Stats
from pytest_orbstack.results import RunResult
from pytest_orbstack.retry import RetryPolicy

SPEC = MachineSpec("ubuntu:22.04")
RUN = "abcd1234"
#: What the readiness probe prints: the default user's home.
HOME = "/home/tester"


def reply(code: int = 0, stdout: str = "", stderr: str = "", machine: str = "") -> RunResult:
    """What ``orbctl run`` returns for a command that printed ``stdout``/``stderr`` and exited ``code``."""
    return RunResult(("orbctl", "run"), code, stdout, stderr, 0.01, machine=machine)


def err(cls: type, op: str, name: str, text: str) -> Exception:
    """The error orbctl's ``op`` on ``name`` raises with stderr ``text``."""
    exc: Exception = cls(["orbctl", op, name], 1, "", text)
    return exc


class FakeClock:
    """A monotonic clock that moves only when :meth:`sleep` is called: hand it as ``clock`` and its
    :meth:`sleep` as ``sleep``."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeOrb:
    """Machines in a dict (name -> state); each call recorded as (op, first name).

    ``create_faults``: what the next creates do instead (``transient``, ``transient-keep``,
    ``hang-made``, ``hang-nothing``, ``hang-dead``, ``bad-image``); ``clone_faults`` and
    ``delete_faults``: errors the next clones / deletes raise (a clone that hangs, an
    :class:`OrbctlTimeoutError`, still leaves its copy, as a real one does).
    """

    def __init__(self) -> None:
        self.machines: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.create_faults: list[str] = []
        self.clone_faults: list[Exception] = []
        self.delete_faults: list[Exception] = []
        #: what ``status`` answers, one per call (the last one stays); what ``version`` answers
        self.statuses: list[object] = ["Running"]
        self.orb_version: object = OrbVersion(2, 0, 4)
        self._lock = threading.Lock()

    def record(self, op: str, name: str) -> None:
        with self._lock:
            self.calls.append((op, name))

    def ops(self, op: str) -> list[str]:
        """The first names of the ``op`` calls, in order."""
        return [name for o, name in self.calls if o == op]

    def count(self, op: str) -> int:
        return len(self.ops(op))

    def status(self) -> str:
        """``orbctl status``: the next of :attr:`statuses`; an exception there is raised."""
        self.record("status", "")
        answer = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    def version(self) -> OrbVersion:
        """``orbctl version``: :attr:`orb_version`; an exception there is raised."""
        self.record("version", "")
        if isinstance(self.orb_version, Exception):
            raise self.orb_version
        return self.orb_version  # type: ignore[return-value]

    def create(self, image: str, name: str, **kwargs: Any) -> None:
        self.record("create", name)
        fault = self.create_faults.pop(0) if self.create_faults else None
        if fault == "transient":
            raise err(TransientOrbctlError, "create", name, "download status: 502 Bad Gateway")
        if fault == "transient-keep":
            self.machines[name] = "running"
            raise err(TransientOrbctlError, "create", name, "setup: machine didn't start in 30s")
        if fault in ("hang-made", "hang-nothing", "hang-dead"):
            if fault != "hang-nothing":
                self.machines[name] = "running" if fault == "hang-made" else "stopped"
            raise OrbctlTimeoutError(["orbctl", "create", name], 3)
        if fault == "bad-image":
            raise err(ImageNotFoundError, "create", name, "image not found")
        if name in self.machines:
            raise err(MachineExistsError, "create", name, "machine already exists")
        self.machines[name] = "running"

    def list(self) -> list[Any]:
        self.record("list", "")
        return [SimpleNamespace(name=n, state=s) for n, s in sorted(self.machines.items())]

    def info(self, name: str) -> Any:
        if name not in self.machines:
            raise err(MachineNotFoundError, "info", name, f"machine not found: '{name}'")
        state = self.machines[name]
        return SimpleNamespace(
            name=name, id="01ID", state=state, ip4="198.19.249.9" if state == "running" else None
        )

    def run(self, machine: str, command: list[str], **kwargs: Any) -> Any:
        if machine not in self.machines:
            raise err(MachineNotFoundError, "run", machine, f"machine not found: '{machine}'")
        if self.machines[machine] == "stopped":  # orbctl run starts a stopped machine
            self.record("run-start", machine)
            self.machines[machine] = "running"
        return reply(0, f"{HOME}\n", machine=machine)

    def delete(self, *names: str, force: bool = True) -> None:
        self.record("delete", names[0])
        if self.delete_faults:
            raise self.delete_faults.pop(0)
        for name in names:
            if name not in self.machines:
                raise err(MachineNotFoundError, "delete", name, f"machine not found: '{name}'")
        for name in names:
            del self.machines[name]

    def start(self, name: str) -> None:
        self.record("start", name)
        self.machines[name] = "running"

    def stop(self, name: str, force: bool = False) -> None:
        self.record("stop", name)
        self.machines[name] = "stopped"

    def rename(self, old: str, new: str) -> None:
        self.record("rename", new)
        if new in self.machines:
            raise err(MachineExistsError, "rename", new, "machine already exists")
        self.machines[new] = self.machines.pop(old)

    def clone(self, old: str, new: str) -> None:
        self.record("clone", new)
        fault = self.clone_faults.pop(0) if self.clone_faults else None
        if fault is not None and not isinstance(fault, OrbctlTimeoutError):
            raise fault
        if old not in self.machines:
            raise err(MachineNotFoundError, "clone", old, f"machine not found: '{old}'")
        self.machines[new] = "stopped"
        if fault is not None:
            raise fault  # hung: the copy exists all the same


class Hooks:
    """The plugin hooks, recorded as (hook, machine name)."""

    def __init__(self, fail_provision: bool = False) -> None:
        self.events: list[tuple[str, str]] = []
        self.fail_provision = fail_provision

    def provision(self, machine: Machine) -> None:
        self.events.append(("provision", machine.name))
        if self.fail_provision:
            raise RuntimeError("provisioning failed")

    def ready(self, machine: Machine) -> None:
        self.events.append(("ready", machine.name))

    def teardown(self, machine: Machine) -> None:
        self.events.append(("teardown", machine.name))


def make(
    orb: FakeOrb,
    hooks: Optional[Hooks] = None,
    retries: int = 3,
    *,
    worker: str = "gw0",
    run_id: str = RUN,
) -> Provisioner:
    """A provisioner over ``orb`` that never sleeps, reporting to a :class:`Stats`."""
    return Provisioner(
        orb,
        run_id=run_id,
        worker=worker,
        prefix="pytest-test-",
        ready_timeout=1.0,
        policy=RetryPolicy(retries=retries),
        hooks=hooks or Hooks(),
        stats=Stats(),
        sleep=lambda s: None,
    )


def worker(
    orb: FakeOrb,
    lock_dir: Path,
    *,
    name: str = "gw0",
    hooks: Optional[Hooks] = None,
    reuse: str = "off",
    run_id: str = RUN,
    sources: tuple[str, ...] = ("def hook(): pass",),
) -> Provisioner:
    """A provisioner of one (simulated) worker with the clone fast path installed."""
    p = Provisioner(
        orb,
        run_id=run_id,
        worker=name,
        prefix="pytest-test-",
        ready_timeout=1.0,
        policy=RetryPolicy(retries=2),
        hooks=hooks or Hooks(),
        stats=Stats(),
        sleep=lambda s: None,
    )
    manager = install(
        p,
        clone="auto",
        version=OrbVersion(2, 0, 4),
        reuse=reuse,
        lock_dir=lock_dir,
        sources=lambda: sources,
        state_dir=lock_dir / "state",
    )
    assert isinstance(p.source, CloneSource)
    assert manager is p.source.bases
    return p


def built(p: Provisioner) -> list[str]:
    assert isinstance(p.source, CloneSource)
    return p.source.bases.built


# --- keys ----------------------------------------------------------------------------------------
