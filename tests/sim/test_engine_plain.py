"""The plain engine (ORBSIM_MODE=plain): unisolated, labelled as such, and still well-behaved."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_orbstack.sim import engine as engine_mod
from pytest_orbstack.sim.engine import EngineError, get_engine
from pytest_orbstack.sim.plain import PlainEngine

SNIPPET = """
import json, sys
from pathlib import Path
from pytest_orbstack.sim.engine import get_engine
e = get_engine({"ORBSIM_MODE": "plain"})
sys.exit(e.exec(Path(sys.argv[1]), sys.argv[3:], user="alice", workdir=sys.argv[2] or None, env={}))
"""


def _run(mdir: Path, *argv: str, workdir: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SNIPPET, str(mdir), workdir, *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_mode_selection_and_label() -> None:
    plain = get_engine({"ORBSIM_MODE": "plain"})
    assert isinstance(plain, PlainEngine)
    assert plain.kind == "plain"
    assert "UNISOLATED" in (PlainEngine.__doc__ or "")
    assert get_engine({}).kind == "namespace"
    with pytest.raises(EngineError, match="ORBSIM_MODE='bogus' is not a mode"):
        get_engine({"ORBSIM_MODE": "bogus"})
    assert "plain" in engine_mod.NOT_ROOT


@pytest.fixture
def plain_machine(tmp_path: Path):
    e = PlainEngine()
    mdir = tmp_path / "plain-m"
    mdir.mkdir()
    e.prepare(mdir, hostname="plain-m", username="alice")
    assert e.boot(mdir, hostname="plain-m") == "127.0.0.1"
    yield e, mdir
    e.destroy(mdir)
    assert not mdir.exists()
    assert e.machine_pids(mdir) == []


def test_plain_exec_runs_in_the_directory(plain_machine) -> None:
    _, mdir = plain_machine
    res = _run(mdir, "sh", "-c", 'pwd; echo "$HOME"; exit 4')
    assert res.returncode == 4
    home = str(mdir.resolve() / "root/home/alice")
    assert res.stdout.split() == [home, home]
    assert _run(mdir, "no-such-command-xyz").returncode == 127
    assert _run(mdir, "pwd", workdir="/no/such").stdout.strip() == str(mdir.resolve() / "root")


def test_plain_background_process_does_not_block_and_halt_ends_it(plain_machine) -> None:
    e, mdir = plain_machine
    res = _run(mdir, "sh", "-c", "sleep 300 & echo $!")
    assert res.returncode == 0
    pid = int(res.stdout.strip())
    assert pid in e.machine_pids(mdir)
    e.halt(mdir)
    assert e.machine_pids(mdir) == []
    assert not e.running(mdir)


def test_plain_push_pull(plain_machine, tmp_path: Path, monkeypatch, capfd) -> None:
    e, mdir = plain_machine
    src = tmp_path / "f.txt"
    src.write_text("data\n")
    assert e.push(mdir, user="alice", sources=[str(src)], dest=None) == 0
    assert (mdir / "root/home/alice/f.txt").read_text() == "data\n"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    assert e.pull(mdir, user="alice", sources=["f.txt"], dest=str(tmp_path / "out")) == 0
    assert (tmp_path / "out/f.txt").read_text() == "data\n"
    assert e.pull(mdir, user="alice", sources=["nope"], dest=str(tmp_path / "out")) == 1
    assert "cannot stat" in capfd.readouterr().err
