"""Moving files in and out of a machine."""

from __future__ import annotations

from pathlib import Path

from pytest_orbstack import Machine


def test_push_and_pull_a_file(orb_vm: Machine, tmp_path: Path) -> None:
    local = tmp_path / "data.txt"
    local.write_text("some data\n")
    orb_vm.push(local, "/tmp/data.txt")
    assert orb_vm.run(["cat", "/tmp/data.txt"]).stdout == "some data\n"

    orb_vm.run("tr a-z A-Z < /tmp/data.txt > /tmp/upper.txt")
    orb_vm.pull("/tmp/upper.txt", tmp_path / "upper.txt")
    assert (tmp_path / "upper.txt").read_text() == "SOME DATA\n"


def test_push_a_directory(orb_vm: Machine, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "leaf.txt").write_text("leaf\n")
    orb_vm.push(tree, "/tmp/pushed-tree")
    assert orb_vm.read_text("/tmp/pushed-tree/sub/leaf.txt") == "leaf\n"


def test_write_and_read_text(orb_vm: Machine) -> None:
    text = "line one\nquotes ' \" and $dollars stay as they are\n"
    orb_vm.write_text("/tmp/written.txt", text)
    assert orb_vm.read_text("/tmp/written.txt") == text
