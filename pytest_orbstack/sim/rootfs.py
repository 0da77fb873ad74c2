"""The machine image: a Debian bookworm rootfs made once with debootstrap.

Cached, host-wide, at ``$ORBSIM_IMAGE_DIR`` (default ``/var/cache/orbsim``) as
``<dir>/<IMAGE_NAME>/``.  The build holds an exclusive lock
(``<dir>/build.lock``), works in a temporary directory beside the cache and
renames the finished tree into place, so a reader sees either no image or a
complete one; a stamp file inside marks it complete.  Every machine, whatever
distro it asks for, runs on this one image (``orbsim list`` still reports the
requested distro and version).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable, Optional

from . import imagecache, runner
from .engineapi import EngineError
from .imagecache import IMAGE_NAME, STAMP
from .imagecache import ready as is_ready

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
#: cloud-init's python3-cryptography needs python3-cffi-backend, a virtual dependency debootstrap
#: does not resolve by itself.
PACKAGES = (
    "iproute2",
    "procps",
    "sudo",
    "python3",
    "busybox",
    "cloud-init",
    "python3-cffi-backend",
    "openssh-server",
)
#: Generous: debootstrap downloads a minimal Debian with cloud-init and OpenSSH from Debian's mirror.
BUILD_TIMEOUT = 1800.0
#: Seconds apt-get may take for one step (update, install).
APT_TIMEOUT = 900.0
#: Seconds between two progress lines of the build.
PROGRESS_EVERY = 10.0
#: Debian's archive keyring, which debootstrap checks the mirror's signatures with.
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


__all__ = ["IMAGE_NAME", "STAMP", "is_ready"]  # the image's names, known from here too (imagecache.py)


def image_dir(environ: Optional[Mapping[str, str]] = None) -> Path:
    return Path(imagecache.directory(environ))


def image_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    """Where the rootfs is (or will be)."""
    return Path(imagecache.path(environ))


def status(environ: Optional[Mapping[str, str]] = None) -> dict[str, object]:
    """``{"path", "ready", "built_at", "suite", "packages", "key", "built_key"}`` for ``orbsim image status``.

    ``key`` is what ``orbsim image key`` prints; ``built_key`` the key of the image on disk
    (``None`` for images built before keys existed).
    """
    path = image_path(environ)
    info: dict[str, object] = {
        "path": str(path),
        "ready": False,
        "built_at": None,
        "suite": SUITE,
        "packages": list(PACKAGES),
        "key": key(),
    }
    try:
        stamp = json.loads((path / STAMP).read_text())
    except (OSError, ValueError):
        return info
    info["ready"] = True
    info["built_at"] = stamp.get("built_at")
    info["built_key"] = stamp.get("key")
    return info


Say = Callable[[str], None]


def to_stderr(line: str) -> None:
    """Progress for the CLI: ``orbsim: LINE`` on stderr."""
    sys.stderr.write(f"orbsim: {line}\n")
    sys.stderr.flush()


def key() -> str:
    """Changes exactly when the image must be rebuilt: name, architecture and recipe (for CI caches)."""

    recipe = json.dumps({"suite": SUITE, "mirror": MIRROR, "packages": sorted(PACKAGES)}, sort_keys=True)
    arch = platform.machine().lower() or "unknown"
    return f"{IMAGE_NAME}-{arch}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def build_needs(environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """The Debian packages the build needs that this host lacks (debootstrap, Debian's keyring)."""
    env = {**os.environ, **(environ or {})}
    needed = []
    if shutil.which("debootstrap", path=env.get("PATH")) is None:
        needed.append("debootstrap")
    if not Path(KEYRING).is_file():  # Ubuntu hosts: debootstrap needs it to check Debian's mirror
        needed.append("debian-archive-keyring")
    return needed


def install_packages(
    packages: Sequence[str], *, why: str, say: Say, environ: Optional[Mapping[str, str]] = None
) -> None:
    """Install Debian ``packages`` with apt-get (root only), saying so first.

    Tries ``apt-get install`` and, if that fails (empty package lists on a
    fresh machine), ``apt-get update`` and the install again.  Raises
    ``EngineError`` with the one line to act on when that is impossible.
    """

    env = {**os.environ, **(environ or {})}
    wanted = " ".join(packages)
    it = "it" if len(packages) == 1 else "them"
    by_hand = f"install {it} by hand (`apt-get install {wanted}`), then try again"
    if not packages:
        return
    if os.geteuid() != 0:
        raise EngineError(f"orbsim needs {wanted} ({why}) and only root can install {it}: {by_hand}")
    apt = shutil.which("apt-get", path=env.get("PATH"))
    if apt is None:
        raise EngineError(f"orbsim needs {wanted} ({why}) and there is no apt-get to install {it}: {by_hand}")
    say(f"installing {wanted} with apt-get ({why}) ...")
    env["DEBIAN_FRONTEND"] = "noninteractive"
    install = [apt, "install", "-y", "-q", "--no-install-recommends", *packages]
    try:
        first = runner.run(install, timeout=APT_TIMEOUT, env=env, check=False)
        if first.returncode != 0:
            runner.run([apt, "update", "-q"], timeout=APT_TIMEOUT, env=env)
            runner.run(install, timeout=APT_TIMEOUT, env=env)
    except runner.RunError as exc:
        raise EngineError(f"`apt-get install {wanted}` failed ({exc}): {by_hand}") from None
    say(f"installed {wanted}")


def build(
    environ: Optional[Mapping[str, str]] = None, *, force: bool = False, progress: Optional[Say] = to_stderr
) -> Path:
    """Build the image unless it exists (or always, with ``force``); return its path.

    Installs what the build needs (``build_needs``) with apt-get first.
    Progress (what, where, elapsed time) goes to ``progress``.  Raises
    ``EngineError`` saying what to do when not root, when the packages cannot
    be installed, or when the build fails.  Concurrent callers (on the whole
    host) wait for one build.
    """

    say: Say = progress or (lambda line: None)
    path = image_path(environ)
    if is_ready(environ) and not force:
        return path
    if os.geteuid() != 0:
        raise EngineError("building the orbsim machine image needs root: run `orbsim image build` as root")
    install_packages(build_needs(environ), why="to build the machine image", say=say, environ=environ)
    top = image_dir(environ)
    try:
        top.mkdir(parents=True, exist_ok=True)
        lock = open(top / "build.lock", "a+")  # noqa: SIM115 - held across the build below
    except OSError as exc:
        raise EngineError(
            f"cannot write the machine image in {top}: {exc.strerror}; set ORBSIM_IMAGE_DIR"
        ) from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another process that is building the machine image in {path} ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if is_ready(environ) and not force:
            return path  # another process built it while we waited
        _build_locked(top, path, say, environ)
    return path


class _Progress:
    """Turns debootstrap's output into a progress line every few seconds, with the elapsed time."""

    def __init__(self, say: Say, every: float = PROGRESS_EVERY) -> None:
        self.say = say
        self.every = every
        self.started = time.monotonic()
        self.last = self.started

    def elapsed(self, now: Optional[float] = None) -> str:
        seconds = int((time.monotonic() if now is None else now) - self.started)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def __call__(self, line: str) -> None:
        if not line.startswith(("I: ", "W: ", "E: ")):
            return  # debootstrap's own progress lines; the rest is in its log
        now = time.monotonic()
        if line.startswith("I: ") and now - self.last < self.every:
            return
        self.last = now
        self.say(f"image build {self.elapsed(now)}: {line[3:]}")


def _build_locked(top: Path, path: Path, say: Say, environ: Optional[Mapping[str, str]]) -> None:

    work = Path(tempfile.mkdtemp(prefix=".build-", dir=top))
    target = work / "root"
    say(
        f"building the machine image (Debian {SUITE}, debootstrap from {MIRROR}) in {path}: "
        f"once per host, a few minutes ..."
    )
    ticker = _Progress(say)
    env = {**os.environ, **(environ or {})}
    debootstrap = shutil.which("debootstrap", path=env.get("PATH")) or "debootstrap"
    argv = [debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(target), MIRROR]
    try:
        runner.stream(argv, timeout=BUILD_TIMEOUT, on_line=ticker, env=env)
        _finish(target)
        (target / STAMP).write_text(
            json.dumps(
                {
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "suite": SUITE,
                    "packages": list(PACKAGES),
                    "mirror": MIRROR,
                    "key": key(),
                }
            )
            + "\n"
        )
        if path.exists():
            path.rename(work / "old")
        target.rename(path)
    except runner.RunError as exc:
        log = work / "root/debootstrap/debootstrap.log"
        kept = work.with_name(".failed-build.log")
        with contextlib.suppress(OSError):
            shutil.copyfile(log, kept)
        shutil.rmtree(work, ignore_errors=True)
        raise EngineError(
            f"building the machine image failed ({exc}); check network access to {MIRROR} "
            f"and retry `orbsim image build` (log: {kept})"
        ) from None
    else:
        shutil.rmtree(work, ignore_errors=True)
    say(f"machine image ready in {ticker.elapsed()}: {path}")


def _finish(root: Path) -> None:
    """Trim and neutralise the fresh rootfs: no apt caches, no host resolver, no policy surprises."""
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = root / sub
        if d.is_dir():
            for entry in d.iterdir():
                if entry.is_file():
                    entry.unlink()
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("# orbsim machines reach only 198.19.249.0/24: no DNS\n")
    for name in ("run", "tmp", "mnt"):
        (root / name).mkdir(parents=True, exist_ok=True)


def install_from(source: Path, environ: Optional[Mapping[str, str]] = None) -> Path:
    """Install an existing debootstrapped tree as the image (a copy; for development hosts)."""

    path = image_path(environ)
    top = image_dir(environ)
    top.mkdir(parents=True, exist_ok=True)
    with open(top / "build.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_ready(environ):
            return path
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=top))
        runner.run(["cp", "-a", "--reflink=auto", str(source), str(work / "root")], timeout=600)
        _finish(work / "root")
        (work / "root" / STAMP).write_text(
            json.dumps(
                {
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "suite": SUITE,
                    "packages": list(PACKAGES),
                    "copied_from": str(source),
                }
            )
            + "\n"
        )
        (work / "root").rename(path)
        shutil.rmtree(work, ignore_errors=True)
    return path
