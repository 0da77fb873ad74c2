"""Benchmark 3: readiness lag, from orbsim marking a machine ready to the fixture handing it out.

orbsim records when a machine became ready: ``ready_at`` (the create or start
that made it run returned) and ``ip_at`` (its IPv4 became visible), shown by
``orbsim timeline``.  A machine is usable at ``max(ready_at, ip_at)``.  Each
test notes ``time.time()`` as its first statement (the fixture has just
returned) and asks orbsim for the machine's timeline; lag = the difference.

Ways: pytest-orbstack with the clone fast path, pytest-orbstack creating every
machine (``--orb-clone never``), and the original approach (0.5 s polls).
Prefetch is off (``--orb-no-prefetch``): a prefetched machine is ready long
before its test starts, which would measure idle time, not readiness.
orbsim profile ``orbstack`` x ``--scale`` (default 0.1: the IP shows 0.1 s after start).

Reproduce:

    /work/venv/bin/python benchmarks/bench_readiness_lag.py [--tests 12]

Target: pytest-orbstack <= 100 ms.  Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import _support as s
from bench_reference_suite import ORBSTACK_CONFTEST, ORIGINAL_CONFTEST

TESTS = """
import json, os, subprocess, time

import pytest


@pytest.mark.parametrize("i", range({n}))
def test_lag(fresh_machine, i):
    handed_out = time.time()
    proc = subprocess.run([os.environ["ORBCTL"], "timeline", fresh_machine.name],
                          capture_output=True, text=True, timeout=60, check=True)
    row = json.loads(proc.stdout)[0]
    usable = max(row["ready_at"] or 0, row["ip_at"] or 0)
    with open(os.environ["BENCH_OUT"], "a") as f:
        f.write(json.dumps({{"lag": handed_out - usable, "name": fresh_machine.name}}) + "\\n")
"""


def measure(name: str, conftest: str, args: list[str], tests: int, base: Path, scale: str) -> list[float]:
    env = s.orbsim_env(base / name, profile="orbstack", scale=scale)
    out = base / name / "lags.jsonl"
    env["BENCH_OUT"] = str(out)
    suite = base / name / "suite"
    suite.mkdir(parents=True)
    (suite / "conftest.py").write_text(textwrap.dedent(conftest))
    (suite / "test_lag.py").write_text(TESTS.format(n=tests))
    with s.cleaned(env):
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *args],
            cwd=suite,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        left = s.leftovers(env)
    if proc.returncode != 0 or left:
        print(f"PROBLEM in {name}: exit {proc.returncode}, leftovers {left}\n{proc.stdout[-2000:]}")
    return [json.loads(line)["lag"] for line in out.read_text().splitlines()] if out.exists() else []


def one_call_costs(base: Path, scale: str) -> tuple[float, float]:
    """Median seconds of one ``info`` and one ``run true`` (what a readiness check is made of)."""
    env = s.orbsim_env(base / "calls", profile="orbstack", scale=scale)
    orb = s.orbsim()
    with s.cleaned(env):
        s.orb(env, "create", "ubuntu:22.04", "pytest-test-lag-probe")
        info = [s.timed([orb, "info", "pytest-test-lag-probe", "-f", "json"], env) for _ in range(10)]
        run = [s.timed([orb, "run", "-m", "pytest-test-lag-probe", "true"], env) for _ in range(10)]
    return s.median(info), s.median(run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=12)
    parser.add_argument("--scale", default="0.1")
    opts = parser.parse_args()
    print(
        f"readiness lag: {opts.tests} fresh machines per way, no xdist, orbsim orbstack x{opts.scale}; "
        f"{s.stamp()}; {s.load()}"
    )
    ways = [
        ("pytest-orbstack, clone", ORBSTACK_CONFTEST, ["--orb-clone", "auto", "--orb-no-prefetch"]),
        ("pytest-orbstack, create", ORBSTACK_CONFTEST, ["--orb-clone", "never", "--orb-no-prefetch"]),
        ("original (0.5 s polls)", ORIGINAL_CONFTEST, ["-p", "no:orbstack"]),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-lag-") as tmp:
        base = Path(tmp)
        info, run = one_call_costs(base, opts.scale)
        for i, (name, conftest, args) in enumerate(ways):
            lags = measure(f"way{i}", conftest, args, opts.tests, base, opts.scale)
            rows.append((name, lags))
    print(f"{s.load()} at end")
    print()
    print("| way | median lag | min | max | machines |")
    print("|---|---|---|---|---|")
    for name, lags in rows:
        if not lags:
            print(f"| {name} | failed | | | 0 |")
            continue
        print(
            f"| {name} | {s.median(lags) * 1000:.0f} ms | {min(lags) * 1000:.0f} ms "
            f"| {max(lags) * 1000:.0f} ms | {len(lags)} |"
        )
    print()
    print(
        f"one orbctl info: {info * 1000:.0f} ms, one orbctl run true: {run * 1000:.0f} ms (medians; "
        "readiness needs one info that shows the IP, and a run probe, beside or before it)"
    )
    ours = rows[0][1]
    if ours:
        ok = s.median(ours) <= 0.100
        print(f"target: median lag <= 100 ms: {'met' if ok else 'NOT met'}")
    script = "benchmarks/bench_readiness_lag.py"
    print(f"reproduce: {sys.executable} {script} --tests {opts.tests} --scale {opts.scale}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
