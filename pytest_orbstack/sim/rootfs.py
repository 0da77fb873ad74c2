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

import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

#: Name of the cached image directory; bump the suffix when the recipe changes.
IMAGE_NAME = "debian-bookworm-2"
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
STAMP = ".orbsim-image.json"
#: Generous: debootstrap downloads ~60 MB from Debian's mirror.
BUILD_TIMEOUT = 1800.0


def image_dir(environ: Optional[Mapping[str, str]] = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("ORBSIM_IMAGE_DIR") or "/var/cache/orbsim")


def image_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    """Where the rootfs is (or will be)."""
    return image_dir(environ) / IMAGE_NAME


def is_ready(environ: Optional[Mapping[str, str]] = None) -> bool:
    return (image_path(environ) / STAMP).is_file()


def status(environ: Optional[Mapping[str, str]] = None) -> dict[str, object]:
    """``{"path", "ready", "built_at", "suite", "packages", "size_bytes"}`` for ``orbsim image status``."""
    path = image_path(environ)
    info: dict[str, object] = {
        "path": str(path),
        "ready": False,
        "built_at": None,
        "suite": SUITE,
        "packages": list(PACKAGES),
    }
    try:
        stamp = json.loads((path / STAMP).read_text())
    except (OSError, ValueError):
        return info
    info["ready"] = True
    info["built_at"] = stamp.get("built_at")
    return info


def build(environ: Optional[Mapping[str, str]] = None, *, force: bool = False, progress: bool = True) -> Path:
    """Build the image unless it exists (or always, with ``force``); return its path.

    Raises ``EngineError`` saying what to do when not root, when debootstrap
    is missing, or when it fails.  Concurrent callers wait for one build.
    """
    import fcntl

    from .engine import EngineError

    path = image_path(environ)
    if is_ready(environ) and not force:
        return path
    if os.geteuid() != 0:
        raise EngineError("building the orbsim machine image needs root: run `orbsim image build` as root")
    if shutil.which("debootstrap") is None:
        raise EngineError(
            "debootstrap is not installed: install it (`apt-get install debootstrap`), "
            "then run `orbsim image build`"
        )
    top = image_dir(environ)
    top.mkdir(parents=True, exist_ok=True)
    with open(top / "build.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_ready(environ) and not force:
            return path  # another process built it while we waited
        _build_locked(top, path, progress)
    return path


def _build_locked(top: Path, path: Path, progress: bool) -> None:
    import tempfile

    from . import runner
    from .engine import EngineError

    work = Path(tempfile.mkdtemp(prefix=".build-", dir=top))
    target = work / "root"
    started = time.monotonic()
    if progress:
        sys.stderr.write(
            f"orbsim: building the machine image (Debian {SUITE}, debootstrap from {MIRROR}, "
            f"about 1 min) into {path} ...\n"
        )
        sys.stderr.flush()
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(target), MIRROR]
    try:
        runner.run(argv, timeout=BUILD_TIMEOUT)
        _finish(target)
        (target / STAMP).write_text(
            json.dumps(
                {
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "suite": SUITE,
                    "packages": list(PACKAGES),
                    "mirror": MIRROR,
                }
            )
            + "\n"
        )
        old = None
        if path.exists():
            old = work / "old"
            path.rename(old)
        target.rename(path)
    except runner.RunError as exc:
        raise EngineError(
            f"building the machine image failed ({exc}); check network access to {MIRROR} "
            f"and retry `orbsim image build` (log: {work / 'root/debootstrap/debootstrap.log'})"
        ) from exc
    else:
        shutil.rmtree(work, ignore_errors=True)
    if progress:
        sys.stderr.write(f"orbsim: machine image ready in {time.monotonic() - started:.0f}s\n")


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
    import fcntl
    import tempfile

    from . import runner

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
