"""The fixtures on orbsim, with and without xdist; every scenario ends with no machine left."""

from __future__ import annotations

from typing import Callable

import pytest

ORB_VM_TESTS = """
def test_one(orb_vm):
    assert orb_vm.run("echo one").stdout == "one\\n"
    print("MACHINE", orb_vm.name)

def test_two(orb_vm):
    assert orb_vm.run(["true"]).returncode == 0

def test_three(orb_vm):
    orb_vm.write_text("/tmp/marker", "x")
    assert orb_vm.read_text("/tmp/marker") == "x"

def test_four(orb_vm):
    assert orb_vm.state == "running"

def test_no_machine():
    pass
"""


def test_orb_vm_one_machine_per_worker(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    mode: list[str],
    created_machines: Callable[[str], list[tuple[str, str]]],
) -> None:
    pytester.makepyfile(test_vm=ORB_VM_TESTS)
    result = run_pytest("-v", *mode)
    result.assert_outcomes(passed=5)
    made = created_machines(result.stdout.str())
    workers = [worker for worker, _ in made]
    assert len(workers) == len(set(workers)), f"a worker made two session machines: {made}"
    assert 1 <= len(made) <= (1 if "no:xdist" in mode else int(mode[1]))
    # one run id for all workers
    run_ids = {name.split("-")[2] for _, name in made}
    assert len(run_ids) == 1
    (run_id,) = run_ids
    result.stdout.fnmatch_lines([f"orbstack: *run id {run_id}"])
    for worker, name in made:
        assert name.startswith(f"pytest-test-{run_id}-{worker}-")
    assert_no_leftovers()


def test_orb_vm_fresh_is_new_for_each_test_and_deleted_after(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    orbsim_machines: Callable[..., list[str]],
    mode: list[str],
    created_machines: Callable[[str], list[tuple[str, str]]],
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(3))
        def test_fresh(orb_vm_fresh, n):
            assert orb_vm_fresh.run("test -e /tmp/dirty", check=False).returncode == 1
            orb_vm_fresh.run("touch /tmp/dirty")

        def test_fails(orb_vm_fresh):
            assert False, "on purpose"
        """
    )
    result = run_pytest("-v", *mode)
    result.assert_outcomes(passed=3, failed=1)
    names = [name for _, name in created_machines(result.stdout.str())]
    assert len(names) == 4
    assert len(set(names)) == 4
    result.stdout.fnmatch_lines(["*4 created, 4 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()


def test_orb_machines_create_and_create_many(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(
        """
        def test_factory(orb_machines):
            first = orb_machines.create()
            more = orb_machines.create_many(3)
            machines = [first, *more]
            assert len({m.name for m in machines}) == 4
            assert len({m.ip4 for m in machines}) == 4
            for m in machines:
                assert m.run(["hostname"]).stdout.strip() == m.name
            assert orb_machines.machines == machines or set(orb_machines.machines) == set(machines)

        def test_create_many_rejects_zero(orb_machines):
            import pytest
            with pytest.raises(ValueError, match="n >= 1"):
                orb_machines.create_many(0)
        """
    )
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*4 created, 4 deleted*"])
    assert_no_leftovers()


def test_orb_client(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(
        """
        def test_client(orb_client, orb_vm):
            assert orb_client.status() == "Running"
            names = [m.name for m in orb_client.list()]
            assert orb_vm.name in names
            assert orb_client.info(orb_vm.name).ip4 == orb_vm.ip4
        """
    )
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1)
    assert_no_leftovers()


def test_machine_api(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_orbstack import CommandFailedError, Machine, RunResult

        def test_api(orb_vm_fresh, tmp_path):
            m = orb_vm_fresh
            assert isinstance(m, Machine)
            assert m.hostname == m.name + ".orb.local"
            assert m.id and m.image.startswith("ubuntu") and m.arch
            assert m.ip4.startswith("198.19.249.")
            r = m.run("echo out; echo err >&2; exit 3", check=False)
            assert isinstance(r, RunResult)
            assert (r.args, r.returncode, r.stdout, r.stderr) == (
                ("sh", "-c", "echo out; echo err >&2; exit 3"), 3, "out\\n", "err\\n")
            assert r.duration > 0
            with pytest.raises(CommandFailedError) as excinfo:
                m.run(["sh", "-c", "echo OUT; echo ERR >&2; exit 5"])
            text = str(excinfo.value)
            assert "exit code 5" in text and "OUT" in text and "ERR" in text and "echo OUT" in text
            assert m.run("pwd", workdir="/tmp").stdout.strip() == "/tmp"
            assert m.run("id -un", user="root").stdout.strip() == "root"
            assert m.run("cat", input="piped").stdout == "piped"
            assert m.run('echo "$A-$B"', env={"A": "x y", "B": "$(z)"}).stdout == "x y-$(z)\\n"
            (tmp_path / "in.txt").write_text("pushed")
            m.push(tmp_path / "in.txt", "in.txt")  # relative: the default user's home
            m.pull("in.txt", tmp_path / "out.txt")
            assert (tmp_path / "out.txt").read_text() == "pushed"
            m.restart()
            assert m.state == "running"
            m.stop()
            assert m.state == "stopped" and m.ip4 is None
            m.start()
            assert m.run("true").ok
            info = m.wait_ready(5)
            assert info.state == "running"
            copy = m.clone()
            assert copy.name != m.name and copy.run("cat ~/in.txt").stdout == "pushed"

        def test_delete_is_idempotent(orb_vm_fresh):
            orb_vm_fresh.delete()
            orb_vm_fresh.delete()
        """
    )
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=2)
    assert_no_leftovers()


def test_user_data_from_option_and_marker(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makefile(".yaml", cloud="#cloud-config\npackages: []\n")
    sub = pytester.mkdir("sub")
    (sub / "init.yaml").write_text("#cloud-config\n")
    (sub / "test_cloud.py").write_text(
        "import pytest\n\n"
        "def test_default(orb_vm):\n"
        "    assert orb_vm.info().variant == 'cloud'\n"
        "    assert orb_vm.spec.user_data.endswith('cloud.yaml')\n\n"
        "@pytest.mark.orb(user_data='init.yaml')\n"
        "def test_marker_relative_to_test_file(orb_vm_fresh):\n"
        "    assert orb_vm_fresh.info().variant == 'cloud'\n"
        "    assert orb_vm_fresh.spec.user_data.endswith('sub/init.yaml')\n\n"
        "def test_factory(orb_machines):\n"
        "    assert orb_machines.create(user_data='init.yaml').spec.user_data.endswith('sub/init.yaml')\n"
    )
    result = run_pytest("-p", "no:xdist", "--orb-user-data", "cloud.yaml")
    result.assert_outcomes(passed=3)
    assert_no_leftovers()


def test_image_arch_and_user_options_reach_the_machine(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makeini("[pytest]\norb_user = fromini\norb_image = debian:12\n")
    pytester.makepyfile(
        """
        import pytest

        def test_options(orb_vm):
            assert orb_vm.arch == "arm64"
            assert orb_vm.image == "debian:bookworm"
            assert orb_vm.user == "fromini"
            assert orb_vm.run("id -un").stdout.strip() == "fromini"

        @pytest.mark.orb(image="ubuntu:22.04", arch="amd64")
        def test_marker_beats_options(orb_vm_fresh):
            assert (orb_vm_fresh.image, orb_vm_fresh.arch) == ("ubuntu:jammy", "amd64")
            assert orb_vm_fresh.user == "fromini"
        """
    )
    result = run_pytest("-p", "no:xdist", "--orb-arch", "arm64")
    result.assert_outcomes(passed=2)
    assert_no_leftovers()
