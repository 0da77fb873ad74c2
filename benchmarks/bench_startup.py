"""Where a worker's time goes before its first test, and what creating a lone machine directly saves.

Two parts, in one invocation, on orbsim's ``orbstack`` profile:

1. **Timeline.**  The reference suite (``--tests`` tests, ``--fresh`` of them
   on a fresh machine, ``-n --workers``) runs once with pytest-orbstack's
   defaults.  A conftest records, in every process, each orbctl call the
   plugin makes (the ``pytest_orbstack.client`` debug log: the argv when it
   starts, the exit when it ends, on which thread), when the first machine
   fixture began and ended, and when the first test started.  The script
   prints, per worker, every call before its first test, then the phases:
   the base build (create, hooks and seal, stop), the other workers' wait
   for it, each worker's clone + start + ready.
2. **One test.**  ``pytest -k`` one fresh-machine test (a developer running
   one test), without xdist (``--one-test-workers N``: with ``-n N``): the
   old way (``--orb-clone always``: a base is built, then cloned) against the
   default (``--orb-clone auto``: the run needs one machine, so it is created
   directly), alternated ``--rounds`` times; medians side by side.

Reproduce:

    .venv/bin/python benchmarks/bench_startup.py --scale 1

Prints figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _support as s
from bench_reference_suite import ORBSTACK_CONFTEST, write_suite

#: Added to the suite's conftest: every process writes its timeline to $BENCH_TIMELINE/<worker>.json.
TIMELINE_CONFTEST = """
import json, logging, os, threading, time

import pytest

_DIR = os.environ.get("BENCH_TIMELINE")
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_EVENTS = []
_LOCK = threading.Lock()


def _note(kind, text=""):
    with _LOCK:
        thread = threading.current_thread().name
        _EVENTS.append({"t": time.time(), "thread": thread, "kind": kind, "text": text})


class _Calls(logging.Handler):
    def emit(self, record):
        with _LOCK:
            _EVENTS.append(
                {"t": record.created, "thread": record.threadName, "kind": "log", "text": record.getMessage()}
            )


def pytest_configure(config):
    if _DIR:
        logger = logging.getLogger("pytest_orbstack.client")
        logger.addHandler(_Calls(level=logging.DEBUG))
        logger.setLevel(logging.DEBUG)
        _note("configure")


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    machine = fixturedef.argname in ("orb_vm", "orb_vm_fresh")
    if machine:
        _note("fixture-start", fixturedef.argname)
    yield
    if machine:
        _note("fixture-end", fixturedef.argname)


def pytest_runtest_call(item):
    _note("test", item.nodeid)


def pytest_sessionfinish(session):
    if _DIR:
        with _LOCK:
            data = list(_EVENTS)
        with open(os.path.join(_DIR, _WORKER + ".json"), "w") as out:
            json.dump(data, out)
"""


def _calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """orbctl calls (verb, machine, start, end) from the client's start and exit log lines."""
    open_: dict[str, dict[str, Any]] = {}
    calls = []
    for event in events:
        if event["kind"] != "log":
            continue
        text, thread = str(event["text"]), str(event["thread"])
        if text.startswith(("exit ", "killed ")):
            call = open_.pop(thread, None)
            if call is not None:
                call["end"] = event["t"]
                calls.append(call)
            continue
        argv = shlex.split(text)[1:]
        verb = argv[0] if argv else "?"
        machine = next((a for a in reversed(argv[1:]) if a.startswith("pytest-")), "")  # clone: the copy
        open_[thread] = {"verb": verb, "machine": machine, "start": event["t"], "thread": thread}
    return sorted(calls, key=lambda c: float(c["start"]))


def _first(events: list[dict[str, Any]], kind: str) -> float | None:
    return next((float(e["t"]) for e in events if e["kind"] == kind), None)


def timeline(directory: Path, t0: float) -> list[str]:
    """Per worker: the calls before its first test and the phases, in seconds since pytest started."""
    lines: list[str] = []
    builds: list[float] = []
    for path in sorted(directory.glob("*.json")):
        events = json.loads(path.read_text())
        worker = path.stem
        test = _first(events, "test")
        fixture = _first(events, "fixture-start")
        handed = _first(events, "fixture-end")
        if test is None or fixture is None or handed is None:
            continue  # the xdist controller, or a worker that ran no machine test
        calls = [c for c in _calls(events) if float(c["start"]) < test]

        def rel(t: float) -> str:
            return f"{t - t0:.2f}"

        lines.append(
            f"{worker}: configured {rel(_first(events, 'configure') or t0)}s, first machine fixture "
            f"{rel(fixture)}s, handed out {rel(handed)}s, first test {rel(test)}s"
        )
        for c in calls:
            who = f" {c['machine'][-12:]}" if c["machine"] else ""
            took = float(c["end"]) - float(c["start"])
            lines.append(f"    {rel(c['start']):>6}s  {c['verb']:<7}{who:<14} {took:6.2f}s  [{c['thread']}]")
        creates = [c for c in calls if c["verb"] == "create"]
        stops = [c for c in calls if c["verb"] == "stop"]
        clones = [c for c in calls if c["verb"] == "clone" and c["thread"] == "MainThread"]
        phases = []
        if creates and stops:  # this worker built the base
            create, stop = creates[0], stops[0]
            build = float(stop["end"]) - float(create["start"])
            builds.append(build)
            phases.append(
                f"base build {build:.2f}s = create {float(create['end']) - float(create['start']):.2f}s"
                f" + ready, hooks, seal {float(stop['start']) - float(create['end']):.2f}s"
                f" + stop {float(stop['end']) - float(stop['start']):.2f}s"
            )
        elif creates:
            create = creates[0]
            phases.append(
                f"created directly {float(create['end']) - float(create['start']):.2f}s, "
                f"ready {handed - float(create['end']):.2f}s later"
            )
        if clones:
            clone = clones[0]
            before = [
                c for c in calls if float(c["end"]) <= float(clone["start"]) and c["thread"] == "MainThread"
            ]
            idle_from = max([fixture, *(float(c["end"]) for c in before)])
            if not creates:
                phases.append(f"waited for the base {float(clone['start']) - idle_from:.2f}s")
            phases.append(
                f"clone + start + ready {handed - float(clone['start']):.2f}s"
                f" (clone {float(clone['end']) - float(clone['start']):.2f}s)"
            )
        phases.append(f"start -> first test {test - t0:.2f}s")
        lines.append("    " + "; ".join(phases))
    return lines


def run_pytest(root: Path, env: dict[str, str], args: list[str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    with s.cleaned(env):
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        wall = time.perf_counter() - start
        left = s.leftovers(env)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    if proc.returncode != 0 or left:
        print(f"  PROBLEM: exit {proc.returncode}, leftovers {left}: {proc.stdout[-2000:]}", file=sys.stderr)
    return wall, proc.returncode, tail


def part_timeline(base: Path, opts: argparse.Namespace) -> None:
    home = base / "timeline"
    root = home / "suite"
    write_suite(root, opts.tests, opts.fresh, ORBSTACK_CONFTEST + TIMELINE_CONFTEST)
    traces = home / "traces"
    traces.mkdir()
    env = {**s.orbsim_env(home, profile="orbstack", scale=opts.scale), "BENCH_TIMELINE": str(traces)}
    before = len(s.argv_log(env))
    t0 = time.time()
    wall, code, tail = run_pytest(root, env, ["-n", str(opts.workers), *opts.args])
    counts = s.command_counts(env, before)
    print(
        f"1. timeline: {opts.tests} tests ({opts.fresh} fresh), -n {opts.workers} {' '.join(opts.args)}: "
        f"{wall:.1f}s wall, exit {code} ({tail}); creates {counts['create']}, clones {counts['clone']}, "
        f"orbctl calls {sum(counts.values())}"
    )
    print("   seconds since pytest started; calls before each worker's first test:")
    for line in timeline(traces, t0):
        print("   " + line)


def part_one_test(base: Path, opts: argparse.Namespace) -> None:
    ways = [("--orb-clone always (base, then clone)", ["--orb-clone", "always"]), ("default (auto)", [])]
    walls: dict[str, list[float]] = {name: [] for name, _ in ways}
    counts: dict[str, str] = {}
    for r in range(opts.rounds):
        for name, extra in ways if r % 2 == 0 else reversed(ways):
            home = base / f"one-{r}-{len(walls[name])}-{extra[-1] if extra else 'auto'}"
            root = home / "suite"
            write_suite(root, 4, 2, ORBSTACK_CONFTEST)
            env = s.orbsim_env(home, profile="orbstack", scale=opts.scale)
            before = len(s.argv_log(env))
            xdist = ["-n", str(opts.one_test_workers)] if opts.one_test_workers else ["-p", "no:xdist"]
            wall, code, _ = run_pytest(root, env, [*xdist, "-k", "test_fresh_0", *extra])
            c = s.command_counts(env, before)
            counts[name] = (
                f"create {c['create']}, clone {c['clone']}, stop {c['stop']}, calls {sum(c.values())}"
            )
            walls[name].append(wall)
            print(f"   round {r + 1}: {name}: {wall:.2f}s (exit {code})", flush=True)
    print()
    print("| way | median wall time | runs | orbctl calls (last run) |")
    print("|---|---|---|---|")
    for name, _ in ways:
        runs = ", ".join(f"{w:.2f}" for w in walls[name])
        print(f"| {name} | {s.median(walls[name]):.2f}s | {runs} | {counts[name]} |")
    old, new = (s.median(walls[name]) for name, _ in ways)
    print(f"ratio of medians (default / always): {new / old:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=58)
    parser.add_argument("--fresh", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--scale", default="1")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the one-test comparison")
    parser.add_argument(
        "--one-test-workers", type=int, default=0, help="run the one test with -n N (0: without xdist)"
    )
    parser.add_argument("--skip", action="append", default=[], choices=("timeline", "one-test"))
    parser.add_argument("args", nargs="*", help="more pytest arguments for the timeline run")
    opts = parser.parse_args()
    print(f"startup: orbsim profile orbstack x{opts.scale}; {s.stamp()}; {s.load()} at start")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        base = Path(tmp)
        if "timeline" not in opts.skip:
            part_timeline(base, opts)
            print()
        if "one-test" not in opts.skip:
            how = f"-n {opts.one_test_workers}" if opts.one_test_workers else "no xdist"
            print(f"2. one fresh-machine test (pytest -k test_fresh_0, {how}):")
            part_one_test(base, opts)
    print(f"{s.load()} at end")
    print(
        f"reproduce: {sys.executable} benchmarks/bench_startup.py --tests {opts.tests} --fresh {opts.fresh} "
        f"--workers {opts.workers} --scale {opts.scale} --rounds {opts.rounds} "
        f"--one-test-workers {opts.one_test_workers}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
