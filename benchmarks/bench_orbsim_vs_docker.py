"""orbsim against its physical floor and against Docker, side by side in one run (medians).

Times, on one machine made from orbsim's image and one Docker container made from the
same root filesystem:

- ``orbsim run -m M true``: through a launcher as ``orbsim shims`` writes it
  (``python -I -S``), through the ``orbsim`` console script, and with
  ``ORBSIM_ENTER=nsenter`` (the nsenter/setpriv/sh chain);
- the floors: ``python -I -S -c pass`` and a bare
  ``nsenter -t PID -m -u -i -n -p -r -w true`` into the same machine;
- ``docker exec C true``, ``docker run -d`` / ``docker rm -f`` against
  ``orbsim create`` / ``orbsim delete`` (instant profile);

and prints the ratios.  Docker is Debian's ``docker.io``: this script starts its own
``dockerd --iptables=false --bridge=none`` with data-root, exec-root, pidfile and
socket in a temporary directory, imports the image with
``tar -C ROOTFS -c . | docker import - orbsim-rootfs`` and stops that dockerd by its
pid at the end.  Without dockerd (or root) the Docker rows say why and the rest runs.

Reproduce (root, orbsim's image built):
    .venv/bin/python benchmarks/bench_orbsim_vs_docker.py [--rounds 30]

Prints figures only; nothing here passes or fails on time.  On a loaded host the
figures are indicative: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

from pytest_orbstack.sim import rootfs
from pytest_orbstack.sim.simcmds import write_launcher

TARGETS = {"orbsim run (launcher)": 25.0, "orbsim create": 150.0}


def _ms(argv: Sequence[str], env: Optional[dict[str, str]] = None, timeout: float = 300) -> float:
    start = time.perf_counter()
    proc = subprocess.run(list(argv), env=env, capture_output=True, timeout=timeout, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}"
        )
    return elapsed


def _median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def _row(label: str, samples: list[float]) -> str:
    if not samples:
        return f"{label:<34} -"
    target = TARGETS.get(label)
    goal = "" if target is None else f"   target <= {target:.0f} ms"
    return (
        f"{label:<34} median {_median(samples):7.1f} ms   min {min(samples):7.1f} ms   n={len(samples)}{goal}"
    )


def _orbsim_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ORBSIM_") and k not in ("PYTHONDONTWRITEBYTECODE", "ORBENV")
    }
    env.update({"ORBSIM_HOME": str(home), "ORBSIM_PROFILE": "instant"})
    return env


def _console_script() -> str:
    beside = Path(sys.executable).with_name("orbsim")
    return str(beside) if beside.exists() else (shutil.which("orbsim") or "orbsim")


def _init_pid(home: Path, name: str) -> int:
    data = json.loads((home / "state.json").read_text())
    (mid,) = [m for m, rec in data["machines"].items() if rec["name"] == name]
    runtime = json.loads((home / "machines" / mid / "runtime.json").read_text())
    return int(runtime["pid"])


class Docker:
    """A private dockerd (own data-root, exec-root, pidfile, socket), stopped by pid."""

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.sock = base / "docker.sock"
        self.pid: Optional[int] = None
        self.client = shutil.which("docker") or "docker"

    def problem(self) -> Optional[str]:
        if os.geteuid() != 0:
            return "dockerd needs root"
        if shutil.which("dockerd") is None:
            return "no dockerd: `apt-get install -y docker.io` (Debian's package) installs it"
        return None

    def start(self) -> None:
        log = open(self.base / "dockerd.log", "wb")  # noqa: SIM115 - kept open for dockerd's life
        argv = [
            "dockerd",
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            f"--data-root={self.base / 'data'}",
            f"--exec-root={self.base / 'exec'}",
            f"--pidfile={self.base / 'dockerd.pid'}",
            f"--host=unix://{self.sock}",
        ]
        proc = subprocess.Popen(
            argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        self.pid = proc.pid
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self._log_tail()}")
            if self.sock.exists() and self("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not answer within 60 s: {self._log_tail()}")

    def _log_tail(self) -> str:
        lines = (self.base / "dockerd.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def argv(self, *args: str) -> list[str]:
        return [self.client, "-H", f"unix://{self.sock}", *args]

    def __call__(
        self, *args: str, check: bool = True, stdin: Optional[int] = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.argv(*args), capture_output=True, timeout=600, check=check, stdin=stdin)

    def import_rootfs(self, image: Path) -> None:
        tar = subprocess.Popen(["tar", "-C", str(image), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            self("import", "-", "orbsim-rootfs", stdin=tar.stdout.fileno())
        finally:
            tar.stdout.close()
            tar.wait(timeout=600)

    def stop(self) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        self.pid = None


@contextlib.contextmanager
def _docker(base: Path) -> Iterator[tuple[Optional[Docker], Optional[str]]]:
    docker = Docker(base)
    problem = docker.problem()
    if problem is not None:
        yield None, problem
        return
    try:
        docker.start()
        docker.import_rootfs(rootfs.image_path())
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        docker.stop()
        yield None, f"docker could not run here: {exc}"
        return
    try:
        yield docker, None
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            ids = docker("ps", "-aq", check=False).stdout.decode().split()
            if ids:
                docker("rm", "-f", *ids, check=False)
        docker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="samples per command (default 30)")
    parser.add_argument("--no-docker", action="store_true", help="only orbsim and the floors")
    opts = parser.parse_args()
    if os.geteuid() != 0 or not rootfs.is_ready():
        print("needs root and orbsim's image (`orbsim image build`)", file=sys.stderr)
        return 2
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="orbsim-vs-docker-") as tmp:
        base = Path(tmp)
        home = base / "home"
        env = _orbsim_env(home)
        launcher = base / "bin" / "orbsim"
        launcher.parent.mkdir()
        write_launcher(launcher, "orbsim")
        fast, console = str(launcher), _console_script()
        name = "pytest-test-bench-run"
        subprocess.run(
            [fast, "create", "ubuntu", name], env=env, check=True, timeout=300, capture_output=True
        )
        try:
            pid = _init_pid(home, name)
            nsenter = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "true"]
            chain_env = {**env, "ORBSIM_ENTER": "nsenter"}
            for argv, e in ((nsenter, env), ([fast, "run", "-m", name, "true"], env)):
                _ms(argv, e)  # warm-up: page cache, bytecode
            with _docker(base / "docker") as (docker, why):
                container = None
                if docker is not None:
                    out = docker("run", "-d", "--network=none", "orbsim-rootfs", "sleep", "infinity").stdout
                    container = out.decode().strip()
                for _ in range(opts.rounds):  # interleaved: load changes hit every row alike
                    rows.setdefault("python -I -S -c pass", []).append(
                        _ms([sys.executable, "-I", "-S", "-c", "pass"])
                    )
                    rows.setdefault("nsenter ... true (floor)", []).append(_ms(nsenter, env))
                    rows.setdefault("orbsim run (launcher)", []).append(
                        _ms([fast, "run", "-m", name, "true"], env)
                    )
                    rows.setdefault("orbsim run (console script)", []).append(
                        _ms([console, "run", "-m", name, "true"], env)
                    )
                    rows.setdefault("orbsim run (nsenter chain)", []).append(
                        _ms([fast, "run", "-m", name, "true"], chain_env)
                    )
                    if docker is not None and container:
                        rows.setdefault("docker exec C true", []).append(
                            _ms(docker.argv("exec", container, "true"))
                        )
                rounds = max(5, opts.rounds // 3)
                for i in range(rounds):
                    other = f"pytest-test-bench-{i}"
                    rows.setdefault("orbsim create", []).append(_ms([fast, "create", "ubuntu", other], env))
                    rows.setdefault("orbsim delete", []).append(_ms([fast, "delete", other], env))
                    if docker is not None:
                        start = time.perf_counter()
                        cid = docker(
                            "run", "-d", "--network=none", "orbsim-rootfs", "sleep", "infinity"
                        ).stdout
                        rows.setdefault("docker run -d", []).append((time.perf_counter() - start) * 1000)
                        rows.setdefault("docker rm -f", []).append(
                            _ms(docker.argv("rm", "-f", cid.decode().strip()))
                        )
        finally:
            subprocess.run(
                [fast, "delete", "-f", name], env=env, timeout=300, capture_output=True, check=False
            )
            left = subprocess.run(
                [fast, "list", "-q"], env=env, capture_output=True, text=True, timeout=60, check=False
            )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    py = sys.version.split()[0]
    print(f"orbsim vs docker, {when}, {os.cpu_count()} CPUs, load average {load}, python {py}")
    print("(indicative on a loaded host: compare rows of this run, not runs)")
    for label, samples in rows.items():
        print(_row(label, samples))
    if why is not None:
        print(f"docker: not measured: {why}")

    def ratio(a: str, b: str) -> None:
        if rows.get(a) and rows.get(b):
            print(f"  {a} / {b}: {_median(rows[a]) / _median(rows[b]):.2f}x")

    print("ratios (medians):")
    ratio("orbsim run (launcher)", "nsenter ... true (floor)")
    ratio("orbsim run (launcher)", "docker exec C true")
    ratio("orbsim run (console script)", "docker exec C true")
    ratio("orbsim run (nsenter chain)", "orbsim run (launcher)")
    ratio("orbsim create", "docker run -d")
    ratio("orbsim delete", "docker rm -f")
    if left.stdout.strip():
        print(f"LEFT BEHIND: {left.stdout.split()}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
