"""The orbctl double the unit tests share: machines in a dict, faults on demand, every call recorded.

:class:`FakeOrb` stands where an :class:`~pytest_orbstack.orbctl.Orbctl` client goes
(the provisioner, the base store, prefetch, the breaker).  It behaves as orbctl does
where the plugin relies on it: ``create`` of an existing name fails, ``clone`` makes a
stopped copy, ``run`` starts a stopped machine, a missing machine is ``machine not
found``.  :class:`ScriptedOrb` adds answers scripted verb by verb and records every call.
Tests that need a real executable take the ``fake_orbctl`` fixture, a :class:`FakeOrbctl`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest

from pytest_orbstack.bases import BaseManager, install
from pytest_orbstack.clonesource import CloneSource
from pytest_orbstack.context import Limits, Namer, Time
from pytest_orbstack.errors import (
    ImageNotFoundError,
    MachineExistsError,
    MachineNotFoundError,
    OrbctlTimeoutError,
    TransientOrbctlError,
)
from pytest_orbstack.machine import Machine
from pytest_orbstack.models import MachineInfo, MachineSpec, OrbVersion, parse_machine_info
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

    def advance(self, seconds: float) -> None:
        """Time passes without a sleep: a call that takes ``seconds``."""
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

    def clone(self, old: str, new: str, **kwargs: Any) -> None:
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
    ready_timeout: float = 1.0,
    machine_timeout: float = 1200.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = lambda s: None,
) -> Provisioner:
    """A provisioner over ``orb`` that never sleeps (unless told to), reporting to a :class:`Stats`."""
    return Provisioner(
        orb,
        namer=Namer("pytest-test-", run_id, worker),
        limits=Limits(ready_timeout, machine_timeout, RetryPolicy(retries=retries)),
        hooks=hooks or Hooks(),
        events=Stats(),
        time=Time(clock, sleep),
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
    retries: int = 2,
    ready_timeout: float = 1.0,
    machine_timeout: float = 1200.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = lambda s: None,
) -> Provisioner:
    """A provisioner of one (simulated) worker with the clone fast path installed."""
    p = make(
        orb,
        hooks,
        retries,
        worker=name,
        run_id=run_id,
        ready_timeout=ready_timeout,
        machine_timeout=machine_timeout,
        clock=clock,
        sleep=sleep,
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
    assert isinstance(p.source.bases, BaseManager)
    return p.source.bases.built


# --- a client scripted verb by verb, every call recorded -----------------------------------------

#: ``orbctl info`` of a running machine (``m1``), read from a recorded reply.
RUNNING = parse_machine_info((Path(__file__).parent.parent / "data" / "info_v2_running.json").read_text())


def info(state: str, ip4: Optional[str] = None, name: str = "m1") -> MachineInfo:
    """What ``orbctl info`` says of ``name`` in ``state`` with address ``ip4``."""
    return dataclasses.replace(RUNNING, name=name, state=state, ip4=ip4)


@dataclass(frozen=True)
class Call:
    """One call a client received: its verb, positional arguments and keywords, the calling thread."""

    verb: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    thread: str = ""

    @property
    def command(self) -> list[str]:
        """The command of a ``run`` call."""
        return list(self.args[1])


def in_turn(*answers: Any) -> Callable[..., Any]:
    """A handler giving ``answers`` one a call, the last one repeating; an exception is raised."""
    queue, lock = list(answers), threading.Lock()

    def answer(*args: Any, **kwargs: Any) -> Any:
        with lock:
            item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, BaseException):
            raise item
        return item

    return answer


class ScriptedOrb(FakeOrb):
    """A :class:`FakeOrb` whose verbs can be scripted, recording every call in :attr:`received`.

    ``script(verb, *answers)``: successive calls of ``verb`` get these answers, the last one
    repeating; an exception among them is raised.  ``on(verb, handler)``: ``handler`` answers
    with the call's arguments.  An unscripted verb behaves as :class:`FakeOrb` does (``logs``
    says nothing, ``push`` and ``pull`` copy nothing).  ``running`` names machines that exist.
    :meth:`said` gives the calls as ``(verb, *args)`` tuples.
    """

    def __init__(self, *running: str) -> None:
        super().__init__()
        self.machines.update(dict.fromkeys(running, "running"))
        self.received: list[Call] = []
        self._handlers: dict[str, Callable[..., Any]] = {}

    def script(self, verb: str, *answers: Any) -> ScriptedOrb:
        return self.on(verb, in_turn(*answers))

    def on(self, verb: str, handler: Callable[..., Any]) -> ScriptedOrb:
        self._handlers[verb] = handler
        return self

    def unscripted(self, verb: str) -> Callable[..., Any]:
        """``verb`` as :class:`FakeOrb` answers it, for a handler that adds to it."""
        method: Callable[..., Any] = getattr(super(), verb)
        return method

    def asked(self, verb: str) -> list[Call]:
        """The calls of ``verb`` received so far, in order."""
        with self._lock:
            return [call for call in self.received if call.verb == verb]

    def said(self) -> list[tuple[Any, ...]]:
        """Every call received so far as ``(verb, *positional arguments)``, in order."""
        with self._lock:
            return [(call.verb, *call.args) for call in self.received]

    def verbs(self) -> list[str]:
        """The verbs of all calls received so far, in order."""
        with self._lock:
            return [call.verb for call in self.received]

    def _answer(self, verb: str, default: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.received.append(Call(verb, args, kwargs, threading.current_thread().name))
        return self._handlers.get(verb, default)(*args, **kwargs)

    def status(self) -> str:
        result: str = self._answer("status", super().status)
        return result

    def version(self) -> OrbVersion:
        result: OrbVersion = self._answer("version", super().version)
        return result

    def create(self, image: str, name: str, **kwargs: Any) -> None:
        self._answer("create", super().create, image, name, **kwargs)

    def list(self) -> list[Any]:
        result: list[Any] = self._answer("list", super().list)
        return result

    def info(self, name: str) -> Any:
        return self._answer("info", super().info, name)

    def run(self, machine: str, command: Sequence[str], **kwargs: Any) -> Any:
        return self._answer("run", super().run, machine, command, **kwargs)

    def delete(self, *names: str, force: bool = True) -> None:
        self._answer("delete", super().delete, *names, force=force)

    def start(self, name: str) -> None:
        self._answer("start", super().start, name)

    def stop(self, name: str, force: bool = False) -> None:
        self._answer("stop", super().stop, name, force=force)

    def rename(self, old: str, new: str) -> None:
        self._answer("rename", super().rename, old, new)

    def clone(self, old: str, new: str, **kwargs: Any) -> None:
        self._answer("clone", super().clone, old, new, **kwargs)

    def logs(self, machine: str, **kwargs: Any) -> Any:
        return self._answer("logs", lambda *args, **kwargs: "", machine, **kwargs)

    def push(self, machine: str, sources: Sequence[str], dest: Optional[str] = None, **kwargs: Any) -> None:
        self._answer("push", lambda *args, **kwargs: None, machine, sources, dest, **kwargs)

    def pull(self, machine: str, sources: Sequence[str], dest: Optional[str] = None, **kwargs: Any) -> None:
        self._answer("pull", lambda *args, **kwargs: None, machine, sources, dest, **kwargs)


class Manager:
    """What a :class:`Machine` asks of the provisioner, over ``client``: its client and ready timeout."""

    def __init__(self, client: Any, ready_timeout: float = 10.0) -> None:
        self.client = client
        self.ready_timeout = ready_timeout


def machine_on(
    client: Any, name: str = "m1", spec: MachineSpec = SPEC, info: Optional[MachineInfo] = None
) -> Machine:
    """A :class:`Machine` handle driven through ``client``."""
    return Machine(Manager(client), name, spec, info)  # type: ignore[arg-type]


# --- a real executable: what the client runs -----------------------------------------------------

_SCRIPT = """#!{python}
import json, os, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "spec.json")) as f:
    spec = json.load(f)
argv = sys.argv[1:]
data = sys.stdin.read()
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({{"argv": argv, "env": dict(os.environ), "stdin": os.path.realpath("/proc/self/fd/0"),
                        "input": data, "pid": os.getpid()}}) + "\\n")
answers = spec["answers"]
answer = answers.get(argv[0] if argv else "", answers.get("*", {{}}))
if answer.get("grandchild"):
    child = subprocess.Popen(["sleep", "300"])
    with open(os.path.join(here, "grandchild.pid"), "w") as f:
        f.write(str(child.pid))
if "stdout_hex" in answer:
    sys.stdout.buffer.write(bytes.fromhex(answer["stdout_hex"]))
sys.stdout.write(answer.get("stdout", ""))
sys.stdout.flush()
sys.stderr.write(answer.get("stderr", ""))
sys.stderr.flush()
time.sleep(answer.get("sleep", 0))
sys.exit(answer.get("code", 0))
"""


class FakeOrbctl:
    """An executable ``orbctl`` stand-in; ``answer()`` sets what a subcommand prints and returns."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / "orbctl"
        self.path.write_text(_SCRIPT.format(python=sys.executable))
        self.path.chmod(0o755)
        self._answers: dict[str, dict[str, Any]] = {}
        self._write()

    def _write(self) -> None:
        (self.dir / "spec.json").write_text(json.dumps({"answers": self._answers}))

    def answer(self, command: str = "*", **behaviour: Any) -> FakeOrbctl:
        """``stdout``, ``stderr``, ``code``, ``sleep``, ``grandchild``, ``stdout_hex`` for ``command``."""
        self._answers[command] = behaviour
        self._write()
        return self

    def calls(self) -> list[dict[str, Any]]:
        log = self.dir / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]

    @staticmethod
    def sleep_alive(pid: int) -> bool:
        """Whether ``pid`` is still the fake's ``sleep 300`` grandchild (not a zombie, not reused)."""
        return is_our_sleep(pid)

    def grandchild_pid(self) -> int | None:
        path = self.dir / "grandchild.pid"
        return int(path.read_text()) if path.exists() else None


def is_our_sleep(pid: int) -> bool:
    """Whether ``pid`` is still the fake's ``sleep 300`` (not a zombie, not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return cmdline == b"sleep\x00300\x00" and state != "Z"


class _Node(SimpleNamespace):
    pass


def collected(
    *fixtures: str, image: Optional[str] = None, skip: bool = False, skipif: bool = False, name: str = "t"
) -> Any:
    """A collected test that uses ``fixtures``, with ``@pytest.mark.orb(image=...)``, ``skip``, ``skipif``."""
    orb = [pytest.mark.orb(image=image).mark] if image else []
    node = _Node(own_markers=orb)
    marks = {
        "skip": [pytest.mark.skip.mark] if skip else [],
        "skipif": [pytest.mark.skipif(True).mark] if skipif else [],
    }
    return SimpleNamespace(
        nodeid=f"test_x.py::{name}",
        path=Path("/suite/test_x.py"),
        fixturenames=list(fixtures),
        iter_markers=lambda marker: list(marks.get(marker, [])),
        iter_markers_with_node=lambda marker: [(node, m) for m in orb] if marker == "orb" else [],
    )
