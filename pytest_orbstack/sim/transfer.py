"""push and pull for namespace machines: the real ``cp -rf``, on the side that receives.

``orbctl push`` runs ``cp -rf`` in the machine as the default user.  orbsim
does the same: the host sources travel as a tar stream into a private staging
directory in the machine (under the machine's ``/tmp``), and ``cp -rf`` runs
there as the default user, in the user's home, so relative destinations, the
default destination (the home), permissions and ``cp``'s own error texts and
exit codes are the machine's.  Writing happens inside the machine's own root:
a symlink in the machine cannot lead it to the host.

``pull`` is the mirror image: ``tar`` in the machine (as the default user, in
the home) packs the sources, orbsim unpacks them on the host into a fresh
private directory, refusing any member that would land outside it (absolute
names, ``..``, paths through a symlink, links out of it, device files), and
the host's ``cp -rf`` copies them to the destination (default: orbsim's cwd).
Symlinks are copied as symlinks, like ``cp -r``.  Staging paths are replaced
by the names the user gave in every error line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

from . import runner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .engineapi import MachineAccess

_PUSH_SCRIPT = r"""stage=$1; dest=$2; shift 2
mkdir -m 700 -- "$stage" || exit 1
if ! tar -xf - -C "$stage"; then rm -rf -- "$stage"; exit 1; fi
cp -rf -- "$@" "$dest"; rc=$?
rm -rf -- "$stage"; exit $rc
"""

_PULL_SCRIPT = r"""i=0; rc=0
for s; do
  if [ -e "$s" ] || [ -L "$s" ]; then
    tar -cf - -C "$(dirname -- "$s")" --transform "s,^,$i/,S" -- "$(basename -- "$s")" || rc=1
  else
    printf "cp: cannot stat '%s': No such file or directory\n" "$s" >&2; rc=1
  fi
  i=$((i+1))
done
exit $rc
"""


def _base(src: str) -> str:
    stripped = src.rstrip("/") or "/"
    return os.path.basename(stripped) or stripped


def _missing(src: str) -> str:
    return f"cp: cannot stat '{src}': No such file or directory\n"


def push(engine: MachineAccess, mdir: str, *, user: str, sources: list[str], dest: Optional[str]) -> int:

    rc = 0
    staged: list[tuple[str, str]] = []
    stage = f"/tmp/.orbsim-push-{secrets.token_hex(6)}"
    with tempfile.TemporaryFile() as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for i, src in enumerate(sources):
                if not os.path.lexists(src):
                    sys.stderr.write(_missing(src))
                    rc = 1
                    continue
                tar.add(src, arcname=f"{i}/{_base(src)}", recursive=True)
                staged.append((f"{stage}/{i}/{_base(src)}", src))
        if not staged:
            return rc
        archive.seek(0)
        cmd, env = engine.enter_argv(
            mdir,
            user,
            None,
            {},
            [
                "/bin/sh",
                "-c",
                _PUSH_SCRIPT,
                "orbsim-push",
                stage,
                dest if dest else ".",
                *[path for path, _ in staged],
            ],
        )
        res = runner.run(cmd, env=env, stdin=archive, check=False, timeout=3600)
    sys.stdout.write(res.stdout)
    sys.stderr.write(_unstage(res.stderr, staged))
    return res.returncode or rc


def _unstage(text: str, staged: list[tuple[str, str]]) -> str:
    for path, original in staged:
        text = text.replace(path, original)
    return text


def pull(engine: MachineAccess, mdir: str, *, user: str, sources: list[str], dest: Optional[str]) -> int:

    target = dest if dest else os.getcwd()
    stage = tempfile.mkdtemp(prefix="orbsim-pull-")
    try:
        with tempfile.TemporaryFile() as archive:
            cmd, env = engine.enter_argv(
                mdir, user, None, {}, ["/bin/sh", "-c", _PULL_SCRIPT, "orbsim-pull", *sources]
            )
            res = runner.run(cmd, env=env, stdout=archive, check=False, timeout=3600)
            sys.stderr.write(res.stderr)
            rc = res.returncode
            present: set[int] = set()
            if archive.seek(0, os.SEEK_END) > 0:
                archive.seek(0)
                try:
                    with tarfile.open(fileobj=archive, mode="r:", ignore_zeros=True) as tar:
                        present = _extract_safely(tar, Path(stage))
                except tarfile.TarError as exc:
                    sys.stderr.write(f"orbsim: pull: unreadable archive from the machine: {exc}\n")
                    return 1
        staged = [
            (os.path.join(stage, str(i), _base(src)), src) for i, src in enumerate(sources) if i in present
        ]
        if not staged:
            return rc or 1
        out = runner.run(["cp", "-rf", "--", *[p for p, _ in staged], target], check=False, timeout=3600)
        sys.stderr.write(_unstage(out.stderr, staged))
        return out.returncode or rc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _extract_safely(tar: tarfile.TarFile, stage: Path) -> set[int]:
    """Extract members that stay inside ``stage``; return the source indexes seen."""

    root = os.path.realpath(stage)
    seen: set[int] = set()
    kwargs: dict[str, object] = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
    for member in tar:
        reason = _refusal(member, root)
        if reason:
            sys.stderr.write(f"orbsim: pull: skipped {member.name!r}: {reason}\n")
            continue
        head = member.name.split("/", 1)[0]
        if head.isdigit():
            seen.add(int(head))
        member.mode &= 0o777
        target = os.path.join(root, member.name)
        if os.path.islink(target):
            os.unlink(target)  # never write through a symlink an earlier member made
        tar.extract(member, path=root, set_attrs=not member.issym(), numeric_owner=False, **kwargs)  # type: ignore[arg-type]
    return seen


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _refusal(member: tarfile.TarInfo, root: str) -> Optional[str]:
    name = member.name
    if name.startswith("/") or ".." in name.split("/"):
        return "absolute or '..' path"
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "not a file, directory or link"
    # realpath follows symlinks already extracted: a member may not go through one.
    parent = os.path.realpath(os.path.join(root, os.path.dirname(name)))
    if not _inside(root, parent):
        return "would be written through a symlink"
    if member.islnk():
        linked = os.path.realpath(os.path.join(root, member.linkname))
        if not _inside(root, linked):
            return "hard link out of the copy"
    return None
