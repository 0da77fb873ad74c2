"""Helpers of orbsim's CLI tests: an orbsim with its own ORBSIM_HOME, and the leftover checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from pytest_orbstack.sim import rootfs


def orbsim_bin() -> str:
    beside = Path(sys.executable).with_name("orbsim")
    return str(beside) if beside.exists() else "orbsim"


def namespace_ready() -> Optional[str]:
    """Why the isolated (namespace) engine cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "the namespace engine needs root"
    if not rootfs.is_ready():
        return "no orbsim machine image: run `orbsim image build`"
    return None


class Sim:
    """Runs orbsim (or its orbctl/orb shims) against one private ORBSIM_HOME."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.shim_dir = home.parent / "shims"

    def __call__(
        self,
        *args: str,
        prog: str = "orbsim",
        input: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
        timeout: float = 120,
        cwd: Optional[str] = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.exe(prog), *args],
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )

    def exe(self, prog: str = "orbsim") -> str:
        if prog == "orbsim":
            return orbsim_bin()
        if not (self.shim_dir / prog).exists():
            subprocess.run([orbsim_bin(), "shims", str(self.shim_dir)], env=self.env, check=True, timeout=60)
        return str(self.shim_dir / prog)

    def ok(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        proc = self(*args, **kw)
        assert proc.returncode == 0, f"orbsim {' '.join(args)} -> {proc.returncode}\n{proc.stderr}"
        return proc

    def machines(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads(self.ok("list", "-f", "json").stdout)
        return data

    def names(self) -> list[str]:
        return [m["name"] for m in self.machines()]

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.home / "state.json").read_text())
        return data

    def argv_log(self) -> list[list[str]]:
        return [json.loads(line) for line in (self.home / "argv.log").read_text().splitlines()]

    def assert_clean(self) -> None:
        """No machine, no machine directory, no mount and no process of this home."""
        assert self.names() == []
        machines = self.home / "machines"
        assert not machines.exists() or list(machines.iterdir()) == []
        home = str(self.home.resolve())
        with open("/proc/mounts") as fh:
            mounts = [line.split()[1] for line in fh if home in line]
        assert mounts == [], f"mounts left behind: {mounts}"
        assert _processes_under(home) == []


def _processes_under(prefix: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        for link in ("root", "cwd"):
            try:
                target = os.readlink(f"/proc/{entry}/{link}")
            except OSError:
                continue
            if target.startswith(prefix):
                found.append(int(entry))
                break
    return found


def make_sim(tmp_path: Path, mode: str = "plain", **extra: str) -> Iterator[Sim]:
    home = tmp_path / "orbsim-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORBSIM_") and k not in ("ORBENV",)}
    env.update({"ORBSIM_HOME": str(home), "ORBSIM_USER": "tester"})
    if mode == "plain":
        env["ORBSIM_MODE"] = "plain"
    env.update(extra)
    sim = Sim(home, env)
    yield sim
    sim.env = {k: v for k, v in sim.env.items() if k != "ORBSIM_FAULTS"}
    left = sim.names()
    if left:
        subprocess.run(
            [orbsim_bin(), "delete", "-f", *left], env=sim.env, capture_output=True, timeout=120, check=False
        )
    sim.assert_clean()
    assert left == [], f"the test left machines behind: {left}"


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def expect_usage_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 1, proc
    assert proc.stdout == ""
    assert first_line(proc.stderr) == f"Error: {message}", proc.stderr


def expect_service_error(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 1, proc
    assert proc.stdout == ""
    assert proc.stderr == f"[-32098] {message}\n", proc.stderr
