"""OrbStack missing or stopped: machine tests error with one line, other tests run."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Callable

import pytest

from pytest_orbstack.backend import locate
from pytest_orbstack.errors import OrbctlCommandError, OrbctlNotFoundError, OrbstackError, first_line
from pytest_orbstack.runtime import failure_text
from pytest_orbstack.sim import rootfs
from pytest_orbstack.sim.namespace import TOOLS

TESTS = """
def test_plain():
    pass

def test_vm(orb_vm):
    pass

def test_fresh(orb_vm_fresh):
    pass

def test_client(orb_client):
    pass
"""


def test_orbstack_stopped(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    mode: list[str],
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", "vm=stopped")
    pytester.makepyfile(TESTS)
    result = run_pytest(*mode)
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_vm*",
            "OrbStack is not running (orbctl status: Stopped): open the OrbStack app "
            "or run 'orbctl list' (which starts it), then run the tests again",
        ]
    )


def test_orbctl_missing(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # orbsim sits next to this interpreter, so the lookup would fall back to it: a make_client
    # hook runs the real lookup with no ORBCTL and an empty PATH instead.
    pytester.makeconftest(
        """
        import pytest
        from pytest_orbstack.client import OrbctlClient, find_orbctl

        @pytest.hookimpl(tryfirst=True)
        def pytest_orbstack_make_client(config):
            return OrbctlClient(find_orbctl(None, environ={"PATH": "/nonexistent"}))
        """
    )
    pytester.makepyfile(TESTS)
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_vm*",
            "orbctl not found (no --orb-orbctl, no $ORBCTL, not on PATH); install OrbStack, "
            "or pass --orb-orbctl PATH, set $ORBCTL, or put orbctl on PATH",
        ]
    )


def test_orbctl_lookup_falls_back_to_orbsim_only_on_linux(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    bin_dir = Path(tmp_path)
    monkeypatch.delenv("ORBCTL")
    monkeypatch.delenv("PYTEST_ORBSTACK_ORBCTL", raising=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    with pytest.raises(OrbctlNotFoundError):
        locate(None)
    orbsim = bin_dir / "orbsim"
    orbsim.write_text("#!/bin/sh\n")
    orbsim.chmod(0o755)
    assert locate(None) == (str(orbsim), "orbsim-fallback")
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    with pytest.raises(OrbctlNotFoundError):
        locate(None)
    orbctl = bin_dir / "orbctl"
    orbctl.write_text("#!/bin/sh\n")
    orbctl.chmod(0o755)
    assert locate(None) == (str(orbctl), "orbctl")


def test_orbstack_starting_is_waited_for(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    assert_no_leftovers: Callable[..., None],
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", "vm=starting*3")  # the first three status calls: Starting
    pytester.makepyfile(TESTS)
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=4)
    assert_no_leftovers()


def test_orbstack_that_stays_starting_is_a_one_line_error(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORBSIM_FAULTS", "vm=starting")
    pytester.makepyfile(TESTS)
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_vm*",
            "OrbStack is still starting after 15s (orbctl status: Starting): wait until the OrbStack "
            "app says it is running, then run the tests again",
        ]
    )


# --- one failure, said once ---------------------------------------------------------------------

#: Machine tests in TESTS, and the one test that needs no machine.
MACHINE_TESTS = 3


def _assert_said_once_per_test(result: pytest.RunResult, line: str) -> None:
    """``line`` is the whole error of each machine test: no traceback, no chain, no INTERNALERROR."""
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text
    assert "Traceback" not in text
    assert "During handling" not in text
    assert "direct cause" not in text
    shown = [row for row in result.outlines if row == line]
    assert len(shown) == MACHINE_TESTS, result.stdout.str()


def _plain_copy(source: str, target: Path, mode: int) -> str:
    target.write_bytes(Path(source).read_bytes())
    target.chmod(mode)
    return str(target)


def test_orbctl_without_x_bit_is_one_line_per_machine_test(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    orbsim_bin: str,
    tmp_path: Path,
    mode: list[str],
) -> None:
    orbctl = _plain_copy(orbsim_bin, tmp_path / "orbctl", 0o644)
    monkeypatch.setenv("ORBCTL", orbctl)
    pytester.makepyfile(TESTS)
    result = run_pytest(*mode)
    result.assert_outcomes(passed=1, errors=MACHINE_TESTS)
    _assert_said_once_per_test(
        result,
        f"orbctl {orbctl!r} is not executable (no x permission): run `chmod +x {orbctl}`, "
        "or use another orbctl (--orb-orbctl PATH or $ORBCTL)",
    )


def test_orbctl_with_a_missing_interpreter_is_one_line_not_an_internal_error(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    orbctl = tmp_path / "orbctl"
    orbctl.write_text("#!/nonexistent/interpreter\n")
    orbctl.chmod(0o755)
    monkeypatch.setenv("ORBCTL", str(orbctl))
    pytester.makepyfile(TESTS)
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=1, errors=MACHINE_TESTS)
    _assert_said_once_per_test(
        result,
        f"cannot run orbctl {str(orbctl)!r}: its interpreter (the #! line) is missing or it is not a "
        "program for this machine; install OrbStack, or pass --orb-orbctl PATH, set $ORBCTL, "
        "or put orbctl on PATH",
    )


def _bin_without(tmp_path: Path, names: tuple[str, ...] = ()) -> Path:
    """A PATH directory with the programs orbsim runs machines with, but no debootstrap and no apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (*TOOLS, "sh", *names):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    return bin_dir


@pytest.mark.skipif(os.geteuid() != 0, reason="orbsim's namespace machines need root")
def test_no_image_and_no_way_to_build_it_is_one_line_per_machine_test(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    mode: list[str],
) -> None:
    monkeypatch.setenv("PATH", str(_bin_without(tmp_path)))
    monkeypatch.setenv("ORBSIM_IMAGE_DIR", str(tmp_path / "images"))
    pytester.makepyfile(TESTS)
    result = run_pytest(*mode)
    result.assert_outcomes(passed=1, errors=MACHINE_TESTS)
    _assert_said_once_per_test(
        result,
        "orbsim needs debootstrap (to build the machine image) and there is no apt-get to "
        "install it: install it by hand (`apt-get install debootstrap`), then try again",
    )
    assert not (tmp_path / "images" / rootfs.IMAGE_NAME).exists()


FAKE_APT_GET = """#!/bin/sh
echo "$*" >> "{log}"
cat > "{bin}/debootstrap" <<'SCRIPT'
#!/bin/sh
echo "I: Retrieving InRelease"
echo "E: Failed getting release file http://deb.debian.org/debian/dists/bookworm/Release"
exit 1
SCRIPT
chmod 755 "{bin}/debootstrap"
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="orbsim's namespace machines need root")
@pytest.mark.parametrize("workers", [["-p", "no:xdist"], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_missing_debootstrap_is_installed_and_the_build_shown_once_before_the_tests(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    workers: list[str],
) -> None:
    # A stand-in apt-get "installs" a debootstrap that cannot reach the mirror: no network needed.
    bin_dir = _bin_without(tmp_path, ("chmod", "cat"))
    log = tmp_path / "apt-get.log"
    apt_get = bin_dir / "apt-get"
    apt_get.write_text(FAKE_APT_GET.format(log=log, bin=bin_dir))
    apt_get.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("ORBSIM_IMAGE_DIR", str(tmp_path / "images"))
    pytester.makepyfile(TESTS)
    result = run_pytest(*workers)
    result.assert_outcomes(passed=1, errors=MACHINE_TESTS)
    assert log.read_text().splitlines() == ["install -y -q --no-install-recommends debootstrap"]
    out = result.stdout.str()
    assert out.count("orbsim: installing debootstrap with apt-get (to build the machine image) ...") == 1
    assert out.count("orbsim: building the machine image (Debian bookworm") == 1
    result.stdout.fnmatch_lines(
        [
            "orbsim: building the machine image (Debian bookworm, debootstrap from "
            f"http://deb.debian.org/debian) in {tmp_path}/images/{rootfs.IMAGE_NAME}: once per host*",
            "orbsim: image build 0:0?: Failed getting release file *",
            "orbsim: cannot make machines: building the machine image failed *",
            "*ERROR at setup of test_vm*",
            "orbsim: building the machine image failed (`*debootstrap --variant=minbase * exited with 1: "
            "E: Failed getting release file *); check network access to http://deb.debian.org/debian *",
        ]
    )
    assert "Traceback" not in out
    assert not (tmp_path / "images" / rootfs.IMAGE_NAME).exists()


def test_nothing_is_prepared_when_no_selected_test_needs_a_machine(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    log = tmp_path / "prepared"
    pytester.makeconftest(
        f"""
        def pytest_orbstack_prepare(config, orbctl):
            with open({str(log)!r}, "a") as f:
                f.write(orbctl + "\\n")
        """
    )
    pytester.makepyfile(TESTS)
    run_pytest("-p", "no:xdist", "-m", "not orb").assert_outcomes(passed=1)
    run_pytest("-p", "no:xdist", "-k", "plain").assert_outcomes(passed=1)
    run_pytest("-n", "2", "--collect-only")
    run_pytest("-n", "2", "-m", "not orb").assert_outcomes(passed=1)
    run_pytest("-n", "2", "-k", "plain").assert_outcomes(passed=1)
    assert not log.exists()
    run_pytest("-p", "no:xdist", "-k", "plain or client").assert_outcomes(passed=2)
    assert log.read_text().splitlines() == [os.environ["ORBCTL"]]
    run_pytest("-n", "2", "-k", "plain or client").assert_outcomes(passed=2)
    assert log.read_text().splitlines() == [os.environ["ORBCTL"]] * 2  # once for the run, not per worker


@pytest.mark.skipif(os.geteuid() != 0, reason="orbsim's namespace machines need root")
def test_orbsim_builds_no_image_when_no_selected_test_needs_a_machine(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # no image, and an apt-get that would record an install: neither may be touched
    bin_dir = _bin_without(tmp_path)
    log = tmp_path / "apt-get.log"
    apt_get = bin_dir / "apt-get"
    apt_get.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexit 1\n')
    apt_get.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("ORBSIM_IMAGE_DIR", str(tmp_path / "images"))
    pytester.makepyfile(TESTS)
    runs = (["-n", "3", "-m", "not orb"], ["-n", "2", "-k", "plain"], ["-p", "no:xdist", "-m", "not orb"])
    for args in runs:
        result = run_pytest(*args)
        result.assert_outcomes(passed=1)
        assert "orbsim:" not in result.stdout.str() + result.stderr.str()
    assert not log.exists()
    assert not (tmp_path / "images").exists()


def test_a_prepare_hook_reason_reaches_every_worker_without_asking_again(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    tmp_path: Path,
    mode: list[str],
) -> None:
    log = tmp_path / "prepared"
    pytester.makeconftest(
        f"""
        def pytest_orbstack_prepare(config, orbctl):
            with open({str(log)!r}, "a") as f:
                f.write("called\\n")
            return "the lab's OrbStack is down for maintenance: try again after 14:00"
        """
    )
    pytester.makepyfile(TESTS)
    result = run_pytest(*mode)
    result.assert_outcomes(passed=1, errors=MACHINE_TESTS)
    _assert_said_once_per_test(result, "the lab's OrbStack is down for maintenance: try again after 14:00")
    assert log.read_text() == "called\n"


# --- --orb-if-unavailable -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    [["--orb-if-unavailable", "skip"], ["env"], ["ini"]],
    ids=["cli", "env", "ini"],
)
def test_skip_mode_skips_machine_tests_with_the_reason(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    orbsim_bin: str,
    tmp_path: Path,
    how: list[str],
) -> None:
    orbctl = _plain_copy(orbsim_bin, tmp_path / "orbctl", 0o644)
    monkeypatch.setenv("ORBCTL", orbctl)
    args = ["-n", "2", "-rs"]
    if how == ["env"]:
        monkeypatch.setenv("PYTEST_ORBSTACK_IF_UNAVAILABLE", "skip")
    elif how == ["ini"]:
        pytester.makeini("[pytest]\norb_if_unavailable = skip\n")
    else:
        args += how
    pytester.makepyfile(TESTS)
    result = run_pytest(*args)
    result.assert_outcomes(passed=1, skipped=MACHINE_TESTS)
    result.stdout.fnmatch_lines(
        [f"SKIPPED [[]*[]] *: orbctl '{orbctl}' is not executable (no x permission)*"]
    )


def test_skip_mode_does_not_hide_a_usable_orbstack(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile("def test_vm(orb_vm):\n    assert orb_vm.run('true').returncode == 0\n")
    run_pytest("-p", "no:xdist", "--orb-if-unavailable=skip").assert_outcomes(passed=1)
    assert_no_leftovers()


def test_bad_if_unavailable_value_is_a_usage_error(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult]
) -> None:
    pytester.makepyfile(TESTS)
    result = run_pytest("--orb-if-unavailable=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --orb-if-unavailable: expected one of error, skip, got 'maybe'"])


# --- the orb marker on machine tests ---------------------------------------------------------------

MARKED = """
import pytest

@pytest.fixture
def web(orb_vm):
    return orb_vm

def test_plain():
    pass

def test_through_another_fixture(web):
    pass

@pytest.mark.orb(image="debian:12")
def test_fresh_with_marker(orb_vm_fresh):
    pass

def test_machines(orb_machines):
    pass

def test_client(orb_client):
    pass
"""


def test_machine_tests_get_the_orb_marker(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult], mode: list[str]
) -> None:
    pytester.makepyfile(MARKED)
    result = run_pytest(*mode, "-m", "not orb")
    result.assert_outcomes(passed=1)
    result = run_pytest("--collect-only", "-q", "-p", "no:randomly", "-m", "orb")
    result.stdout.fnmatch_lines(
        [
            "test_machine_tests_get_the_orb_marker.py::test_through_another_fixture",
            "test_machine_tests_get_the_orb_marker.py::test_fresh_with_marker",
            "test_machine_tests_get_the_orb_marker.py::test_machines",
            "test_machine_tests_get_the_orb_marker.py::test_client",
            "4/5 tests collected (1 deselected)*",
        ]
    )


def test_failure_text_says_each_line_of_a_chain_once() -> None:
    inner = OrbctlCommandError(["orbctl", "create", "ubuntu", "m"], 1, "", "no space left on device\n")
    try:
        try:
            raise inner
        except OrbctlCommandError as exc:
            raise OrbstackError(f"the base machine m could not be built: {first_line(exc)}") from exc
    except OrbstackError as outer:
        text = failure_text(outer)
    lines = text.splitlines()
    assert lines[0] == (
        "OrbstackError: the base machine m could not be built: orbctl create ubuntu failed with exit "
        "code 1: no space left on device"
    )
    assert lines[1:] == [
        "  command: orbctl create ubuntu m",
        "  exit code: 1",
        "  stderr: no space left on device",
    ]
