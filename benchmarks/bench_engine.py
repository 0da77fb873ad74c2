"""Latency of orbsim's namespace engine itself (no CLI): prepare, boot, exec, halt, destroy.

Run as root on a host with the machine image (``orbsim image build``):

    python benchmarks/bench_engine.py [ROUNDS]

Prints median and min per step, in milliseconds.  ``exec`` is one command
(``true``) through ``nsenter`` as the default user, measured from a fresh
process so it includes what ``orbsim run`` pays beyond the CLI.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_orbstack.sim.namespace import NamespaceEngine

EXEC = """
import sys
from pathlib import Path
from pytest_orbstack.sim.namespace import NamespaceEngine
sys.exit(NamespaceEngine().exec(Path(sys.argv[1]), ["true"], user="bench", workdir=None, env={}))
"""


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    engine = NamespaceEngine()
    engine.preflight()
    steps: dict[str, list[float]] = {k: [] for k in ("prepare", "boot", "nsenter", "exec", "halt", "destroy")}
    with tempfile.TemporaryDirectory(prefix="orbsim-bench-") as tmp:
        for i in range(rounds):
            mdir = Path(tmp) / f"m{i}"
            mdir.mkdir()
            t = time.perf_counter()
            engine.prepare(mdir, hostname=f"bench{i}", username="bench")
            steps["prepare"].append(time.perf_counter() - t)
            t = time.perf_counter()
            engine.boot(mdir, hostname=f"bench{i}")
            steps["boot"].append(time.perf_counter() - t)
            cmd, env = engine._enter_argv(mdir, "bench", None, {}, ["true"])
            for _ in range(5):
                t = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, timeout=30)
                steps["nsenter"].append(time.perf_counter() - t)
                t = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-c", EXEC, str(mdir)], check=True, timeout=30, capture_output=True
                )
                steps["exec"].append(time.perf_counter() - t)
            t = time.perf_counter()
            engine.halt(mdir)
            steps["halt"].append(time.perf_counter() - t)
            t = time.perf_counter()
            engine.destroy(mdir)
            steps["destroy"].append(time.perf_counter() - t)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=30)
    bare = time.perf_counter() - t
    print(f"{'step':<10}{'median ms':>12}{'min ms':>10}")
    for name, values in steps.items():
        print(f"{name:<10}{statistics.median(values) * 1e3:>12.1f}{min(values) * 1e3:>10.1f}")
    print(f"(python start-up alone: {bare * 1e3:.1f} ms; exec = python + engine import + nsenter)")


if __name__ == "__main__":
    main()
