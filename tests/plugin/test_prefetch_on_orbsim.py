"""Prefetch on orbsim: the next test's fresh machine is made while a test runs; unused ones are deleted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

SUITE = """
import pytest

def test_shared(orb_vm):
    orb_vm.run("true")
    print("SHARED", orb_vm.name)

@pytest.mark.parametrize("i", range(3))
def test_fresh(orb_vm_fresh, i):
    assert orb_vm_fresh.run(["hostname"]).stdout.strip() == orb_vm_fresh.name
    assert orb_vm_fresh.run("test -e /tmp/dirty", check=False).returncode == 1
    orb_vm_fresh.run("touch /tmp/dirty")
    print("FRESH", orb_vm_fresh.name)
"""

#: A fresh-machine test, then one skipped by a fixture before its orb_vm_fresh: its machine,
#: made ahead during the first test, is left for a later request of the spec.
SKIPPED_IN_SETUP = """
import pytest

@pytest.fixture
def not_today():
    pytest.skip("skipped in its setup, after its machine was made ahead")

def test_first(orb_vm_fresh):
    orb_vm_fresh.run("true")

def test_skipped(not_today, orb_vm_fresh):
    pass
"""

THEN_TAKEN_MARKED_MADE_AND_LEFT = """
def test_takes_the_skipped_tests_machine(orb_vm_fresh):
    orb_vm_fresh.run("true")

@pytest.mark.skipif(True, reason="marked: nothing is made ahead for it")
def test_marked_skip(orb_vm_fresh):
    pass

def test_again(orb_vm_fresh):
    orb_vm_fresh.run("true")

def test_last_skipped(not_today, orb_vm_fresh):
    pass
"""


def _calls(home: str) -> list[list[str]]:
    path = Path(home) / "argv.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)[1:] for line in lines if line.strip()]


def _names(lines: list[str], text: str) -> list[str]:
    return [line.rsplit(" ", 1)[1] for line in lines if text in line]


@pytest.mark.parametrize("clone", ["auto", "never"])
def test_each_fresh_machine_was_made_during_the_test_before(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    orbsim_env: dict[str, str],
    clone: str,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    before = len(_calls(orbsim_env["ORBSIM_HOME"]))
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly", "--orb-clone", clone, "-v", "-s")
    result.assert_outcomes(passed=4)
    lines = result.stdout.lines
    fresh = [line.split("FRESH ", 1)[1] for line in lines if line.startswith("FRESH ")]
    (shared,) = [line.split("SHARED ", 1)[1] for line in lines if line.startswith("SHARED ")]
    assert len(set(fresh)) == 3
    took = _names(lines, "took prefetched machine ")
    if clone == "auto":  # once the base exists, the first test's machine is cloned beside the next two
        assert took == [shared, *fresh]
    else:  # a created machine: the first one is made by its test, the others while a test runs
        assert took == fresh
    calls = _calls(orbsim_env["ORBSIM_HOME"])[before:]
    made = [argv[-1] for argv in calls if argv[:1] == ["clone" if clone == "auto" else "create"]]
    assert sorted(made) == sorted([shared, *fresh])  # nothing made for nothing; several at once
    assert "unused prefetched" not in result.stdout.str()
    result.stdout.fnmatch_lines(["machines: 4 created, 4 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()


#: Records, for each call of prefetch's look ahead, the test it was made for.
COUNTING_CONFTEST = """
import json
from pathlib import Path

import pytest_orbstack.lookahead as lookahead

_asked = []
_upcoming = lookahead.upcoming


def _counting(item, nextitem, limit):
    _asked.append(item.nodeid)
    return _upcoming(item, nextitem, limit)


lookahead.upcoming = _counting


def pytest_sessionfinish(session):
    Path(__file__).with_name("upcoming.json").write_text(json.dumps(_asked))
"""


def test_tests_before_the_first_machine_pay_nothing_for_the_look_ahead(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    """Prefetch looks at the coming tests only once the process makes machines: a test before
    (or in a run without any) does not copy the rest of the run."""
    pytester.makeconftest(COUNTING_CONFTEST)
    pytester.makepyfile(
        test_a_plain="\n".join(f"def test_plain_{i}():\n    pass\n" for i in range(5)), test_suite=SUITE
    )
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly", "-v")
    result.assert_outcomes(passed=9)
    asked = json.loads((pytester.path / "upcoming.json").read_text())
    assert not [nodeid for nodeid in asked if "test_a_plain" in nodeid], asked
    assert [nodeid for nodeid in asked if "test_fresh" in nodeid], asked  # it still looks ahead then
    assert "took prefetched machine" in result.stdout.str()
    assert_no_leftovers()


def test_off_with_orb_no_prefetch(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run_pytest("-p", "no:xdist", "--orb-no-prefetch", "-v")
    result.assert_outcomes(passed=4)
    assert "took prefetched machine" not in result.stdout.str()
    result.stdout.fnmatch_lines(["machines: 4 created, 4 deleted*"])
    assert_no_leftovers()


def test_a_machine_nobody_takes_is_deleted_at_the_end(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(test_suite=SKIPPED_IN_SETUP + THEN_TAKEN_MARKED_MADE_AND_LEFT)
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly", "-v")
    result.assert_outcomes(passed=3, skipped=3)
    lines = result.stdout.lines
    # once the base exists, test_first's machine is cloned beside the next fresh test's; then two
    # coming fresh tests have a machine ahead (--orb-prefetch 2): test_takes_... takes the one
    # made for test_skipped, test_again its own; none is made for test_marked_skip; the one made
    # for test_last_skipped is deleted at the end
    assert len(_names(lines, "took prefetched machine ")) == 3
    (unused,) = _names(lines, "deleting unused prefetched machine ")
    assert f"orbstack: deleted {unused}" in lines
    result.stdout.fnmatch_lines(["machines: 4 created, 4 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()


def test_with_xdist(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    """Each worker knows the tests it runs next: with a file per worker, every machine is made ahead
    (the shared one and the first fresh ones beside each other once the base exists)."""
    pytester.makepyfile(test_one=SUITE, test_two=SUITE)
    # in file order (pytest-randomly would put test_shared between fresh tests: fewer made ahead)
    result = run_pytest("-n", "2", "--dist", "loadfile", "-v", "-s", "-p", "no:randomly")
    result.assert_outcomes(passed=8)
    lines = result.stdout.lines
    took = _names(lines, "took prefetched machine ")
    assert len(took) == 8
    assert {name.split("-")[-2] for name in took} == {"gw0", "gw1"}
    result.stdout.fnmatch_lines(["machines: 8 created, 8 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()


def test_unused_machine_of_a_worker_is_reported(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    """Lines from a worker's session end (no test report carries them) reach the terminal."""
    pytester.makepyfile(test_suite=SKIPPED_IN_SETUP)
    result = run_pytest("-n", "1", "-v", "-p", "no:randomly")  # the skipped test comes second
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "orbstack: [[]gw0[]] deleting unused prefetched machine pytest-test-*",
            "orbstack: [[]gw0[]] deleted pytest-test-*",
        ]
    )
    result.stdout.fnmatch_lines(["machines: 2 created, 2 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()


def test_the_first_machine_of_a_process_is_not_prefetched(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    """Before any machine fixture ran, the run's lock directory is not known: nothing is made ahead."""
    pytester.makepyfile(
        test_suite="""
        def test_plain():
            pass

        def test_fresh(orb_vm_fresh):
            orb_vm_fresh.run("true")
        """
    )
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly", "-v")
    result.assert_outcomes(passed=2)
    assert "took prefetched machine" not in result.stdout.str()
    assert list(pytester.path.glob("orbstack-base-*")) == []  # no lock file in the project
    result.stdout.fnmatch_lines(["machines: 1 created, 1 deleted*"])
    assert_no_leftovers()


@pytest.mark.parametrize(
    "xdist", [["-p", "no:xdist"], ["-n", "1", "--dist", "loadfile"]], ids=["single", "xdist"]
)
def test_machines_are_made_for_tests_further_ahead_within_the_bound(
    xdist: list[str],
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tests without a machine in between do not hide the fresh tests after them; --orb-prefetch bounds it.

    An xdist worker knows the tests it has been sent (its queue), not only the next one: with
    ``--dist loadfile`` that is the whole file.
    """
    pytester.makepyfile(
        test_suite="""
        import pytest

        def test_shared(orb_vm):
            orb_vm.run("true")

        def test_plain(orb_vm):
            # the machines of the next three fresh tests are being made already (waits up to 60 s)
            import json, os, subprocess, time
            end = time.monotonic() + 60
            while True:
                out = subprocess.run([os.environ["ORBCTL"], "list", "-f", "json"], capture_output=True,
                                     text=True, timeout=60, check=True).stdout
                ahead = [m["name"] for m in json.loads(out) if m["name"] != orb_vm.name]
                if len(ahead) >= 3 or time.monotonic() > end:
                    break
                time.sleep(0.05)
            with open(os.environ["AHEAD_FILE"], "w") as fh:  # xdist workers' prints do not show
                fh.write(str(len(ahead)))

        def test_no_machine():
            pass

        @pytest.mark.parametrize("i", range(4))
        def test_fresh(orb_vm_fresh, i):
            orb_vm_fresh.run("true")
        """
    )
    monkeypatch.setenv("AHEAD_FILE", str(pytester.path / "ahead.txt"))
    result = run_pytest(
        *xdist, "-p", "no:randomly", "-v", "-s", "--orb-prefetch", "3", "--orb-clone", "never"
    )
    result.assert_outcomes(passed=7)
    assert (pytester.path / "ahead.txt").read_text() == "3"
    assert len(_names(result.stdout.lines, "took prefetched machine ")) == 4
    result.stdout.fnmatch_lines(["machines: 5 created, 5 deleted, 0 kept, 0 purged*"])
    assert "unused prefetched" not in result.stdout.str()
    assert_no_leftovers()


@pytest.mark.parametrize("clone", ["auto", "never"])
def test_the_shared_machine_is_made_ahead_for_the_tests_that_use_it(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    clone: str,
) -> None:
    """Fresh tests first, then one using ``orb_vm``: its machine is made ahead too (beyond the bound).

    With the clone fast path that starts once the base exists, beside the first test's own machine.
    """
    pytester.makepyfile(
        test_suite="""
        import pytest

        @pytest.mark.parametrize("i", range(2))
        def test_fresh(orb_vm_fresh, i):
            print("FRESH", orb_vm_fresh.name)

        def test_shared(orb_vm):
            print("SHARED", orb_vm.name)
        """
    )
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly", "-v", "-s", "--orb-clone", clone)
    result.assert_outcomes(passed=3)
    lines = result.stdout.lines
    first, second = [line.split("FRESH ", 1)[1] for line in lines if line.startswith("FRESH ")]
    (shared,) = [line.split("SHARED ", 1)[1] for line in lines if line.startswith("SHARED ")]
    took = _names(lines, "took prefetched machine ")
    assert took == ([first] if clone == "auto" else []) + [second, shared]
    assert "unused prefetched" not in result.stdout.str()
    result.stdout.fnmatch_lines(["machines: 3 created, 3 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()


def test_a_worker_that_will_run_an_orb_vm_test_makes_its_machine_once_the_base_exists(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One worker runs every test, so its shared machine is needed: it is cloned with the first ones
    (the first test's own and the next one's), although xdist has sent the worker only the first
    two tests and the ``orb_vm`` test comes last."""
    pytester.makepyfile(
        test_suite="""
        import pytest

        def test_first(orb_vm_fresh):
            # made side by side once the base existed: this one, the next one's, the shared one
            import json, os, subprocess, time
            end = time.monotonic() + 30
            while True:
                out = subprocess.run([os.environ["ORBCTL"], "list", "-f", "json"], capture_output=True,
                                     text=True, timeout=60, check=True).stdout
                running = [m["name"] for m in json.loads(out) if m["state"] == "running"]
                if len(running) >= 3 or time.monotonic() > end:
                    break
                time.sleep(0.05)
            with open(os.environ["RUNNING_FILE"], "w") as fh:
                fh.write(str(len(running)))

        @pytest.mark.parametrize("i", range(7))
        def test_fresh(orb_vm_fresh, i):
            pass

        def test_shared(orb_vm):
            pass
        """
    )
    monkeypatch.setenv("RUNNING_FILE", str(pytester.path / "running.txt"))
    result = run_pytest("-n", "1", "-p", "no:randomly", "-v")
    result.assert_outcomes(passed=9)
    assert (pytester.path / "running.txt").read_text() == "3"  # without it: 2 (the worker knows 2 tests)
    assert "unused prefetched" not in result.stdout.str()
    result.stdout.fnmatch_lines(["machines: 9 created, 9 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()


def test_with_tests_handed_out_by_file_no_shared_machine_is_made_for_a_worker_that_may_not_need_it(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(
        test_fresh="""
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_fresh(orb_vm_fresh, i):
            pass
        """,
        test_shared="""
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_shared(orb_vm, i):
            pass
        """,
    )
    result = run_pytest("-n", "2", "--dist", "loadfile", "-p", "no:randomly", "-v")
    result.assert_outcomes(passed=6)
    assert "unused prefetched" not in result.stdout.str()
    result.stdout.fnmatch_lines(["machines: 4 created, 4 deleted, 0 kept, 0 purged*"])  # 3 fresh, 1 shared
    assert_no_leftovers()


def test_a_second_spec_made_by_the_test_itself_asks_for_nothing_more_of_the_first(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    """When ``orb_machines.create(image=...)`` builds another spec's base in a test that already has
    its ``orb_vm_fresh`` machine, that machine is not asked for a second time."""
    pytester.makepyfile(
        test_suite="""
        def test_two_specs(orb_vm_fresh, orb_machines):
            orb_machines.create(image="debian:12").run("true")

        def test_next(orb_vm_fresh):
            orb_vm_fresh.run("true")
        """
    )
    result = run_pytest("-p", "no:xdist", "-p", "no:randomly", "-v")
    result.assert_outcomes(passed=2)
    assert "unused prefetched" not in result.stdout.str()
    result.stdout.fnmatch_lines(["machines: 3 created, 3 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()
