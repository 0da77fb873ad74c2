"""What pytest-orbstack costs a suite that uses no machine: the plugin is installed, the tests are plain.

pytest loads every installed plugin in every run of the environment, so a
suite of unit tests beside the machine tests pays for it too.  This runs
``--tests`` plain tests (``def test_N(): pass``, in files of 20) with the
plugin loaded and with ``-p no:orbstack``, without xdist and with ``-n
--workers``, alternated ``--rounds`` times, and prints the medians of wall
and CPU time (pytest and its workers) side by side and the difference.  No
orbctl is called in either.  ``-p no:orbstack`` leaves orbsim's own small
entry-point plugin loaded: the difference is pytest-orbstack's.  ``--other PYTHON``: a third way in the same
rounds, the plugin as another environment's Python has it installed (another
checkout, before a change).

Reproduce:

    .venv/bin/python benchmarks/bench_plugin_cost.py [--tests 2000] [--rounds 7] [--other PYTHON]

Prints figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _support as s


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def write_plain_suite(root: Path, tests: int) -> None:
    per_file = 20
    for start in range(0, tests, per_file):
        body = "\n".join(f"def test_{i}():\n    pass\n" for i in range(start, min(tests, start + per_file)))
        (root / f"test_plain_{start // per_file:04d}.py").write_text(body)


def timed_run(root: Path, args: list[str], python: str = sys.executable) -> tuple[float, float]:
    start, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pytest {args} failed: {proc.stdout[-2000:]}")
    return time.perf_counter() - start, _children_cpu() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--other", help="another Python whose environment has the plugin installed")
    opts = parser.parse_args()
    ways = {"off": (sys.executable, ["-p", "no:orbstack"]), "on": (sys.executable, [])}
    if opts.other:
        ways["other"] = (opts.other, [])
    print(f"plugin cost: {opts.tests} plain tests, {opts.rounds} rounds alternated; {s.stamp()}; {s.load()}")
    modes = {"no xdist": ["-p", "no:xdist"], f"-n {opts.workers}": ["-n", str(opts.workers)]}
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        root = Path(tmp)
        write_plain_suite(root, opts.tests)
        for mode, args in modes.items():
            walls: dict[str, list[float]] = {way: [] for way in ways}
            cpus: dict[str, list[float]] = {way: [] for way in ways}
            timed_run(root, args)  # warm: bytecode of the test files
            for _ in range(opts.rounds):
                for way, (python, extra) in ways.items():
                    wall, cpu = timed_run(root, [*args, *extra], python)
                    walls[way].append(wall)
                    cpus[way].append(cpu)
            off, cpu_off = s.median(walls["off"]), s.median(cpus["off"])
            print(f"{mode:>9}: without the plugin {off:.2f}s (CPU {cpu_off:.2f}s)")
            for way in ways:
                if way == "off":
                    continue
                on, cpu_on = s.median(walls[way]), s.median(cpus[way])
                name = "with it" if way == "on" else f"with {opts.other}'s"
                print(
                    f"{'':>9}  {name}: {on:.2f}s (CPU {cpu_on:.2f}s): {on - off:+.2f}s wall, "
                    f"{cpu_on - cpu_off:+.2f}s CPU, {1000 * (on - off) / opts.tests:+.3f} ms a test"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
