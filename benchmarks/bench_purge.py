"""Benchmark 4: the purge of M leftover machines of a dead run: orbctl calls and wall time.

For each M (``--machines``, default 10 and 50): M machines named like a dead
run's (``pytest-test-deadrun1-gw0-...``) plus 2 that are not ours are made on
orbsim (instant profile); then

- *direct*: ``ownership.purge(client, "pytest-test-")`` is timed and its calls counted;
- *pytest*: the same leftovers again, then a pytest run of one test that uses no
  machine: its start-up purge removes them (calls of the whole run are counted too).

Reproduce:

    /work/venv/bin/python benchmarks/bench_purge.py [--machines 10 50]

Target: the purge makes <= 2 orbctl calls (one list, one multi-name delete).  Prints figures only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _support as s

from pytest_orbstack import ownership
from pytest_orbstack.client import OrbctlClient

OTHERS = ("web-server", "pytest-testx-keep")


def make_leftovers(env: dict[str, str], m: int) -> None:
    names = [f"pytest-test-deadrun1-gw{i % 4}-{i:06d}" for i in range(m)]
    names += [n for n in OTHERS if n not in s.leftovers(env)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda n: s.orb(env, "create", "ubuntu:22.04", n), names))


def direct(env: dict[str, str], m: int) -> tuple[float, int, int]:
    make_leftovers(env, m)
    before = len(s.argv_log(env))
    client = OrbctlClient(env["ORBCTL"])
    saved = os.environ.get("ORBSIM_HOME")
    os.environ["ORBSIM_HOME"] = env["ORBSIM_HOME"]
    try:
        start = time.perf_counter()
        result = ownership.purge(client, "pytest-test-", directory=Path(env["PYTEST_ORBSTACK_STATE_DIR"]))
        wall = time.perf_counter() - start
    finally:
        if saved is None:
            os.environ.pop("ORBSIM_HOME", None)
        else:
            os.environ["ORBSIM_HOME"] = saved
    calls = len(s.argv_log(env)) - before
    return wall, calls, len(result.deleted)


def via_pytest(env: dict[str, str], m: int, root: Path) -> tuple[float, int, int, str]:
    make_leftovers(env, m)
    suite = root / "suite"
    suite.mkdir(exist_ok=True)
    (suite / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    before = len(s.argv_log(env))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    wall = time.perf_counter() - start
    log = s.argv_log(env)[before:]
    ops = [argv[1] for argv in log]
    first_delete = ops.index("delete") if "delete" in ops else -1
    # the start-up purge: the list/delete calls up to its multi-name delete (the run's own
    # final purge at the end is another list, shown in the command sequence)
    purge_calls = sum(1 for op in ops[: first_delete + 1] if op in ("list", "delete"))
    commands = " ".join(argv[1] for argv in log)
    if proc.returncode != 0:
        print(proc.stdout[-2000:])
    return wall, purge_calls, len(log), commands


def measure(env: dict[str, str], m: int, root: Path, problems: list[str]) -> tuple[Any, ...]:
    wall, calls, deleted = direct(env, m)
    left = [n for n in s.leftovers(env) if n.startswith("pytest-test-")]
    p_wall, p_calls, all_calls, commands = via_pytest(env, m, root)
    left += [n for n in s.leftovers(env) if n.startswith("pytest-test-")]
    others = sorted(n for n in s.leftovers(env) if not n.startswith("pytest-test-"))
    if others != sorted(OTHERS):
        problems.append(f"M={m}: machines that are not ours changed: {others}")
    if left:
        problems.append(f"M={m}: not purged: {left}")
    return (m, wall, calls, deleted, p_wall, p_calls, all_calls, commands)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, nargs="+", default=[10, 50])
    opts = parser.parse_args()
    print(f"purge: orbsim instant profile; {s.stamp()}; {s.load()}")
    rows = []
    problems = []
    for m in opts.machines:
        with tempfile.TemporaryDirectory(prefix="bench-purge-") as tmp:
            env = s.orbsim_env(Path(tmp))
            with s.cleaned(env):
                row = measure(env, m, Path(tmp), problems)
            rows.append(row)
    print(f"{s.load()} at end")
    print()
    print("| M | direct purge: wall | orbctl calls | deleted ", end="")
    print("| pytest run (1 test): wall | start-up purge calls | all calls |")
    print("|---|---|---|---|---|---|---|")
    for m, wall, calls, deleted, p_wall, p_calls, all_calls, _ in rows:
        print(f"| {m} | {wall:.2f}s | {calls} | {deleted} | {p_wall:.2f}s | {p_calls} | {all_calls} |")
    print()
    for m, *_, commands in rows:
        print(f"M={m}: orbctl commands of the pytest run: {commands}")
    worst = max(max(r[2], r[5]) for r in rows)
    print(f"target: <= 2 orbctl calls per purge: {'met' if worst <= 2 else 'NOT met'} (max {worst})")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    sizes = " ".join(map(str, opts.machines))
    print(f"reproduce: {sys.executable} benchmarks/bench_purge.py --machines {sizes}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
