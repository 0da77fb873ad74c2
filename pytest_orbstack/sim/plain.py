"""The plain engine (``ORBSIM_MODE=plain``): NOT ISOLATED machines, for developing orbsim without root.

See ``engine.py`` for both engines and how commands run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Optional

from . import relay, runner

_PLAIN_MARK = "ORBSIM_PLAIN_MACHINE"


class PlainEngine:
    """UNISOLATED machines: a directory on the host; commands run on the host.

    ``mdir/root`` stands for the machine's ``/``: the default user's home is
    ``mdir/root/home/USER`` and a command's working directory is mapped into
    it (``-w /srv`` runs in ``mdir/root/srv`` if it exists, else in
    ``mdir/root``).  Commands run as orbsim's own user whatever ``user`` says,
    with ``HOME`` set to the mapped home.  ``boot`` reports ``127.0.0.1``:
    servers started by a plain machine listen on the host itself.
    Processes are tracked by an environment variable naming the machine,
    so ``halt`` can end them.
    """

    kind = "plain"

    def preflight(self) -> None:
        return None

    # -- filesystem

    def _root(self, mdir: str) -> Path:
        return Path(mdir) / "root"

    def _home(self, mdir: str, user: str) -> Path:
        root = self._root(mdir)
        return root / "root" if user == "root" else root / "home" / user

    def _map(self, mdir: str, path: str, user: str) -> Path:
        if path.startswith("/"):
            return self._root(mdir) / path.lstrip("/")
        return self._home(mdir, user) / path

    def prepare(self, mdir: str, *, hostname: str, username: str) -> None:
        root = self._root(mdir)
        for sub in ("etc", "tmp", "root", f"home/{username}"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.set_hostname(mdir, hostname)
        (Path(mdir) / "plain-user").write_text(username + "\n")

    def set_hostname(self, mdir: str, hostname: str) -> None:
        etc = self._root(mdir) / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hostname").write_text(hostname + "\n")

    def clone(self, src: str, dst: str, *, hostname: str) -> None:

        Path(dst).mkdir(parents=True, exist_ok=True)
        runner.run(["cp", "-a", "--reflink=auto", str(self._root(src)), str(self._root(dst))], timeout=600)
        user_file = Path(src) / "plain-user"
        if user_file.exists():
            (Path(dst) / "plain-user").write_text(user_file.read_text())
        self.set_hostname(dst, hostname)

    # -- life cycle

    def boot(self, mdir: str, *, hostname: str) -> str:
        (Path(mdir) / "plain-running").write_text("")
        return "127.0.0.1"

    def running(self, mdir: str) -> bool:
        return (Path(mdir) / "plain-running").exists()

    def seed_cloud_init(self, mdir: str, *, user_data: bytes, instance_id: str, hostname: str) -> None:
        """Plain machines run no cloud-init: the user-data is only kept beside the machine."""
        (Path(mdir) / "user-data").write_bytes(user_data)

    def machine_pids(self, mdir: str) -> list[int]:
        """Host pids of processes started by this machine's commands."""
        mark = f"{_PLAIN_MARK}={Path(mdir).resolve()}".encode() + b"\0"
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if mark in fh.read():
                        found.append(int(entry))
            except OSError:
                continue
        return found

    def halt(self, mdir: str) -> None:
        deadline = time.monotonic() + 5
        while True:
            pids = [p for p in self.machine_pids(mdir) if p != os.getpid()]
            if not pids or time.monotonic() > deadline:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        with contextlib.suppress(FileNotFoundError):
            (Path(mdir) / "plain-running").unlink()

    def destroy(self, mdir: str) -> None:
        self.halt(mdir)
        shutil.rmtree(mdir, ignore_errors=True)

    # -- commands

    def _env(self, mdir: str, user: str, env: dict[str, str]) -> dict[str, str]:
        home = self._home(mdir, user)
        base = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "USER": user,
            "LOGNAME": user,
            "SHELL": "/bin/sh",
        }
        base.update(env)
        base[_PLAIN_MARK] = str(Path(mdir).resolve())
        return base

    def exec(
        self,
        mdir: str,
        argv: list[str],
        *,
        user: str,
        workdir: Optional[str],
        env: dict[str, str],
        replace: bool = False,
    ) -> int:
        if not self.running(mdir):
            self.boot(mdir, hostname="")
        cwd = self._home(mdir, user) if workdir is None else self._map(mdir, workdir, user)
        if not cwd.is_dir():
            cwd = self._root(mdir)
        cwd.mkdir(parents=True, exist_ok=True)
        os.chdir(cwd)
        # Through /usr/bin/env: PATH lookup and "command not found" -> 127, like a shell.
        return relay.interactive(["/usr/bin/env", "--", *argv], self._env(mdir, user, env), exec_ok=replace)

    def _default_user(self, mdir: str, user: str) -> str:
        try:
            return (Path(mdir) / "plain-user").read_text().strip() or user
        except OSError:
            return user

    def push(self, mdir: str, *, user: str, sources: list[str], dest: Optional[str]) -> int:

        user = self._default_user(mdir, user)
        home = self._home(mdir, user)
        target = home if dest is None else self._map(mdir, dest, user)
        res = runner.run(["cp", "-rf", "--", *sources, str(target)], check=False, timeout=3600)
        sys.stderr.write(res.stderr)
        return res.returncode

    def pull(self, mdir: str, *, user: str, sources: list[str], dest: Optional[str]) -> int:

        user = self._default_user(mdir, user)
        mapped = [str(self._map(mdir, s, user)) for s in sources]
        target = dest if dest is not None else os.getcwd()
        res = runner.run(["cp", "-rf", "--", *mapped, target], check=False, timeout=3600)
        sys.stderr.write(res.stderr)
        return res.returncode
