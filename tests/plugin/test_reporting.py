"""Header, progress lines, the summary section and the failure section, with and without xdist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree

import pytest

SECRET = "hunter2-SECRET-VALUE"


def test_progress_and_summary(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    mode: list[str],
    created_machines: Callable[[str], list[tuple[str, str]]],
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_fresh(orb_vm_fresh, n):
            orb_vm_fresh.run("true")
        """
    )
    result = run_pytest("-v", *mode)
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert len(created_machines(out)) == 4
    if "no:xdist" not in mode:
        assert all(worker.startswith("gw") for worker, _ in created_machines(out))
    assert len(re.findall(r"orbstack: (?:\[gw\d+\] )?deleted pytest-test-", out)) == 4
    result.stdout.fnmatch_lines(
        [
            "*= orbstack =*",
            "machines: 4 created, 4 deleted, 0 kept, 0 purged; mean create *s, mean ready *s",
        ]
    )
    assert_no_leftovers()


def test_failure_section_shows_machine_and_commands_but_no_env_values(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    mode: list[str],
) -> None:
    monkeypatch.setenv("SECRET_FOR_TEST", SECRET)
    pytester.makepyfile(
        """
        import os

        def test_fails(orb_vm):
            orb_vm.run("echo first")
            orb_vm.run("exit 4", check=False)
            token = os.environ.pop("SECRET_FOR_TEST")
            assert orb_vm.run("echo $TOKEN", env={"TOKEN": token}).stdout.strip() == token
            orb_vm.run("echo $TOKEN >/dev/null", env={"TOKEN": token})
            assert False, "on purpose"

        def test_passes(orb_vm):
            orb_vm.run("true")
        """
    )
    result = run_pytest(*mode)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- orbstack machine pytest-test-* -*",
            "name:  pytest-test-*",
            "id:    *",
            "image: ubuntu:jammy*",
            "state: running",
            "ip4:   198.19.249.*",
            "*",
            "last commands (*):",  # 5 when test_passes ran first (random order)
            "  $ sh -c 'echo first'  -> exit 0 in *s",
            "  $ sh -c 'exit 4'  -> exit 4 in *s",
            "  $ sh -c 'echo $TOKEN'  -> exit 0 in *s",
            "  $ sh -c 'echo $TOKEN >/dev/null'  -> exit 0 in *s",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "ip6:   *",
            "orbctl logs (last lines):",
            "  *",
            "last commands (*):",  # 5 when test_passes ran first (random order)
        ]
    )
    assert SECRET not in result.stdout.str()
    assert SECRET not in result.stderr.str()
    assert_no_leftovers()


def test_no_summary_when_no_machine_was_used(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult]
) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*= orbstack =*")


TWO_FRESH = "def test_a(orb_vm_fresh):\n    pass\n\ndef test_b(orb_vm_fresh):\n    pass\n"
PER_MACHINE_LINE = re.compile(
    r"orbstack: (?:\[gw\d+\] )?(created|deleted|cloned|built base|took prefetched) "
)


def _orbstack_lines(text: str) -> list[str]:
    """Lines that carry ``orbstack:`` anywhere; each must start with it (never glued to progress)."""
    found = [line for line in text.splitlines() if "orbstack: " in line]
    glued = [line for line in found if not line.startswith("orbstack: ")]
    assert not glued, f"orbstack lines glued to other output: {glued}"
    return found


@pytest.mark.parametrize("xdist", [["-p", "no:xdist"], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_default_verbosity_is_quiet_but_says_what_it_waits_for(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    xdist: list[str],
) -> None:
    pytester.makepyfile(TWO_FRESH)
    result = run_pytest(*xdist)
    result.assert_outcomes(passed=2)
    out, err = result.stdout.str(), result.stderr.str()
    lines = _orbstack_lines(out) + _orbstack_lines(err)
    assert not [line for line in lines if PER_MACHINE_LINE.match(line)], lines
    # the base build is the long wait of the run: said before it, even at default verbosity
    waits = [line for line in lines if "building base machine pytest-test-" in line]
    assert 1 <= len(waits) <= (1 if "no:xdist" in xdist else 2), lines
    if "no:xdist" in xdist:  # printed before the first test's result, on a line of its own
        assert out.index("building base machine") < out.index("[100%]")
    result.stdout.fnmatch_lines(["machines: 2 created, 2 deleted, 0 kept, 0 purged*"])
    assert_no_leftovers()


def test_verbose_shows_per_machine_lines_and_quiet_shows_none(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    created_machines: Callable[[str], list[tuple[str, str]]],
) -> None:
    pytester.makepyfile(TWO_FRESH)
    verbose = run_pytest("-p", "no:xdist", "-v")
    verbose.assert_outcomes(passed=2)
    made = [name for _, name in created_machines(verbose.stdout.str())]
    assert len(made) == 2
    lines = _orbstack_lines(verbose.stdout.str())
    for name in made:
        assert f"orbstack: deleted {name}" in lines
    assert any(line.startswith("orbstack: built base ") for line in lines)
    quiet = run_pytest("-p", "no:xdist", "-q")
    quiet.assert_outcomes(passed=2)
    assert _orbstack_lines(quiet.stdout.str()) == []
    assert _orbstack_lines(quiet.stderr.str()) == []
    assert_no_leftovers()


JUNIT_TESTS = """
def test_passes(orb_vm):
    orb_vm.run("true")

def test_fails(orb_vm):
    orb_vm.run("echo hello")
    assert False, "on purpose"

def test_plain():
    pass
"""


@pytest.mark.parametrize("xdist", [["-p", "no:xdist"], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_junitxml_has_machine_properties_and_the_failure_section(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    xdist: list[str],
) -> None:
    pytester.makepyfile(test_junit=JUNIT_TESTS)
    result = run_pytest(*xdist, "--junitxml=out.xml")
    result.assert_outcomes(passed=2, failed=1)
    root = ElementTree.parse(str(pytester.path / "out.xml")).getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert set(cases) == {"test_passes", "test_fails", "test_plain"}
    for name in ("test_passes", "test_fails"):
        props = dict((prop.get("name"), prop.get("value")) for prop in cases[name].iter("property"))
        assert str(props["orbstack_machine"]).startswith("pytest-test-"), props
        assert props["orbstack_image"] == "ubuntu:jammy", props
        assert re.fullmatch(r"198\.19\.249\.\d+", str(props["orbstack_ip4"])), props
    assert list(cases["test_plain"].iter("property")) == []
    failure = cases["test_fails"].find("failure")
    assert failure is not None
    text = failure.text or ""
    assert "orbstack machine pytest-test-" in text
    assert "state: running" in text
    assert "orbctl logs (last lines):" in text
    assert "$ sh -c 'echo hello'  -> exit 0" in text
    assert cases["test_passes"].find("failure") is None
    assert_no_leftovers()


def test_a_timeout_shows_the_command_still_running(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(
        """
        def test_slow(orb_vm):
            orb_vm.run("echo before")
            orb_vm.run("sleep 60")
        """
    )
    result = run_pytest("-p", "no:xdist", "--timeout=5", "--timeout-method=signal", "--junitxml=out.xml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Timeout (>*s) from pytest-timeout*",
            "*- orbstack machine pytest-test-* -*",
            "  $ sh -c 'echo before'  -> exit 0 in *s",
            "  $ sh -c 'sleep 60'  -> no exit code (interrupted while running: Failed) in *s",
        ]
    )
    text = (pytester.path / "out.xml").read_text()
    assert "sh -c 'sleep 60'  -&gt; no exit code (interrupted while running" in text
    assert_no_leftovers()


SLOW_CREATE = "create=stall:4"


@pytest.mark.parametrize(
    ("setting", "passes"), [([], True), (["--orb-timeout-setup=include"], False)], ids=["exclude", "include"]
)
def test_machine_setup_is_not_charged_to_the_timeout_unless_asked(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    setting: list[str],
    passes: bool,
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", SLOW_CREATE)  # every create stalls 4 s
    pytester.makepyfile(
        """
        import time

        def test_fresh(orb_vm_fresh):
            time.sleep(1)  # the test's own time: charged either way
            orb_vm_fresh.run("true")
        """
    )
    result = run_pytest(
        "-p", "no:xdist", "--orb-clone=never", "--timeout=3", "--timeout-method=signal", *setting
    )
    if passes:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*Timeout (>3.0s) from pytest-timeout*"])
    assert_no_leftovers()


def test_a_bad_timeout_setup_value_is_one_line(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult]
) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = run_pytest("-p", "no:xdist", "--orb-timeout-setup", "sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --orb-timeout-setup: expected one of exclude, include, got 'sometimes'"]
    )
    # without pytest-timeout the option is accepted and does nothing
    run_pytest("-p", "no:xdist", "-p", "no:timeout", "--orb-timeout-setup", "include").assert_outcomes(
        passed=1
    )


def test_on_real_orbstack_the_first_create_of_an_image_is_announced(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
    orbsim_bin: str,
    tmp_path: Path,
) -> None:
    orbctl = tmp_path / "orbctl"  # named like the real one: the plugin takes it for OrbStack
    orbctl.write_text(f'#!/bin/sh\nexec {shlex.quote(orbsim_bin)} "$@"\n')
    orbctl.chmod(0o755)
    pytester.makepyfile(TWO_FRESH)
    result = run_pytest("-p", "no:xdist", "--orb-clone=never", "--orb-orbctl", str(orbctl))
    result.assert_outcomes(passed=2)
    lines = _orbstack_lines(result.stdout.str())
    said = [line for line in lines if line.startswith("orbstack: making the first ubuntu:22.04 machine")]
    assert len(said) == 1, lines  # once per image, not per machine
    assert result.stdout.str().index("making the first") < result.stdout.str().index("[100%]")
    assert_no_leftovers()
