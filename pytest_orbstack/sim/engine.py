"""Engines: what an orbsim machine physically is.

The CLI (``cli.py``/``state.py``) keeps the machine registry; an engine makes
the machine real.  ``mdir`` is the machine's directory ``$ORBSIM_HOME/machines/<id>/``;
the engine keeps everything it needs inside it.

Two engines:

- ``NamespaceEngine`` (``kind == "namespace"``, the default; in
  ``namespace.py``): a machine is an overlay over a shared Debian rootfs, run
  by a long-lived init in its own mount, uts, ipc, pid and net namespaces, with
  an address on orbsim's host bridge.  Needs root and the image.
- ``PlainEngine`` (``kind == "plain"``, only with ``ORBSIM_MODE=plain``): NOT
  ISOLATED.  A machine is a plain directory on the host and its commands run on
  the host, as orbsim's own user, with the working directory inside that
  directory.  For developing the CLI without root; never a stand-in for the
  isolation tests rely on.

Running commands (``exec``, both engines): stdin is passed straight through.
When orbsim's stdout/stderr are a terminal or a file, the command gets them
directly.  When they are pipes or sockets (a caller capturing the output, as
``subprocess.run(capture_output=True)`` does), the command writes into
orbsim's own pipes and orbsim copies them; when the command exits, orbsim
copies what is buffered and returns its exit code at once.  A background
process the command left behind (``sh -c 'server &'``) keeps running; if it
still holds the pipes, a detached ``cat`` per pipe reads them until it closes
them, so it never dies of SIGPIPE and the caller sees end-of-file as soon as
orbsim exits (details: ``runner.interactive``).  ``exec(..., replace=True)``
lets orbsim's process become the command when no copying is needed.

Machines have no ``/mnt/mac``: see ``namespace.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Protocol

NOT_ROOT = (
    "orbsim needs root to create isolated machines: run it as root, "
    "or set ORBSIM_MODE=plain to run commands on the host unisolated"
)


class EngineError(Exception):
    """One user-facing line that says what is wrong and how to fix it."""


class Engine(Protocol):
    """What the CLI needs from a machine implementation (see the module docstring)."""

    kind: str

    def preflight(self) -> None: ...

    def prepare(self, mdir: Path, *, hostname: str, username: str) -> None: ...

    def boot(self, mdir: Path, *, hostname: str) -> str: ...

    def running(self, mdir: Path) -> bool: ...

    def seed_cloud_init(self, mdir: Path, *, user_data: bytes, instance_id: str, hostname: str) -> None: ...

    def exec(
        self,
        mdir: Path,
        argv: list[str],
        *,
        user: str,
        workdir: Optional[str],
        env: dict[str, str],
        replace: bool = False,
    ) -> int: ...

    def halt(self, mdir: Path) -> None: ...

    def destroy(self, mdir: Path) -> None: ...

    def clone(self, src: Path, dst: Path, *, hostname: str) -> None: ...

    def set_hostname(self, mdir: Path, hostname: str) -> None: ...

    def push(self, mdir: Path, *, user: str, sources: list[str], dest: Optional[str]) -> int: ...

    def pull(self, mdir: Path, *, user: str, sources: list[str], dest: Optional[str]) -> int: ...


def get_engine(environ: Optional[Mapping[str, str]] = None) -> Engine:
    """``ORBSIM_MODE=plain`` gives the unisolated :class:`PlainEngine`, anything else the namespace engine."""
    env = os.environ if environ is None else environ
    mode = env.get("ORBSIM_MODE", "").strip().lower()
    if mode == "plain":
        return PlainEngine()
    if mode not in ("", "namespace", "isolated"):
        raise EngineError(f"ORBSIM_MODE={mode!r} is not a mode: use 'plain' or leave it unset")
    from .namespace import NamespaceEngine

    return NamespaceEngine(env)


# --------------------------------------------------------------------------- plain


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

    def _root(self, mdir: Path) -> Path:
        return mdir / "root"

    def _home(self, mdir: Path, user: str) -> Path:
        root = self._root(mdir)
        return root / "root" if user == "root" else root / "home" / user

    def _map(self, mdir: Path, path: str, user: str) -> Path:
        if path.startswith("/"):
            return self._root(mdir) / path.lstrip("/")
        return self._home(mdir, user) / path

    def prepare(self, mdir: Path, *, hostname: str, username: str) -> None:
        root = self._root(mdir)
        for sub in ("etc", "tmp", "root", f"home/{username}"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.set_hostname(mdir, hostname)
        (mdir / "plain-user").write_text(username + "\n")

    def set_hostname(self, mdir: Path, hostname: str) -> None:
        etc = self._root(mdir) / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hostname").write_text(hostname + "\n")

    def clone(self, src: Path, dst: Path, *, hostname: str) -> None:
        from . import runner

        dst.mkdir(parents=True, exist_ok=True)
        runner.run(["cp", "-a", "--reflink=auto", str(self._root(src)), str(self._root(dst))], timeout=600)
        user_file = src / "plain-user"
        if user_file.exists():
            (dst / "plain-user").write_text(user_file.read_text())
        self.set_hostname(dst, hostname)

    # -- life cycle

    def boot(self, mdir: Path, *, hostname: str) -> str:
        (mdir / "plain-running").write_text("")
        return "127.0.0.1"

    def running(self, mdir: Path) -> bool:
        return (mdir / "plain-running").exists()

    def seed_cloud_init(self, mdir: Path, *, user_data: bytes, instance_id: str, hostname: str) -> None:
        """Plain machines run no cloud-init: the user-data is only kept beside the machine."""
        (mdir / "user-data").write_bytes(user_data)

    def machine_pids(self, mdir: Path) -> list[int]:
        """Host pids of processes started by this machine's commands."""
        mark = f"{_PLAIN_MARK}={mdir.resolve()}".encode() + b"\0"
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

    def halt(self, mdir: Path) -> None:
        import signal
        import time

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
            (mdir / "plain-running").unlink()

    def destroy(self, mdir: Path) -> None:
        import shutil

        self.halt(mdir)
        shutil.rmtree(mdir, ignore_errors=True)

    # -- commands

    def _env(self, mdir: Path, user: str, env: dict[str, str]) -> dict[str, str]:
        home = self._home(mdir, user)
        base = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "USER": user,
            "LOGNAME": user,
            "SHELL": "/bin/sh",
        }
        base.update(env)
        base[_PLAIN_MARK] = str(mdir.resolve())
        return base

    def exec(
        self,
        mdir: Path,
        argv: list[str],
        *,
        user: str,
        workdir: Optional[str],
        env: dict[str, str],
        replace: bool = False,
    ) -> int:
        from . import runner

        if not self.running(mdir):
            self.boot(mdir, hostname="")
        cwd = self._home(mdir, user) if workdir is None else self._map(mdir, workdir, user)
        if not cwd.is_dir():
            cwd = self._root(mdir)
        cwd.mkdir(parents=True, exist_ok=True)
        os.chdir(cwd)
        # Through /usr/bin/env: PATH lookup and "command not found" -> 127, like a shell.
        return runner.interactive(["/usr/bin/env", "--", *argv], self._env(mdir, user, env), exec_ok=replace)

    def _default_user(self, mdir: Path, user: str) -> str:
        try:
            return (mdir / "plain-user").read_text().strip() or user
        except OSError:
            return user

    def push(self, mdir: Path, *, user: str, sources: list[str], dest: Optional[str]) -> int:
        from . import runner

        user = self._default_user(mdir, user)
        home = self._home(mdir, user)
        target = home if dest is None else self._map(mdir, dest, user)
        res = runner.run(["cp", "-rf", "--", *sources, str(target)], check=False, timeout=3600)
        sys.stderr.write(res.stderr)
        return res.returncode

    def pull(self, mdir: Path, *, user: str, sources: list[str], dest: Optional[str]) -> int:
        from . import runner

        user = self._default_user(mdir, user)
        mapped = [str(self._map(mdir, s, user)) for s in sources]
        target = dest if dest is not None else os.getcwd()
        res = runner.run(["cp", "-rf", "--", *mapped, target], check=False, timeout=3600)
        sys.stderr.write(res.stderr)
        return res.returncode
