"""CPU and wall time of each orbsim command of a machine's life cycle, optionally against another checkout.

Reproduce:  python benchmarks/bench_orbsim_steps.py [--rounds 8] [--other DIR]

For every round, one machine is cloned from a stopped base, booted by its first
``run``, asked ``info``, entered again (``run`` into a running machine: the fast
path), stopped and deleted, each a new orbsim process started through a launcher
as ``orbsim shims`` writes it (``python -I -S``).  The CPU time is that of the
orbsim process and its children (``getrusage(RUSAGE_CHILDREN)``).  ``--other DIR``
names another checkout of this project (for instance ``git worktree add DIR REV``):
its orbsim runs the same steps, interleaved with this one's, each in its own
``ORBSIM_HOME``, so both see the same moment of the host.  Namespace machines:
run as root with the machine image built (``orbsim image build``).

Prints figures only; nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest_orbstack
from pytest_orbstack.sim import simcmds

STEPS = ("clone", "boot", "info", "run", "stop", "delete")
#: the steps a fresh machine of the plugin costs orbsim (``run`` and ``stop`` are shown, not summed)
MACHINE = ("clone", "boot", "info", "delete")


def _launcher(directory: Path, root: str, name: str) -> str:
    """A launcher answering as ``name`` for the orbsim of the checkout at ``root`` (``orbsim shims``'s)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(simcmds.SHIM.format(shebang=simcmds.shebang(sys.executable), root=root, name=name))
    path.chmod(0o755)
    return str(path)


def _measured(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU ms of the command and its children, wall ms)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, timeout=300, check=False)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace').strip()}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return cpu, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--other", help="another checkout (its directory holds pytest_orbstack/)")
    opts = parser.parse_args()
    here = str(Path(pytest_orbstack.__file__).resolve().parents[1])
    roots = {"this": here}
    if opts.other:
        other = str(Path(opts.other).resolve())
        if not (Path(other) / "pytest_orbstack" / "sim").is_dir():
            raise SystemExit(f"--other {opts.other}: no pytest_orbstack/sim there")
        roots["other"] = other
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {(w, s): [] for w in roots for s in STEPS}
    with tempfile.TemporaryDirectory(prefix="orbsim-steps-") as top:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("ORBSIM_")}
        envs, orbctl, orbsim = {}, {}, {}
        for way, root in roots.items():
            orbctl[way] = _launcher(Path(top) / way / "bin", root, "orbctl")
            orbsim[way] = _launcher(Path(top) / way / "bin", root, "orbsim")
            envs[way] = {
                **base_env,
                "ORBSIM_HOME": str(Path(top) / way / "home"),
                "ORBSIM_PROFILE": "instant",
            }
            _measured([orbctl[way], "create", "debian", "pytest-test-steps-base"], envs[way])
            _measured([orbctl[way], "stop", "pytest-test-steps-base"], envs[way])
        try:
            for n in range(opts.rounds):
                for way in roots:
                    name = f"pytest-test-steps-{n}"
                    argvs = {
                        "clone": ["clone", "pytest-test-steps-base", name],
                        "boot": ["run", "-m", name, "true"],
                        "info": ["info", "-f", "json", name],
                        "run": ["run", "-m", name, "true"],
                        "stop": ["stop", name],
                        "delete": ["delete", "-f", name],
                    }
                    for step in STEPS:
                        samples[way, step].append(_measured([orbctl[way], *argvs[step]], envs[way]))
        finally:
            for way in roots:  # every machine of the run's homes, whatever failed
                subprocess.run(
                    [orbsim[way], "reset"], env=envs[way], capture_output=True, timeout=300, check=False
                )
    print(f"orbsim steps, instant profile, {opts.rounds} rounds, medians (CPU of orbsim and its children)")
    for step in STEPS:
        cells = []
        for way in roots:
            cpu = statistics.median(c for c, _ in samples[way, step])
            wall = statistics.median(w for _, w in samples[way, step])
            cells.append(f"{way}: CPU {cpu:6.1f} ms  wall {wall:6.1f} ms")
        print(f"  {step:<7} " + "   ".join(cells))
    for way in roots:
        total = sum(statistics.median(c for c, _ in samples[way, step]) for step in MACHINE)
        print(f"  a machine ({' + '.join(MACHINE)}), {way}: CPU {total:.0f} ms")
    print(
        f"reproduce: {sys.executable} benchmarks/bench_orbsim_steps.py --rounds {opts.rounds}"
        + (f" --other {opts.other}" if opts.other else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
