"""Boot, halt, destroy, clone and rename of namespace machines leave exactly what they should."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from engine_support import Machine, assert_bridge_gone_if_unused, assert_gone, machine_processes

from pytest_orbstack.sim import network, procs


def test_halt_leaves_no_process_mount_veth_or_address(make_machine, ns_engine) -> None:
    m = make_machine("life-halt")
    assert m.sh("sleep 500 >/dev/null 2>&1 & sleep 600 &").returncode == 0
    record = m.runtime()
    ns = record["pidns"]
    assert isinstance(ns, str)
    seen = machine_processes(record)
    assert len(seen) >= 4  # init, its sleep, and the two sleepers
    ns_engine.halt(m.mdir)
    assert_gone(m.mdir, record, seen)
    assert not ns_engine.running(m.mdir)
    assert not (m.mdir / "runtime.json").exists()
    ns_engine.halt(m.mdir)  # idempotent
    assert (m.mdir / "upper/home/alice/.profile").exists()  # halt keeps the files


def test_destroy_removes_everything(make_machine, ns_engine) -> None:
    m = make_machine("life-destroy")
    record = m.runtime()
    seen = machine_processes(record)
    ns_engine.destroy(m.mdir)
    assert not m.mdir.exists()
    assert_gone(m.mdir, record, seen)
    ns_engine.destroy(m.mdir)  # idempotent
    network.cleanup_if_unused()
    assert_bridge_gone_if_unused()


def test_boot_is_idempotent_and_files_survive_a_restart(make_machine, ns_engine) -> None:
    m = make_machine("life-boot")
    assert ns_engine.boot(m.mdir, hostname="life-boot") == m.ip
    assert m.sh("echo kept > ~/kept.txt").returncode == 0
    ns_engine.halt(m.mdir)
    ns_engine.boot(m.mdir, hostname="life-boot")
    assert m.run("cat", "kept.txt").stdout == "kept\n"


def test_a_recycled_pid_is_not_taken_for_the_init(make_machine, ns_engine) -> None:
    m = make_machine("life-pid", boot=False)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        start = procs.start_time(bystander.pid)
        assert start is not None
        (m.mdir / "runtime.json").write_text(
            json.dumps(
                {"pid": bystander.pid, "start": start + 1, "outer": bystander.pid, "outer_start": start + 1}
            )
        )
        assert not ns_engine.running(m.mdir)
        ns_engine.halt(m.mdir)
        assert bystander.poll() is None  # not killed
    finally:
        bystander.kill()
        bystander.wait()


def test_machine_killed_from_outside_is_not_running(make_machine, ns_engine) -> None:
    m = make_machine("life-killed")
    record = m.runtime()
    seen = machine_processes(record)
    pid = record["pid"]
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGKILL)
    ns_engine.halt(m.mdir)  # cleans up address and veth of the dead machine
    assert not ns_engine.running(m.mdir)
    assert_gone(m.mdir, record, seen)


def test_clone_copies_files_and_takes_its_own_hostname(make_machine, ns_engine, tmp_path) -> None:
    src = make_machine("clone-src")
    assert src.sh("echo original > ~/data.txt").returncode == 0
    ns_engine.halt(src.mdir)
    dst_dir = tmp_path / "machines" / "clone-dst"
    ns_engine.clone(src.mdir, dst_dir, hostname="clone-dst")
    try:
        assert not ns_engine.running(dst_dir)
        ip = ns_engine.boot(dst_dir, hostname="clone-dst")
        assert ip
        dst = Machine(ns_engine, dst_dir, "clone-dst", "alice")
        res = dst.sh("hostname; cat /etc/hostname; cat ~/data.txt; grep clone /etc/hosts")
        assert res.stdout.split() == ["clone-dst", "clone-dst", "original", "127.0.1.1", "clone-dst"]
        assert dst.sh("echo changed > ~/data.txt").returncode == 0
        ns_engine.boot(src.mdir, hostname="clone-src")
        assert src.run("cat", "data.txt").stdout == "original\n"
    finally:
        ns_engine.destroy(dst_dir)


def test_set_hostname_stopped_and_running(make_machine, ns_engine) -> None:
    m = make_machine("name-old")
    ns_engine.set_hostname(m.mdir, "name-new")
    assert m.sh("hostname; cat /etc/hostname").stdout == "name-new\nname-new\n"
    ns_engine.halt(m.mdir)
    ns_engine.set_hostname(m.mdir, "name-third")
    ns_engine.boot(m.mdir, hostname="name-third")
    assert m.sh("hostname; cat /etc/hostname").stdout == "name-third\nname-third\n"


def test_hostname_write_does_not_follow_a_symlink_in_the_machine(make_machine, ns_engine, tmp_path) -> None:
    m = make_machine("name-link")
    victim = tmp_path / "victim"
    victim.write_text("host file\n")
    assert m.sh(f"sudo -n ln -sf {victim} /etc/hostname").returncode == 0
    ns_engine.halt(m.mdir)
    ns_engine.set_hostname(m.mdir, "name-safe")
    assert victim.read_text() == "host file\n"
    assert (m.mdir / "upper/etc/hostname").read_text() == "name-safe\n"
