"""Helpers shared by the benchmark scripts: orbsim environments, argv.log counts, medians, load.

Not a benchmark itself (the leading underscore keeps pytest from collecting it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional


def orbsim() -> str:
    """Path of the orbsim executable next to this Python, else on PATH."""
    beside = Path(sys.executable).with_name("orbsim")
    return str(beside) if beside.exists() else (shutil.which("orbsim") or "orbsim")


def launcher(directory: Path) -> str:
    """An ``orbctl`` that is orbsim run with ``python -I -S``, written by ``orbsim shims`` into
    ``directory``: the way docs/orbsim.md recommends for speed (no ``site`` start-up per call)."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([orbsim(), "shims", str(directory)], check=True, capture_output=True, timeout=60)
    return str(directory / "orbctl")


def orbsim_env(
    home: Path, *, profile: str = "instant", scale: str = "1", orbctl: Optional[str] = None
) -> dict[str, str]:
    """A clean environment whose orbctl is orbsim (``orbctl``: a launcher of it, see :func:`launcher`)
    with its own home and state directory."""
    drop = ("PYTHONDONTWRITEBYTECODE",)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORBSIM_", "PYTEST_ORBSTACK_")) and k not in drop
    }
    env.update(
        {
            "ORBSIM_HOME": str(home / "orbsim"),
            "ORBSIM_PROFILE": profile,
            "ORBSIM_SCALE": scale,
            "ORBCTL": orbctl or orbsim(),
            "PYTEST_ORBSTACK_STATE_DIR": str(home / "state"),
        }
    )
    return env


def orb(env: dict[str, str], *args: str, check: bool = True, timeout: float = 300) -> str:
    """Run orbsim with ``args`` and return its stdout."""
    proc = subprocess.run(
        [orbsim(), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"orbsim {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def timed(argv: Sequence[str], env: dict[str, str], timeout: float = 300) -> float:
    """Seconds one command takes (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(list(argv), env=env, check=True, capture_output=True, timeout=timeout)
    return time.perf_counter() - start


def argv_log(env: dict[str, str]) -> list[list[str]]:
    """Every orbctl argv recorded in ``$ORBSIM_HOME/argv.log`` so far."""
    path = Path(env["ORBSIM_HOME"]) / "argv.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def command_counts(env: dict[str, str], since: int = 0) -> Counter[str]:
    """How many times each orbctl subcommand ran (argv.log entries from index ``since``)."""
    return Counter(argv[1] if len(argv) > 1 else "" for argv in argv_log(env)[since:])


def leftovers(env: dict[str, str]) -> list[str]:
    """Names orbsim still lists in this home."""
    return [m["name"] for m in json.loads(orb(env, "list", "-f", "json") or "[]")]


def clean(env: dict[str, str]) -> list[str]:
    """Delete every machine of this (private) home; return what was left."""
    names = leftovers(env)
    if names:
        orb(env, "delete", "-f", *names, check=False)
    return names


@contextlib.contextmanager
def cleaned(env: dict[str, str]) -> Iterator[None]:
    """Delete every machine of this private home on the way out, also after an error.

    A private home lives in a temporary directory: machines left running there
    when the directory is removed could no longer be deleted through orbsim.
    """
    try:
        yield
    finally:
        clean(env)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} (1/5 min) on {os.cpu_count()} CPUs"


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def fmt_ratio(value: float, target: Optional[float]) -> str:
    if target is None:
        return f"{value:.2f}x"
    return f"{value:.2f}x (target <= {target:g}x: {'met' if value <= target else 'NOT met'})"
