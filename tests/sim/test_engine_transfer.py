"""push and pull: the real ``cp -rf`` semantics, and no way for a machine to write outside itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def host_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "dir/sub").mkdir(parents=True)
    (src / "file.txt").write_text("one\n")
    (src / "dir/sub/deep.txt").write_text("deep\n")
    os.symlink("/etc/hostname", src / "dir/link")
    return src


def test_push_defaults_to_home_and_keeps_cp_semantics(make_machine, ns_engine, host_tree, capfd) -> None:
    m = make_machine("push-m")
    sources = [str(host_tree / "file.txt"), str(host_tree / "dir")]
    rc = ns_engine.push(m.mdir, user="alice", sources=sources, dest=None)
    assert rc == 0
    listing = m.sh("cat file.txt dir/sub/deep.txt; readlink dir/link; stat -c %U file.txt dir/sub/deep.txt")
    assert listing.stdout.split() == ["one", "deep", "/etc/hostname", "alice", "alice"]
    # relative destination: relative to the home; a new name copies the directory as that name
    assert ns_engine.push(m.mdir, user="alice", sources=[str(host_tree / "dir")], dest="copy") == 0
    assert m.run("cat", "copy/sub/deep.txt").stdout == "deep\n"
    capfd.readouterr()


def test_push_errors_are_cps(make_machine, ns_engine, host_tree, capfd) -> None:
    m = make_machine("push-err")
    missing = str(host_tree / "missing")
    rc = ns_engine.push(m.mdir, user="alice", sources=[missing, str(host_tree / "file.txt")], dest=None)
    err = capfd.readouterr().err
    assert rc == 1
    assert f"cp: cannot stat '{missing}': No such file or directory" in err
    assert m.run("cat", "file.txt").stdout == "one\n"  # the other source was copied
    rc = ns_engine.push(m.mdir, user="alice", sources=[str(host_tree / "file.txt")], dest="/etc/forbidden")
    err = capfd.readouterr().err
    assert rc == 1
    assert "cp: cannot create regular file '/etc/forbidden': Permission denied" in err
    assert ".orbsim-push" not in err


def test_push_through_a_symlink_stays_in_the_machine(make_machine, ns_engine, host_tree, tmp_path) -> None:
    m = make_machine("push-link")
    target = tmp_path / "host-target"
    target.mkdir()
    assert m.sh(f"ln -s {target} ~/escape").returncode == 0
    # In the machine the link points nowhere (the host path does not exist there): cp fails.
    rc = ns_engine.push(m.mdir, user="alice", sources=[str(host_tree / "file.txt")], dest="escape/x.txt")
    assert rc == 1
    assert list(target.iterdir()) == []  # the host directory of that name is untouched


def test_pull_defaults_and_errors(make_machine, ns_engine, tmp_path, monkeypatch, capfd) -> None:
    m = make_machine("pull-m")
    made = m.sh("mkdir -p d/sub && echo a > a.txt && echo deep > d/sub/deep.txt && ln -s /etc/shadow d/l")
    assert made.returncode == 0
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    assert ns_engine.pull(m.mdir, user="alice", sources=["a.txt", "d"], dest=None) == 0
    assert (out / "a.txt").read_text() == "a\n"
    assert (out / "d/sub/deep.txt").read_text() == "deep\n"
    assert os.readlink(out / "d/l") == "/etc/shadow"  # a symlink is copied as a symlink
    rc = ns_engine.pull(m.mdir, user="alice", sources=["/home/alice/a.txt"], dest=str(out / "renamed.txt"))
    assert rc == 0
    assert (out / "renamed.txt").read_text() == "a\n"
    capfd.readouterr()
    assert ns_engine.pull(m.mdir, user="alice", sources=["nope"], dest=str(out)) == 1
    assert "cp: cannot stat 'nope': No such file or directory" in capfd.readouterr().err


def test_pull_refuses_a_crafted_archive(make_machine, ns_engine, tmp_path, capfd) -> None:
    """Even a machine whose tar lies cannot make orbsim write outside the destination."""
    m = make_machine("pull-evil")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("untouched\n")
    fake_tar = f"""#!/usr/bin/python3
import io, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    def add(name, data=b"", **kw):
        info = tarfile.TarInfo(name)
        for k, v in kw.items():
            setattr(info, k, v)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    add("0/link", type=tarfile.SYMTYPE, linkname="{outside}")
    add("0/link/victim.txt", b"pwned\\n")
    add("0/file", type=tarfile.SYMTYPE, linkname="{victim}")
    add("0/file", b"pwned\\n")
    add("0/../../escape.txt", b"pwned\\n")
    add("{outside}/abs.txt", b"pwned\\n")
    add("0/hard", type=tarfile.LNKTYPE, linkname="{victim}")
sys.stdout.buffer.write(buf.getvalue())
"""
    (tmp_path / "faketar").write_text(fake_tar)
    assert ns_engine.push(m.mdir, user="alice", sources=[str(tmp_path / "faketar")], dest="/tmp/faketar") == 0
    assert m.sh("sudo -n install -m 755 /tmp/faketar /usr/bin/tar && touch x", user="alice").returncode == 0
    dest = tmp_path / "dest"
    dest.mkdir()
    ns_engine.pull(m.mdir, user="alice", sources=["x"], dest=str(dest))
    assert victim.read_text() == "untouched\n"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert not (tmp_path / "escape.txt").exists()
    assert "skipped" in capfd.readouterr().err
