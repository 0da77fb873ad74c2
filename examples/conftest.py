"""Fixtures shared by the examples that deploy something: a tiny Debian package, built locally.

Machines have no internet access in every setup (orbsim has none), so the
examples install a package from a local ``.deb``.  It is built here in pure
Python (a ``.deb`` is an ``ar`` archive of three members), so no ``dpkg-deb``
is needed on the host -- a Mac has none.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

#: The package the examples deploy, and what its command prints.
PACKAGE = "orb-hello"
VERSION = "1.0"
COMMAND = "/usr/bin/orb-hello"
SCRIPT = """#!/bin/sh
# orb-hello: prints the greeting of /etc/orb-hello.conf
sed -n 's/^greeting = //p' /etc/orb-hello.conf
"""
CONTROL = f"""Package: {PACKAGE}
Version: {VERSION}
Architecture: all
Maintainer: pytest-orbstack examples <examples@example.invalid>
Description: a tiny package the pytest-orbstack examples install
"""


def _tar_gz(files: dict[str, tuple[bytes, int]], dirs: list[str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uname, info.gname = tarfile.DIRTYPE, 0o755, "root", "root"
            tar.addfile(info)
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uname, info.gname = len(data), mode, "root", "root"
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += [header.encode("ascii"), data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def build_deb(directory: Path) -> Path:
    """Write ``orb-hello_1.0_all.deb`` (installs :data:`COMMAND`) into ``directory``; its path."""
    control = _tar_gz({"./control": (CONTROL.encode(), 0o644)}, ["./"])
    data = _tar_gz({"." + COMMAND: (SCRIPT.encode(), 0o755)}, ["./", "./usr/", "./usr/bin/"])
    path = directory / f"{PACKAGE}_{VERSION}_all.deb"
    path.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control), ("data.tar.gz", data)]))
    return path


@pytest.fixture(scope="session")
def hello_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local ``orb-hello`` package: ``dpkg -i`` it in a machine to get ``/usr/bin/orb-hello``."""
    return build_deb(tmp_path_factory.mktemp("deb"))
