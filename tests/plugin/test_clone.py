"""The clone fast path on orbsim: one base per spec, clones for every machine, reuse across runs.

Every count comes from orbsim's ``argv.log`` (one JSON argv per orbctl call).
Every scenario ends with no ``pytest-test-`` machine left, and deletes the
``pytest-base-`` machines it made on purpose (``--orb-reuse``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

PROVISION_CONFTEST = """
import json, os

def pytest_orbstack_provision(machine, config):
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(json.dumps(["provision", machine.name]) + "\\n")
    machine.write_text("/etc/provisioned", "{marker}", user="root"){extra}
"""

SUITE = """
import pytest

@pytest.mark.parametrize("i", range(4))
def test_shared(orb_vm, i):
    assert orb_vm.read_text("/etc/provisioned") == "v1"
    print("MACHINE", orb_vm.name)

@pytest.mark.parametrize("i", range(3))
def test_fresh(orb_vm_fresh, i):
    assert orb_vm_fresh.read_text("/etc/provisioned") == "v1"
    assert orb_vm_fresh.run("test -e /tmp/dirty", check=False).returncode == 1
    orb_vm_fresh.run("touch /tmp/dirty")

def test_many(orb_machines):
    a, b = orb_machines.create_many(2)
    assert a.name != b.name
    for m in (a, b):
        assert m.read_text("/etc/provisioned") == "v1"
        assert m.state == "running"
"""


class ArgvLog:
    """The orbctl calls orbsim recorded since this object was made."""

    def __init__(self, home: str) -> None:
        self.path = Path(home) / "argv.log"
        self.start = len(self._all())

    def _all(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def calls(self, op: str) -> list[list[str]]:
        """argv (without the program) of every ``op`` call since the start."""
        return [argv[1:] for argv in self._all()[self.start :] if argv[1:2] == [op]]

    def created(self) -> list[str]:
        """Names given to ``create`` (the last argument)."""
        return [argv[-1] for argv in self.calls("create")]

    def cloned(self) -> list[tuple[str, str]]:
        """(source, new) of every ``clone``."""
        return [(argv[1], argv[2]) for argv in self.calls("clone")]

    def renamed(self) -> list[tuple[str, str]]:
        """(old, new) of every ``rename``."""
        return [(argv[1], argv[2]) for argv in self.calls("rename")]

    def deleted(self) -> list[str]:
        return [name for argv in self.calls("delete") for name in argv[1:] if not name.startswith("-")]


@pytest.fixture
def argv_log(orbsim_env: dict[str, str]) -> Callable[[], ArgvLog]:
    """``argv_log()``: start recording orbctl calls from now."""
    return lambda: ArgvLog(orbsim_env["ORBSIM_HOME"])


@pytest.fixture
def hook_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hooks.log"
    monkeypatch.setenv("HOOK_LOG", str(path))
    return path


@pytest.fixture
def delete_bases(
    orbsim_bin: str, orbsim_env: dict[str, str], orbsim_machines: Callable[..., list[str]]
) -> Iterator[None]:
    """Delete every ``pytest-base-`` machine a test made on purpose, at its end."""
    yield
    names = orbsim_machines("pytest-base-")
    if names:
        subprocess.run(
            [orbsim_bin, "delete", "-f", *names],
            env={**os.environ, **orbsim_env},
            timeout=120,
            check=True,
            capture_output=True,
        )


def _provisions(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)[1] for line in path.read_text().splitlines()]


def test_one_base_then_clones_and_the_base_is_deleted_at_the_end(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    orbsim_machines: Callable[..., list[str]],
    argv_log: Callable[[], ArgvLog],
    hook_log: Path,
    mode: list[str],
    created_machines: Callable[[str], list[tuple[str, str]]],
) -> None:
    pytester.makeconftest(PROVISION_CONFTEST.format(marker="v1", extra=""))
    pytester.makepyfile(test_suite=SUITE)
    log = argv_log()
    result = run_pytest("-v", *mode)
    result.assert_outcomes(passed=8)
    (base,) = log.created()  # ONE create for the whole run, whatever the number of workers
    made = [name for _, name in created_machines(result.stdout.str())]
    clones = log.cloned()
    assert {source for source, _ in clones} == {base}
    assert sorted(new for _, new in clones) == sorted(made)
    workers = 1 if "no:xdist" in mode else int(mode[1])
    assert 3 + 2 + 1 <= len(clones) <= 3 + 2 + workers  # fresh + create_many + one orb_vm per worker used
    assert _provisions(hook_log) == [base]  # the provision hook ran once, on the base
    assert base.startswith("pytest-test-")
    assert base in log.deleted()
    result.stdout.fnmatch_lines([f"*built base {base} *"])
    result.stdout.fnmatch_lines([f"*{len(made)} created, {len(made)} deleted, 0 kept, 0 purged*"])
    assert orbsim_machines("pytest-base-") == []
    assert_no_leftovers()


def test_each_spec_has_its_own_base(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    argv_log: Callable[[], ArgvLog],
) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_default(orb_vm_fresh):
            assert orb_vm_fresh.image == "ubuntu:jammy"

        @pytest.mark.orb(image="debian:12")
        def test_debian(orb_vm_fresh):
            assert orb_vm_fresh.image == "debian:bookworm"

        @pytest.mark.orb(image="debian:12")
        def test_debian_again(orb_vm_fresh):
            assert orb_vm_fresh.image == "debian:bookworm"
        """
    )
    log = argv_log()
    result = run_pytest("-n", "2")
    result.assert_outcomes(passed=3)
    creates = log.calls("create")
    assert sorted(argv[-2] for argv in creates) == ["debian:12", "ubuntu:22.04"]
    # two debian machines: a base, cloned twice; the one ubuntu machine is created directly
    (debian_base,) = [argv[-1] for argv in creates if argv[-2] == "debian:12"]
    assert [source for source, _ in log.cloned()] == [debian_base, debian_base]
    assert_no_leftovers()


ONE_OR_TWO = """
def test_first(orb_vm_fresh):
    assert orb_vm_fresh.read_text("/etc/provisioned") == "v1"
    assert orb_vm_fresh.run("id -un").stdout.strip() == orb_vm_fresh.user

def test_second(orb_vm_fresh):
    assert orb_vm_fresh.read_text("/etc/provisioned") == "v1"
"""


@pytest.mark.parametrize("xdist", [["-p", "no:xdist"], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_a_run_that_needs_one_machine_creates_it_and_builds_no_base(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    argv_log: Callable[[], ArgvLog],
    hook_log: Path,
    xdist: list[str],
) -> None:
    pytester.makeconftest(PROVISION_CONFTEST.format(marker="v1", extra=""))
    pytester.makepyfile(test_pair=ONE_OR_TWO)

    # one test selected: its machine is created and provisioned; no base, no stop, no clone
    log = argv_log()
    result = run_pytest("-v", *xdist, "--orb-clone", "auto", "-k", "test_first")
    result.assert_outcomes(passed=1)
    (made,) = log.created()
    assert log.cloned() == []
    assert log.calls("stop") == []
    assert _provisions(hook_log) == [made]
    result.stdout.fnmatch_lines([f"*creating {made} (ubuntu:22.04) directly: the run needs one machine*"])
    assert "built base" not in result.stdout.str()
    assert made in log.deleted()
    result.stdout.fnmatch_lines(["*1 created, 1 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()

    # --orb-clone always asks for a base even then
    log = argv_log()
    run_pytest(*xdist, "--orb-clone", "always", "-k", "test_first").assert_outcomes(passed=1)
    (base,) = log.created()
    assert [source for source, _ in log.cloned()] == [base]
    assert_no_leftovers()

    # both tests: two machines of the spec, so a base as before
    log = argv_log()
    run_pytest(*xdist, "--orb-clone", "auto").assert_outcomes(passed=2)
    (base,) = log.created()
    assert [source for source, _ in log.cloned()] == [base, base]
    assert _provisions(hook_log)[-1] == base
    assert base in log.deleted()
    assert_no_leftovers()

    if "no:xdist" not in xdist:  # --dist each: every worker runs the one test, so two machines
        log = argv_log()
        run_pytest(*xdist, "--dist", "each", "-k", "test_first").assert_outcomes(passed=2)
        (base,) = log.created()
        assert [source for source, _ in log.cloned()] == [base, base]
        assert_no_leftovers()


def test_clone_never_creates_every_machine(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    argv_log: Callable[[], ArgvLog],
    hook_log: Path,
) -> None:
    pytester.makeconftest(PROVISION_CONFTEST.format(marker="v1", extra=""))
    pytester.makepyfile(test_suite=SUITE)
    log = argv_log()
    result = run_pytest("-p", "no:xdist", "--orb-clone", "never")
    result.assert_outcomes(passed=8)
    assert log.cloned() == []
    assert len(log.created()) == 1 + 3 + 2
    assert sorted(_provisions(hook_log)) == sorted(log.created())
    assert_no_leftovers()


def test_orbstack_1x_falls_back_to_create_with_one_header_line(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    argv_log: Callable[[], ArgvLog],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORBSIM_VERSION", "1.9.2")
    pytester.makepyfile("def test_a(orb_vm_fresh):\n    pass\n\ndef test_b(orb_vm_fresh):\n    pass\n")
    log = argv_log()
    result = run_pytest("-n", "2")
    result.assert_outcomes(passed=2)
    lines = [line for line in result.outlines if "has no 'orbctl clone'" in line]
    assert len(lines) == 1, lines
    # said once for the run, by the first worker that makes a machine (no orbctl call before)
    assert re.match(r"orbstack: (\[gw\d\] )?OrbStack 1\.9\.2 has no 'orbctl clone' \(2\.0\.0\+\)", lines[0])
    assert log.cloned() == []
    assert len(log.created()) == 2
    assert_no_leftovers()


def test_clone_always_on_orbstack_1x_is_a_usage_error(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    argv_log: Callable[[], ArgvLog],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORBSIM_VERSION", "1.9.2")
    pytester.makepyfile("def test_a(orb_vm):\n    pass\n")
    log = argv_log()
    result = run_pytest("--orb-clone", "always")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*--orb-clone always: OrbStack 1.9.2 has no 'orbctl clone'*"])
    assert log.created() == []


def test_bad_clone_and_reuse_values_are_usage_errors(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult]
) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run_pytest("--orb-clone", "sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --orb-clone: expected one of auto, always, never, got 'sometimes'"])
    result = run_pytest("--orb-reuse=later")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --orb-reuse: expected *refresh*, got 'later'"])
    result = run_pytest("--orb-reuse", "--orb-prefix", "pytest-")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --orb-reuse: the machine name prefix 'pytest-' overlaps*"])


def test_reuse_keeps_the_base_refresh_rebuilds_and_a_changed_hook_makes_a_new_one(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    orbsim_machines: Callable[..., list[str]],
    argv_log: Callable[[], ArgvLog],
    hook_log: Path,
    delete_bases: None,
) -> None:
    pytester.makeconftest(PROVISION_CONFTEST.format(marker="v1", extra=""))
    pytester.makepyfile(test_suite=SUITE)

    # run 1: builds pytest-base-<key> and keeps it
    log = argv_log()
    run_pytest("-n", "2", "--orb-reuse").assert_outcomes(passed=8)
    # built under a name of the run (purged if the run dies meanwhile), renamed when finished
    (building,) = log.created()
    assert building.startswith("pytest-test-")
    ((renamed_from, base),) = log.renamed()
    assert renamed_from == building
    assert base.startswith("pytest-base-")
    assert orbsim_machines("pytest-base-") == [base]
    assert base not in log.deleted()
    assert_no_leftovers()

    # run 2: reuses it, no create at all
    log = argv_log()
    result = run_pytest("-n", "2", "--orb-reuse", "-v")
    result.assert_outcomes(passed=8)
    assert log.created() == []
    assert {source for source, _ in log.cloned()} == {base}
    result.stdout.fnmatch_lines([f"*reusing base {base} *"])
    assert _provisions(hook_log) == [building]  # still only the first run's provisioning
    assert_no_leftovers()

    # run 3: refresh deletes and rebuilds it, once for all workers
    log = argv_log()
    run_pytest("-n", "2", "--orb-reuse=refresh").assert_outcomes(passed=8)
    assert [new for _, new in log.renamed()] == [base]
    assert len(log.created()) == 1
    assert log.deleted().count(base) == 1
    assert _provisions(hook_log) == [building, log.created()[0]]
    assert orbsim_machines("pytest-base-") == [base]
    assert_no_leftovers()

    # run 4: a changed provision hook means another base (its source is part of the key)
    pytester.makeconftest(PROVISION_CONFTEST.format(marker="v1", extra="\n    machine.run('true')"))
    log = argv_log()
    run_pytest("-p", "no:xdist", "--orb-reuse").assert_outcomes(passed=8)
    ((_, new_base),) = log.renamed()
    assert new_base.startswith("pytest-base-")
    assert new_base != base
    assert sorted(orbsim_machines("pytest-base-")) == sorted([base, new_base])
    assert_no_leftovers()


def test_failing_provision_hook_fails_the_tests_and_leaves_no_base(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    argv_log: Callable[[], ArgvLog],
    mode: list[str],
) -> None:
    pytester.makeconftest(
        "def pytest_orbstack_provision(machine, config):\n    raise RuntimeError('no network')\n"
    )
    pytester.makepyfile(
        "import pytest\n\n"
        "@pytest.mark.parametrize('i', range(4))\n"
        "def test_it(orb_vm_fresh, i):\n    pass\n\n"
        "def test_plain():\n    pass\n"
    )
    log = argv_log()
    result = run_pytest(*mode)
    result.assert_outcomes(passed=1, errors=4)
    result.stdout.fnmatch_lines(["*could not be built*RuntimeError: no network*"])
    (base,) = log.created()  # the other workers do not try again: they read the builder's failure
    assert base in log.deleted()
    assert log.cloned() == []
    assert_no_leftovers()


def test_refresh_leaves_a_base_alone_while_another_run_clones_from_it(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    orbsim_machines: Callable[..., list[str]],
    delete_bases: None,
) -> None:
    pytester.makepyfile(
        test_live="""
        import os, time

        def test_holds_the_base(orb_vm):
            open("live-ready", "w").close()
            end = time.monotonic() + 120
            while not os.path.exists("go") and time.monotonic() < end:
                time.sleep(0.05)
            assert os.path.exists("go")
            orb_vm.run("true")
        """,
        test_refresh="""
        def test_wants_a_fresh_base(orb_vm):
            pass
        """,
    )
    argv = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "--orb-reuse"]
    argv += [f"--basetemp={pytester.path / 'basetemp-live'}", "test_live.py"]
    live = subprocess.Popen(
        argv, cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        ready = pytester.path / "live-ready"
        end = time.monotonic() + 120
        while not ready.exists() and live.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        assert ready.exists(), live.communicate(timeout=60)[0]
        (base,) = orbsim_machines("pytest-base-")
        result = run_pytest("-p", "no:xdist", "--orb-reuse=refresh", "test_refresh.py")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(
            [f"*the base machine {base} *another live run clones machines from it*--orb-reuse=refresh once*"]
        )
        assert orbsim_machines("pytest-base-") == [base]
    finally:
        (pytester.path / "go").touch()
        out = live.communicate(timeout=180)[0]
    assert live.returncode == 0, out
    assert_no_leftovers()
