"""Prefetch: fresh-machine tests that do some work, with and without the next machine made ahead.

``--tests`` tests (default 8), one after the other (no xdist), each takes
``orb_vm_fresh`` and works ``--work`` seconds (default 1: a package install, a
service restart).  Run twice on orbsim with the ``orbstack`` profile x
``--scale`` (default 0.25: clone 1.5 s, start and IP 0.25 s each, delete
0.25 s), alternating ways for ``--rounds`` rounds: with prefetch (the default)
and with ``--orb-no-prefetch``.  Prints the median wall times and their ratio,
and what each ``test_work`` test spent on its machine on its own time: the
median of its setup (the hand-out: taking the machine, waiting for it if it is
not ready) and of its teardown (handing the machine to the background delete).

Reproduce:

    /work/venv/bin/python benchmarks/bench_prefetch.py [--tests 8 --work 1 --scale 0.25 --rounds 3]

Prints figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _support as s

SUITE = """
import time

import pytest


def test_first(orb_vm_fresh):
    orb_vm_fresh.run("true")


@pytest.mark.parametrize("i", range({tests}))
def test_work(orb_vm_fresh, i):
    orb_vm_fresh.run("true")
    time.sleep({work})
"""

#: Each test_work test's setup and teardown, in seconds, one JSON line each in $BENCH_PHASES.
CONFTEST = """
import json, os, time

import pytest


def _timed(item, phase):
    start = time.perf_counter()
    yield
    if item.name.startswith("test_work"):
        with open(os.environ["BENCH_PHASES"], "a") as out:
            out.write(json.dumps([phase, time.perf_counter() - start]) + "\\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _timed(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield from _timed(item, "teardown")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=8)
    parser.add_argument("--work", type=float, default=1.0)
    parser.add_argument("--scale", default="0.25")
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    print(
        f"prefetch: {opts.tests} fresh-machine tests of {opts.work:g}s work each (+ 1 first), no xdist, "
        f"orbsim profile orbstack x{opts.scale}, {opts.rounds} rounds; {s.stamp()}; {s.load()} at start"
    )
    ways = {"prefetch (default)": [], "--orb-no-prefetch": ["--orb-no-prefetch"]}
    walls: dict[str, list[float]] = {name: [] for name in ways}
    phases: dict[str, dict[str, list[float]]] = {name: {"setup": [], "teardown": []} for name in ways}
    problems = []
    with tempfile.TemporaryDirectory(prefix="bench-prefetch-") as tmp:
        for round_ in range(opts.rounds):
            for name, args in ways.items():
                home = Path(tmp) / f"{round_}-{len(walls[name])}-{'on' if not args else 'off'}"
                root = home / "suite"
                root.mkdir(parents=True)
                (root / "test_suite.py").write_text(SUITE.format(tests=opts.tests, work=opts.work))
                (root / "conftest.py").write_text(CONFTEST)
                record = home / "phases.jsonl"
                env = {
                    **s.orbsim_env(home, profile="orbstack", scale=opts.scale),
                    "BENCH_PHASES": str(record),
                }
                with s.cleaned(env):
                    start = time.perf_counter()
                    proc = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "pytest",
                            "-q",
                            "-p",
                            "no:cacheprovider",
                            "-p",
                            "no:xdist",
                            *args,
                        ],
                        cwd=root,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=1800,
                        check=False,
                    )
                    walls[name].append(time.perf_counter() - start)
                    left = s.leftovers(env)
                for line in record.read_text().splitlines() if record.exists() else []:
                    phase, seconds = json.loads(line)
                    phases[name][phase].append(seconds)
                if proc.returncode != 0 or left:
                    problems.append(
                        f"{name}: exit {proc.returncode}, leftovers {left}\n{proc.stdout[-2000:]}"
                    )
                print(f"  round {round_ + 1} {name}: {walls[name][-1]:.1f}s", flush=True)
    print(f"{s.load()} at end")
    print()
    print("| way | median wall time | runs | setup (hand-out), median | teardown, median |")
    print("|---|---|---|---|---|")
    for name, values in walls.items():
        setup, teardown = (
            s.median(phases[name][p]) * 1000 if phases[name][p] else 0.0 for p in ("setup", "teardown")
        )
        print(
            f"| {name} | {s.median(values):.1f}s | {', '.join(f'{v:.1f}' for v in values)} "
            f"| {setup:.0f} ms | {teardown:.0f} ms |"
        )
    on, off = (s.median(walls[name]) for name in ways)
    print()
    print(f"prefetch / no prefetch = {on / off:.2f}x (medians)")
    handout = (
        s.median(phases["prefetch (default)"]["setup"]) * 1000
        if phases["prefetch (default)"]["setup"]
        else 0.0
    )
    print(f"hand-out of a machine made ahead: {handout:.0f} ms median on the test's time (target <= 50 ms)")
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(
        f"reproduce: {sys.executable} benchmarks/bench_prefetch.py --tests {opts.tests} --work {opts.work:g} "
        f"--scale {opts.scale} --rounds {opts.rounds}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
