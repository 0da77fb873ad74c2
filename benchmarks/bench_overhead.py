"""Benchmark 2: the plugin's per-command overhead, ``orb_vm.run("true")`` against a bare ``orbctl run``.

One pytest run (no xdist, orbsim ``instant`` profile) of ``--tests`` tests; each
test times, side by side on the same machine, ``orb_vm.run(["true"])`` (the
plugin: Machine.run -> OrbctlClient.run -> subprocess) and a bare
``subprocess.run([orbctl, "run", "-m", NAME, "true"])``, in alternating order.
Also printed: the whole-suite wall time per test, machine setup included.

Reproduce:

    /work/venv/bin/python benchmarks/bench_overhead.py [--tests 100]

Target: plugin / bare <= 1.05x (medians).  Prints figures only.
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

TESTS = """
import json, os, subprocess, time

import pytest

OUT = os.environ["BENCH_OUT"]
ORBCTL = os.environ["ORBCTL"]


@pytest.mark.parametrize("i", range({n}))
def test_run(orb_vm, i):
    pairs = []
    for first in ("plugin", "bare") if i % 2 else ("bare", "plugin"):
        start = time.perf_counter()
        if first == "plugin":
            orb_vm.run(["true"])
        else:
            argv = [ORBCTL, "run", "-m", orb_vm.name, "true"]
            subprocess.run(argv, capture_output=True, timeout=60, check=True)
        pairs.append((first, time.perf_counter() - start))
    with open(OUT, "a") as f:
        f.write(json.dumps(dict(pairs)) + "\\n")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=100)
    opts = parser.parse_args()
    print(f"overhead: {opts.tests} tests, orbsim instant profile, no xdist; {s.stamp()}; {s.load()}")
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        base = Path(tmp)
        env = s.orbsim_env(base)
        out = base / "pairs.jsonl"
        env["BENCH_OUT"] = str(out)
        suite = base / "suite"
        suite.mkdir()
        (suite / "test_overhead.py").write_text(TESTS.format(n=opts.tests))
        start = time.perf_counter()
        with s.cleaned(env):
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
                cwd=suite,
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
            wall = time.perf_counter() - start
            left = s.leftovers(env)
        pairs = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if proc.returncode != 0 or not pairs:
        print(proc.stdout[-3000:], proc.stderr[-2000:])
        return 1
    plugin = s.median([p["plugin"] for p in pairs])
    bare = s.median([p["bare"] for p in pairs])
    ratios = s.median([p["plugin"] / p["bare"] for p in pairs])
    print(f"{s.load()} at end")
    print()
    print("| measure | median |")
    print("|---|---|")
    print(f"| bare `orbctl run -m X true` (subprocess) | {bare * 1000:.1f} ms |")
    print(f"| `orb_vm.run(['true'])` | {plugin * 1000:.1f} ms |")
    print(f"| ratio of medians | {s.fmt_ratio(plugin / bare, 1.05)} |")
    print(f"| median of per-test ratios | {ratios:.3f}x |")
    print(f"| whole run: {len(pairs)} tests, 1 machine, both calls per test | {wall:.1f}s |")
    if left:
        print(f"LEFTOVER machines: {left}")
        return 1
    print(f"reproduce: {sys.executable} benchmarks/bench_overhead.py --tests {opts.tests}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
