"""Benchmark 1: a suite shaped like the original project's, run four ways on orbsim in one go.

The suite: ``--tests`` tests (default 290) of a few ms of work each (one
``run true`` in the machine + 3 ms); ``--fresh`` of them (default 24) need a
fresh machine, the rest share the worker's machine.  Four ways:

- **naive**: a fresh machine per test, made with ``orbctl create`` and polled
  every 0.5 s, one process (no xdist).  Slow: by default only ``--naive-sample``
  tests run and the wall time is scaled up to the whole suite (said so in the output);
- **original**: the original project's approach as its conftest does it: one
  session machine per xdist worker (``-n 4``), every worker creating at the
  same time (no lock), ``create`` then ``start``, readiness by 0.5 s polls;
  a fresh ``create`` per fresh test, deleted at the end of the test;
- **pytest-orbstack**: ``orb_vm`` / ``orb_vm_fresh`` with ``-n 4`` and the
  clone fast path (``--orb-clone auto``), each test's fresh machine made
  while the test before it runs (prefetch, the default);
- **pytest-orbstack --orb-no-prefetch**: the same without prefetch.

The lower bound: one base create + one clone round (clone, start, IP) + the
suite's tests themselves, each measured here on the same orbsim.  "The tests
themselves" is the **floor** run: the same suite, ``-n 4``, every test using
one machine made before the run (no machine is made or deleted in it), so it
holds what no plugin can save: pytest's and xdist's start-up and per-test
work, and each test's ``orbctl run`` and work on the CPUs that really run
them (``os.cpu_count()`` of them, perhaps fewer than the workers).  The simple
formula, test work divided by the workers, is printed beside it: with fewer
CPUs than workers it divides CPU work by more than the CPUs.

Every way calls the same ``orbctl``: by default a launcher written by
``orbsim shims`` (``python -I -S``, what docs/orbsim.md recommends for speed);
``--orbctl console-script`` uses the ``orbsim`` console script, which loads
``site`` on every call.

Reproduce (about 3-6 minutes on a 2-core host):

    /work/venv/bin/python benchmarks/bench_reference_suite.py

orbsim runs with ``ORBSIM_PROFILE=orbstack ORBSIM_SCALE=0.1`` (create 1.2 s alone,
0.72 s of it a download that parallel creates share; clone 0.01 s, start 0.1 s,
IP 0.1 s after start, delete 0.02 s); ``--profile orbstack-copy`` for the slow
clone path (clone 0.6 s, delete 0.1 s).  Prints
figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import _support as s

WORK = "0.003"  # seconds of pure-Python work per test, besides its one command in the machine

TEST_SHARED = f"""
import time

def _work(machine):
    assert machine.run(["true"]).returncode == 0
    time.sleep({WORK})

{{tests}}
"""

ORBSTACK_CONFTEST = """
import pytest

@pytest.fixture
def machine(orb_vm):
    return orb_vm

@pytest.fixture
def fresh_machine(orb_vm_fresh):
    return orb_vm_fresh
"""

# The original project's approach as its own tests/conftest.py + tests/test_utils.py do it
# (pyinfra-orbstack), with plain orbctl calls and no pytest-orbstack: every worker creates its
# session machine itself, at the same time as the others (no lock), with `orbctl create` retried
# on failure after 2 s, 4 s, 8 s, then `orbctl start`; readiness by 0.5 s polls of `info`; a
# fresh `create` for every fresh test, deleted at the end of the test; session machines deleted
# one by one at session end.
ORIGINAL_CONFTEST = """
import json, os, secrets, subprocess, time

import pytest

ORBCTL = os.environ["ORBCTL"]
SHARED_SCOPE = os.environ.get("BENCH_SHARED_SCOPE", "session")


def orbctl(*args, check=True, timeout=180):
    proc = subprocess.run([ORBCTL, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"orbctl {args}: {proc.stderr}")
    return proc


class VM:
    def __init__(self, name):
        self.name = name

    def run(self, argv):
        return orbctl("run", "-m", self.name, *argv)


def _create_with_retry(name, retries=3, delay=2.0):
    for attempt in range(retries + 1):
        if orbctl("create", "ubuntu:22.04", name, check=False).returncode == 0:
            return
        if attempt == retries:
            raise RuntimeError(f"could not create {name}")
        time.sleep(delay * 2**attempt)


def _create():
    name = "pytest-test-orig" + secrets.token_hex(4)
    _create_with_retry(name)
    orbctl("start", name, timeout=30)
    while True:  # readiness: poll every 0.5 s
        info = json.loads(orbctl("info", name, "-f", "json").stdout)
        if info.get("record", info).get("state") == "running" and info.get("ip4"):
            break
        time.sleep(0.5)
    return VM(name)


@pytest.fixture(scope=SHARED_SCOPE)
def machine():
    vm = _create()
    yield vm
    orbctl("delete", "--force", vm.name, timeout=10)


@pytest.fixture
def fresh_machine():
    vm = _create()
    yield vm
    orbctl("delete", "--force", vm.name, timeout=60)
"""

# The floor: the original's VM and orbctl(), every test on one machine the benchmark made before.
FLOOR_CONFTEST = (
    ORIGINAL_CONFTEST.split("def _create_with_retry", 1)[0]
    + """
@pytest.fixture
def machine():
    return VM(os.environ["BENCH_FLOOR_MACHINE"])


@pytest.fixture
def fresh_machine():
    return VM(os.environ["BENCH_FLOOR_MACHINE"])
"""
)


def write_suite(root: Path, tests: int, fresh: int, conftest: str) -> None:
    root.mkdir(parents=True)
    (root / "conftest.py").write_text(textwrap.dedent(conftest))
    shared = tests - fresh
    per_file = 10
    for start in range(0, shared, per_file):
        body = "\n".join(
            f"def test_shared_{i}(machine):\n    _work(machine)\n"
            for i in range(start, min(shared, start + per_file))
        )
        (root / f"test_shared_{start // per_file:03d}.py").write_text(TEST_SHARED.format(tests=body))
    body = "\n".join(f"def test_fresh_{i}(fresh_machine):\n    _work(fresh_machine)\n" for i in range(fresh))
    (root / "test_fresh.py").write_text(TEST_SHARED.format(tests=body))


def run_variant(name: str, root: Path, env: dict[str, str], args: list[str]) -> dict[str, object]:
    before = len(s.argv_log(env))
    start, cpu = time.perf_counter(), _children_cpu()
    with s.cleaned(env):
        proc = _pytest(root, env, args)
        wall = time.perf_counter() - start
        used = _children_cpu() - cpu  # before _row's own orbsim calls
        return {**_row(name, env, before, wall, proc), "cpu": used}


def _children_cpu() -> float:
    """CPU seconds (user + system) of the ended child processes waited for so far, theirs included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pytest(root: Path, env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )


def _row(
    name: str, env: dict[str, str], before: int, wall: float, proc: subprocess.CompletedProcess[str]
) -> dict[str, object]:
    counts = s.command_counts(env, before)
    left = s.leftovers(env)  # the run's leftovers (deleted on leaving run_variant)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    if proc.returncode != 0:
        print(f"  {name}: pytest exited {proc.returncode}: {tail}\n{proc.stdout[-3000:]}", file=sys.stderr)
    return {
        "variant": name,
        "wall": wall,
        "creates": counts["create"],
        "clones": counts["clone"],
        "calls": sum(counts.values()),
        "result": tail,
        "leftovers": left,
        "returncode": proc.returncode,
    }


def lower_bound_parts(env: dict[str, str], rounds: int) -> dict[str, float]:
    """Measured: one create, one clone round (clone + start + IP visible), one ``run true``."""
    with s.cleaned(env):
        return _lower_bound_parts(env, rounds)


def floor_run(home: Path, env: dict[str, str], tests: int, fresh: int, workers: int) -> tuple[float, float]:
    """Wall time and CPU seconds of the suite, ``-n workers``, every test on one machine that exists
    already."""
    root = home / "suite"
    write_suite(root, tests, fresh, FLOOR_CONFTEST)
    env = {**env, "BENCH_FLOOR_MACHINE": "pytest-test-floor"}
    with s.cleaned(env):
        s.timed([env["ORBCTL"], "create", "ubuntu:22.04", "pytest-test-floor"], env)
        start, cpu = time.perf_counter(), _children_cpu()
        proc = _pytest(root, env, ["-n", str(workers), "-p", "no:orbstack"])
        wall = time.perf_counter() - start
        used = _children_cpu() - cpu
    if proc.returncode != 0:
        raise RuntimeError(f"the floor run failed: {proc.stdout[-2000:]}")
    return wall, used


def _lower_bound_parts(env: dict[str, str], rounds: int) -> dict[str, float]:
    orb = env["ORBCTL"]  # what the suites call; orbsim's own commands (timeline) need its own name
    create = s.timed([orb, "create", "ubuntu:22.04", "pytest-test-lb-base"], env)
    s.orb(env, "stop", "pytest-test-lb-base")
    start = time.perf_counter()
    s.timed([orb, "clone", "pytest-test-lb-base", "pytest-test-lb-clone"], env)
    s.timed([orb, "start", "pytest-test-lb-clone"], env)
    while not json.loads(s.orb(env, "timeline", "pytest-test-lb-clone"))[0]["ip_visible"]:
        time.sleep(0.01)
    clone_round = time.perf_counter() - start
    runs = [s.timed([orb, "run", "-m", "pytest-test-lb-clone", "true"], env) for _ in range(rounds)]
    s.clean(env)
    return {"create": create, "clone_round": clone_round, "run": s.median(runs)}


def _median_row(rows: list[dict[str, object]]) -> dict[str, object]:
    """The row of the median wall time (the lower middle one for an even count), with every
    round's wall time in ``walls``."""
    ordered = sorted(rows, key=lambda r: float(r["wall"]))  # type: ignore[arg-type]
    return {**ordered[(len(ordered) - 1) // 2], "walls": [float(r["wall"]) for r in rows]}  # type: ignore[arg-type]


def _ours(rows: list[dict[str, object]]) -> float:
    """pytest-orbstack's wall time in ``rows`` (0.0 if it was skipped)."""
    return next((float(r["wall"]) for r in rows if r["variant"] == "pytest-orbstack"), 0.0)  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=290)
    parser.add_argument("--fresh", type=int, default=24)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--naive-sample", type=int, default=29, help="tests the naive way runs (0 = all)")
    parser.add_argument("--scale", default="0.1")
    parser.add_argument("--profile", default="orbstack", choices=("orbstack", "orbstack-copy"))
    parser.add_argument(
        "--orbctl",
        default="launcher",
        choices=("launcher", "console-script"),
        help="how every way calls orbsim: a launcher from `orbsim shims` (python -I -S, what "
        "docs/orbsim.md recommends) or the `orbsim` console script (loads site)",
    )
    ways = ("naive", "original", "pytest-orbstack", "pytest-orbstack --orb-no-prefetch")
    parser.add_argument("--skip", action="append", default=[], choices=ways)
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds of every way, interleaved; medians are quoted"
    )
    opts = parser.parse_args()
    n = opts.workers
    print(
        f"reference suite: {opts.tests} tests ({opts.fresh} need a fresh machine), -n {n}, "
        f"orbsim profile {opts.profile} x{opts.scale}, orbctl: {opts.orbctl}; {s.stamp()}; "
        f"{s.load()} at start"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ref-") as tmp:
        base = Path(tmp)
        orbctl = s.launcher(base / "bin") if opts.orbctl == "launcher" else None
        lb_env = s.orbsim_env(base / "lb", profile=opts.profile, scale=opts.scale, orbctl=orbctl)
        parts = lower_bound_parts(lb_env, 10)
        work = float(WORK) + parts["run"]
        formula = parts["create"] + parts["clone_round"] + opts.tests * work / n
        variants = [
            (
                "pytest-orbstack",
                ORBSTACK_CONFTEST,
                ["-n", str(n), "--orb-clone", "auto"],
                opts.tests,
                opts.fresh,
                {},
            ),
            (
                "pytest-orbstack --orb-no-prefetch",
                ORBSTACK_CONFTEST,
                ["-n", str(n), "--orb-clone", "auto", "--orb-no-prefetch"],
                opts.tests,
                opts.fresh,
                {},
            ),
            ("original", ORIGINAL_CONFTEST, ["-n", str(n), "-p", "no:orbstack"], opts.tests, opts.fresh, {}),
        ]
        sample = opts.naive_sample or opts.tests
        naive_fresh = max(1, round(opts.fresh * sample / opts.tests))
        variants.append(
            (
                "naive",
                ORIGINAL_CONFTEST,
                ["-p", "no:xdist", "-p", "no:orbstack"],
                sample,
                naive_fresh,
                {"BENCH_SHARED_SCOPE": "function"},
            )
        )
        floors: list[tuple[float, float]] = []
        results: dict[str, list[dict[str, object]]] = {}
        for round_ in range(opts.rounds):
            where = base / f"floor-{round_}"
            floor_env = s.orbsim_env(where, profile=opts.profile, scale=opts.scale, orbctl=orbctl)
            floors.append(floor_run(where, floor_env, opts.tests, opts.fresh, n))
            print(
                f"  round {round_ + 1}: floor (the tests on a machine made before, -n {n}): "
                f"{floors[-1][0]:.1f}s, CPU {floors[-1][1]:.1f}s",
                flush=True,
            )
            for name, conftest, args, tests, fresh, extra in variants:
                if name in opts.skip:
                    continue
                home = base / f"{name.replace(' ', '_')}-{round_}"
                root = home / "suite"
                write_suite(root, tests, fresh, conftest)
                env = {**s.orbsim_env(home, profile=opts.profile, scale=opts.scale, orbctl=orbctl), **extra}
                row = run_variant(name, root, env, args)
                row["tests"] = tests
                if tests != opts.tests:
                    row["wall_measured"] = row["wall"]
                    row["wall"] = float(row["wall"]) * opts.tests / tests  # type: ignore[arg-type]
                results.setdefault(name, []).append(row)
                print(f"  round {round_ + 1}: {name}: {row['wall']:.1f}s ({row['result']})", flush=True)
        rows = [_median_row(found) for found in results.values()]
        floor = s.median([f for f, _ in floors])
        floor_cpu = s.median([c for _, c in floors])
        lower = parts["create"] + parts["clone_round"] + floor
    print(f"{s.load()} at end")
    print()
    print(
        f"lower bound = create {parts['create']:.2f}s + clone round {parts['clone_round']:.2f}s + "
        f"the tests on a machine made before, -n {n}, {floor:.2f}s (CPU {floor_cpu:.1f}s) = {lower:.1f}s"
        + (f" (floor: median of {opts.rounds} rounds)" if opts.rounds > 1 else "")
    )
    print(
        f"(the simple formula, test work / workers: create + clone round + {opts.tests} x "
        f"({parts['run']:.3f}s run + {WORK}s work) / {n} = {formula:.1f}s; "
        + (f"ours {ours_wall / formula:.2f}x that" if (ours_wall := _ours(rows)) else "")
        + ")"
    )
    print()
    cpus = os.cpu_count() or 1
    print(
        f"| way | wall time{' (median)' if opts.rounds > 1 else ''} | CPU time ({cpus} CPUs) | creates "
        "| clones | orbctl calls | x lower bound | x original |" + (" rounds |" if opts.rounds > 1 else "")
    )
    print("|---|---|---|---|---|---|---|---|" + ("---|" if opts.rounds > 1 else ""))
    original = next((float(r["wall"]) for r in rows if r["variant"] == "original"), None)  # type: ignore[arg-type]
    for row in rows:
        wall = float(row["wall"])  # type: ignore[arg-type]
        note = ""
        if "wall_measured" in row:
            k = opts.tests / int(row["tests"])  # type: ignore[call-overload]
            note = f" (measured {row['wall_measured']:.1f}s on {row['tests']} tests, x{k:.1f})"
            row["creates"] = f"{row['creates']} (x{k:.0f} = ~{int(row['creates'] * k)})"  # type: ignore[operator]
            row["calls"] = f"{row['calls']} (x{k:.0f} = ~{int(row['calls'] * k)})"  # type: ignore[operator]
        vs_orig = f"{wall / original:.2f}x" if original else "-"
        print(
            f"| {row['variant']} | {wall:.1f}s{note} | {row['cpu']:.1f}s | {row['creates']} "
            f"| {row['clones']} | {row['calls']} "
            f"| {wall / lower:.2f}x | {vs_orig} |"
            + (f" {', '.join(f'{w:.1f}' for w in row['walls'])} |" if opts.rounds > 1 else "")  # type: ignore[attr-defined]
        )
    print()
    for row in rows:
        if not str(row["variant"]).startswith("pytest-orbstack"):
            continue
        ours = float(row["wall"])  # type: ignore[arg-type]
        print(
            f"targets: {row['variant']} vs original "
            + (s.fmt_ratio(ours / original, 0.3) if original else "-")
            + "; vs lower bound "
            + s.fmt_ratio(ours / lower, 1.5)
        )
    bad = [r for r in rows if r["leftovers"] or r["returncode"] != 0]
    for r in bad:
        print(f"PROBLEM in {r['variant']}: exit {r['returncode']}, leftovers {r['leftovers']}")
    print(
        f"reproduce: {sys.executable} benchmarks/bench_reference_suite.py --tests {opts.tests} "
        f"--fresh {opts.fresh} --workers {n} --naive-sample {opts.naive_sample} --scale {opts.scale} "
        f"--profile {opts.profile} --orbctl {opts.orbctl} --rounds {opts.rounds}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
