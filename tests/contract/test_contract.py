"""What the plugin relies on orbctl for: one test per behaviour, identical on orbsim and OrbStack.

Run against orbsim by default, against the real orbctl with ``ORBSTACK_CONTRACT=real``.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
from pathlib import Path

import pytest
from orbctl_contract import Orb

RECORD_KEYS = {"id", "name", "image", "config", "builtin", "state"}


def _plain(orb: Orb) -> bool:
    """orbsim's plain mode: not isolated, so no hostname and no machine root of its own."""
    return orb.kind == "orbsim" and orb.env.get("ORBSIM_MODE") == "plain"


def test_status_running(orb: Orb) -> None:
    proc = orb("status")
    assert (proc.returncode, proc.stdout) == (0, "Running\n")


def test_version_two_lines(orb: Orb) -> None:
    lines = orb.ok("version").stdout.splitlines()
    assert re.fullmatch(r"Version: \d+\.\d+\.\d+ \(\d+\)", lines[0])
    assert re.fullmatch(r"Commit: [0-9a-f]+ \(v\d+\.\d+\.\d+\)", lines[1])


def test_list_json_shape_and_order(orb: Orb, base: str) -> None:
    text = orb.ok("list", "-f", "json").stdout
    assert text.endswith("\n")
    records = json.loads(text)
    names = [r["name"] for r in records]
    assert names == sorted(names)
    mine = next(r for r in records if r["name"] == base)
    assert set(mine) >= RECORD_KEYS
    assert mine["image"] == {**mine["image"], "distro": "ubuntu", "version": "jammy"}
    assert mine["image"]["arch"] in ("amd64", "arm64")
    assert mine["state"] == "running"
    assert "ip4" not in mine
    assert base in orb.ok("list", "-q").stdout.splitlines()


def test_created_machine_is_running_with_an_ip(orb: Orb, base: str) -> None:
    info = orb.info(base)
    if orb.version() >= (2, 0, 0):
        assert set(info) >= {"record", "disk_size"}
        orb.wait_for("ip4", lambda: "ip4" in orb.info(base))
    assert orb.record(base)["state"] == "running"


def test_lookup_by_id(orb: Orb, base: str) -> None:
    mid = orb.record(base)["id"]
    assert len(mid) == 26
    assert orb.record(mid)["name"] == base


def test_info_not_found(orb: Orb) -> None:
    name = orb.name("nosuch")
    proc = orb("info", name, "-f", "json")
    assert proc.returncode == 1
    assert f"[-32098] machine not found: '{name}'" in proc.stderr


def test_create_existing_name(orb: Orb, base: str) -> None:
    proc = orb("create", "ubuntu:22.04", base)
    assert proc.returncode == 1
    assert f"[-32098] create '{base}': machine already exists: '{base}'" in proc.stderr


def test_create_invalid_name(orb: Orb) -> None:
    proc = orb("create", "ubuntu", "pytest-test_bad")
    assert proc.returncode == 1
    assert "[-32098] create 'pytest-test_bad': invalid machine name 'pytest-test_bad'" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "plan9"], "Error: invalid distro: plan9"),
        (["create", "-a", "sparc", "ubuntu"], "Error: invalid architecture: sparc"),
        (["delete"], "Error: no machines specified"),
        (["info"], "Error: accepts 1 arg(s), received 0"),
        (["list", "--bogus"], "Error: unknown flag: --bogus"),
    ],
)
def test_usage_errors(orb: Orb, args: list[str], message: str) -> None:
    proc = orb(*args)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == message


def test_run_flags_exit_code_stdin_and_env(orb: Orb, base: str) -> None:
    assert orb.ok("run", "-m", base, "echo", "-m", "x").stdout == "-m x\n"
    assert orb("run", "-m", base, "sh", "-c", "exit 3").returncode == 3
    assert orb.ok("run", "-m", base, "cat", input="through\n").stdout == "through\n"
    script = 'echo "${CONTRACT_A:-unset} ${CONTRACT_B:-unset}"'
    env = {"CONTRACT_A": "a", "CONTRACT_B": "b", "ORBENV": "CONTRACT_B"}
    assert orb.ok("run", "-m", base, "sh", "-c", script, env=env).stdout == "unset b\n"
    if not _plain(orb):  # plain mode runs on the host, in a directory standing for the machine's /
        assert orb.ok("run", "-m", base, "-w", "/tmp", "pwd").stdout == "/tmp\n"


def test_run_rejects_double_dash(orb: Orb, base: str) -> None:
    if orb.kind == "real" and orb.version()[:2] != (2, 0):
        pytest.skip("only OrbStack 2.0.x is known to reject `--`")
    proc = orb("run", "-m", base, "--", "true")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == "Error: unknown flag --"


def test_push_and_pull(orb: Orb, base: str, tmp_path: Path) -> None:
    src = tmp_path / "contract.txt"
    src.write_text("payload\n")
    orb.ok("push", "-m", base, str(src), "contract-copy.txt")
    assert orb.ok("run", "-m", base, "sh", "-c", "cat ~/contract-copy.txt").stdout == "payload\n"
    orb.ok("pull", "-m", base, "contract-copy.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "payload\n"
    proc = orb("pull", "-m", base, "no-such-file", str(tmp_path))
    assert proc.returncode != 0
    assert "No such file or directory" in proc.stderr


def test_clone_is_stopped_start_before_ip_rename_and_all_or_nothing_delete(orb: Orb, base: str) -> None:
    if orb.version() < (2, 0, 0):
        pytest.skip("clone needs OrbStack 2.0+")
    clone, renamed = orb.name("clone"), orb.name("renamed")
    try:
        orb.ok("clone", base, clone, timeout=600)
        assert orb.record(clone)["state"] == "stopped"
        assert "ip4" not in orb.info(clone)
        orb.ok("start", clone)
        assert orb.record(clone)["state"] == "running"
        orb.wait_for("ip4 after start", lambda: "ip4" in orb.info(clone))
        orb.ok("rename", clone, renamed)
        assert orb.record(renamed)["name"] == renamed
        if not _plain(orb):  # plain mode has no UTS namespace: the host's hostname
            assert orb.ok("run", "-m", renamed, "hostname").stdout.strip() == renamed
        orb.ok("stop", renamed)
        assert orb.record(renamed)["state"] == "stopped"
        assert orb.ok("run", "-m", renamed, "true").returncode == 0  # run starts a stopped machine
        missing = orb.name("missing")
        proc = orb("delete", "-f", renamed, missing)
        assert proc.returncode == 1
        assert f"machine not found: '{missing}'" in proc.stderr
        assert orb.record(renamed)["state"] == "running"  # nothing was deleted
        orb.ok("delete", "-f", renamed)
        assert renamed not in orb.ours()
    finally:
        left = [n for n in (clone, renamed) if n in orb.ours()]
        if left:
            orb("delete", "-f", *left)


def test_several_clones_of_one_stopped_source_at_once_each_start_on_their_first_run(
    orb: Orb, base: str
) -> None:
    """The plugin clones a stopped base from every worker and from prefetch threads at the same
    time, and each clone's first ``run`` starts it (before 2.0 such clones fought over the
    source's freeze state; the clone fast path is used from 2.0 on)."""
    if orb.version() < (2, 0, 0):
        pytest.skip("clone needs OrbStack 2.0+")
    source = orb.name("source")
    copies = [orb.name(f"copy{i}") for i in range(3)]
    try:
        orb.ok("clone", base, source, timeout=600)  # a stopped machine, as a base is
        with concurrent.futures.ThreadPoolExecutor(len(copies)) as pool:
            clones = list(pool.map(lambda copy: orb("clone", source, copy, timeout=600), copies))
            assert [p.returncode for p in clones] == [0] * len(copies), [p.stderr for p in clones]
            assert [orb.record(c)["state"] for c in copies] == ["stopped"] * len(copies)
            runs = list(pool.map(lambda copy: orb("run", "-m", copy, "cat", "/etc/hostname"), copies))
        assert [p.returncode for p in runs] == [0] * len(copies), [p.stderr for p in runs]
        assert [orb.record(c)["state"] for c in copies] == ["running"] * len(copies)
        assert orb.record(source)["state"] == "stopped"  # the source is left as it was
    finally:
        left = [n for n in (source, *copies) if n in orb.ours()]
        if left:
            orb("delete", "-f", *left)
    assert not {source, *copies} & set(orb.ours())


def test_logs(orb: Orb, base: str) -> None:
    assert orb("logs", base).returncode == 0
    missing = orb.name("nosuch")
    proc = orb("logs", missing)
    assert proc.returncode == 0  # logs reports its errors on stdout with exit 0
    assert "machine not found" in proc.stdout


def test_default_machine_is_a_name(orb: Orb, base: str) -> None:
    names = [m["name"] for m in json.loads(orb.ok("list", "-f", "json").stdout)]
    assert orb.ok("default").stdout.strip() in names


def test_config_username_is_per_machine(orb: Orb, base: str) -> None:
    user = orb.ok("config", "get", f"machine.{base}.username").stdout.strip()
    assert user == orb.record(base)["config"]["default_username"]


def test_start_of_a_running_machine_is_a_no_op(orb: Orb, base: str) -> None:
    proc = orb("start", base)
    assert (proc.returncode, proc.stdout) == (0, "")
    assert orb.record(base)["state"] == "running"


def test_delete_of_several_names_deletes_them_all(orb: Orb, base: str) -> None:
    if orb.version() < (2, 0, 0):
        pytest.skip("clone needs OrbStack 2.0+")
    first, second = orb.name("del-a"), orb.name("del-b")
    try:
        orb.ok("clone", base, first, timeout=600)
        orb.ok("clone", base, second, timeout=600)
        proc = orb.ok("delete", "-f", first, second)
        assert proc.stdout == ""
        left = orb.ours()
        assert first not in left
        assert second not in left
    finally:
        left = [n for n in (first, second) if n in orb.ours()]
        if left:
            orb("delete", "-f", *left)


def test_create_unknown_version_image_not_found_and_nothing_left(orb: Orb) -> None:
    name = orb.name("noimage")
    proc = orb("create", "ubuntu:99.04", name, timeout=600)
    assert proc.returncode == 1
    assert f"[-32098] create '{name}': make rootfs: image not found: {{ubuntu 99.04 " in proc.stderr
    assert name not in orb.ours()  # a failed create deletes its half-made machine
