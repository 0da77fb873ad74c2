"""orbsim latency in the instant profile: create, run, delete (medians over N rounds).

Reproduce:  /work/venv/bin/python benchmarks/bench_orbsim.py [--rounds 20] [--mode namespace|plain]

Prints figures only; nothing here passes or fails on time (the machines are shared
and noisy).  Targets on a 2-core host: create <= 300 ms, run <= 80 ms end to end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_orbstack.sim import rootfs


def _orbsim() -> str:
    beside = Path(sys.executable).with_name("orbsim")
    return str(beside) if beside.exists() else (shutil.which("orbsim") or "orbsim")


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)
    return (time.perf_counter() - start) * 1000


def _default_mode() -> str:
    if os.geteuid() != 0:
        return "plain"
    return "namespace" if rootfs.is_ready() else "plain"


def _row(label: str, samples: list[float], target: float | None = None) -> str:
    med = statistics.median(samples)
    p90 = sorted(samples)[max(0, int(len(samples) * 0.9) - 1)]
    goal = "" if target is None else f"   target <= {target:.0f} ms: {'ok' if med <= target else 'MISSED'}"
    return f"{label:<22} median {med:7.1f} ms   p90 {p90:7.1f} ms   min {min(samples):7.1f} ms{goal}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--mode", choices=("namespace", "plain"), default=None)
    opts = parser.parse_args()
    mode = opts.mode or _default_mode()
    orbsim = _orbsim()
    with tempfile.TemporaryDirectory(prefix="orbsim-bench-") as home:
        # Installed packages have their bytecode cached: let the children write and use it.
        drop = ("PYTHONDONTWRITEBYTECODE",)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORBSIM_") and k not in drop}
        env.update({"ORBSIM_HOME": home, "ORBSIM_PROFILE": "instant", "ORBSIM_MODE": mode})
        _timed([orbsim, "create", "ubuntu", "pytest-test-warmup"], env)  # warm-up: bytecode, image cache
        _timed([orbsim, "run", "-m", "pytest-test-warmup", "true"], env)
        _timed([orbsim, "delete", "pytest-test-warmup"], env)
        python = [_timed([sys.executable, "-c", "pass"], env) for _ in range(opts.rounds)]
        version = [_timed([orbsim, "version"], env) for _ in range(opts.rounds)]
        creates, runs, deletes = [], [], []
        for i in range(opts.rounds):
            name = f"pytest-test-bench{i}"
            creates.append(_timed([orbsim, "create", "ubuntu", name], env))
            runs += [_timed([orbsim, "run", "-m", name, "true"], env) for _ in range(3)]
            deletes.append(_timed([orbsim, "delete", name], env))
        left = subprocess.run(
            [orbsim, "list", "-q"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    py = sys.version.split()[0]
    print(f"orbsim benchmark: mode={mode}, profile=instant, {opts.rounds} rounds, python {py}")
    print(_row("python -c pass", python))
    print(_row("orbsim version", version))
    print(_row("create", creates, 300))
    print(_row("run -m M true", runs, 80))
    print(_row("delete", deletes))
    if left.stdout.strip():
        print(f"LEFTOVER machines: {left.stdout.split()}")
        return 1
    print(f"reproduce: {sys.executable} benchmarks/bench_orbsim.py --rounds {opts.rounds} --mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
