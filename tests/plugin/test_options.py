"""Options, ini values and environment variables: precedence and one-line usage errors.

None of these runs create a machine: bad values stop pytest before any exists.
"""

from __future__ import annotations

from typing import Callable

import pytest

PASSING = "def test_nothing():\n    pass\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orb-retries", "x"], "--orb-retries: expected a whole number from 0 to 10, got 'x'"),
        (["--orb-retries", "-1"], "--orb-retries: expected a whole number from 0 to 10, got '-1'"),
        (["--orb-ready-timeout", "0"], "--orb-ready-timeout: expected a number of seconds > 0, got '0'"),
        (
            ["--orb-ready-timeout", "soon"],
            "--orb-ready-timeout: expected a number of seconds > 0, got 'soon'",
        ),
        (["--orb-create-timeout", "-5"], "--orb-create-timeout: expected a number of seconds > 0, got '-5'"),
        (["--orb-keep", "sometimes"], "--orb-keep: expected one of never, failed, always, got 'sometimes'"),
        (["--orb-prefix", "bad_prefix-"], "--orb-prefix: "),
        (["--orb-prefix", ".hidden-"], "--orb-prefix: "),
        (["--orb-image", "plan9"], "--orb-image: "),
        (["--orb-image", "ubuntu:99.04"], "--orb-image: "),
        (["--orb-arch", "sparc"], "--orb-arch: "),
        (["--orb-user", "two words"], "--orb-user: "),
        (
            ["--orb-user-data", "missing.yaml"],
            "--orb-user-data: expected a readable cloud-init user-data file",
        ),
        (["--orb-orbctl", "/nonexistent/orbctl"], "--orb-orbctl: expected the path of an executable orbctl"),
    ],
)
def test_bad_option_is_a_usage_error(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult], args: list[str], message: str
) -> None:
    pytester.makepyfile(PASSING)
    result = run_pytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR: ")]
    assert len(errors) == 1, result.errlines
    assert errors[0].startswith(f"ERROR: {message}")
    result.stdout.no_fnmatch_line("*passed*")


def test_bad_ini_value_names_the_ini_key(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult]
) -> None:
    pytester.makeini("[pytest]\norb_retries = many\n")
    pytester.makepyfile(PASSING)
    result = run_pytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini orb_retries: expected a whole number from 0 to 10, got 'many'"])


def test_bad_env_value_names_the_variable(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ORBSTACK_READY_TIMEOUT", "-3")
    pytester.makepyfile(PASSING)
    result = run_pytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: env PYTEST_ORBSTACK_READY_TIMEOUT: expected a number of seconds > 0, got '-3'"]
    )


def test_missing_orbctl_from_env_is_a_usage_error(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORBCTL", "/no/such/orbctl")
    pytester.makepyfile(PASSING)
    result = run_pytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: env ORBCTL: expected the path of an executable orbctl*"])


def test_unwritable_state_dir_is_a_usage_error_naming_the_fix(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    monkeypatch: pytest.MonkeyPatch,
    orbsim_machines: Callable[..., list[str]],
) -> None:
    blocker = pytester.path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("PYTEST_ORBSTACK_STATE_DIR", str(blocker / "state"))
    pytester.makepyfile("def test_vm(orb_vm):\n    pass\n")
    for args in (["-p", "no:xdist"], ["-n", "2"]):
        result = run_pytest(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        output = result.stdout.str() + result.stderr.str()
        (line,) = [x for x in output.splitlines() if "cannot write the run's lease" in x]
        assert "/not-a-dir/state/runs: " in line
        assert "PYTEST_ORBSTACK_STATE_DIR" in line
        assert orbsim_machines("pytest-test-") == []


def test_precedence_cli_over_env_over_ini(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\norb_image = alpine\norb_prefix = from-ini-\n")
    pytester.makepyfile(PASSING)
    # ini only
    result = run_pytest()
    result.stdout.fnmatch_lines(["orbstack: *image alpine, prefix from-ini-,*"])
    # env beats ini
    monkeypatch.setenv("PYTEST_ORBSTACK_IMAGE", "debian:12")
    result = run_pytest()
    result.stdout.fnmatch_lines(["orbstack: *image debian:12, prefix from-ini-,*"])
    # CLI beats env
    result = run_pytest("--orb-image", "fedora")
    result.stdout.fnmatch_lines(["orbstack: *image fedora, prefix from-ini-,*"])


def test_default_settings_in_header(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult]
) -> None:
    pytester.makepyfile(PASSING)
    result = run_pytest()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["orbstack: *, image ubuntu:22.04, prefix pytest-test-, run id ????????????"])


def test_help_lists_every_option(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult]
) -> None:
    result = run_pytest("--help")
    text = result.stdout.str()
    for option in (
        "--orb-image",
        "--orb-arch",
        "--orb-user",
        "--orb-user-data",
        "--orb-prefix",
        "--orb-keep",
        "--orb-ready-timeout",
        "--orb-create-timeout",
        "--orb-retries",
        "--orb-orbctl",
        "--orb-no-purge",
    ):
        assert option in text, option
    for ini in ("orb_image", "orb_keep", "orb_retries", "orb_no_purge"):
        assert ini in text, ini


def test_fixtures_are_documented(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult]
) -> None:
    pytester.makepyfile(PASSING)
    result = run_pytest("--fixtures")
    result.stdout.fnmatch_lines_random(
        [
            "orb_vm *-- *",
            "*One ready OrbStack machine per xdist worker*",
            "orb_vm_fresh *-- *",
            "*A new ready OrbStack machine for this test only*",
            "orb_machines *-- *",
            "*A factory of OrbStack machines for this test*",
            "orb_client *-- *",
            "*The orbctl client pytest-orbstack uses*",
        ]
    )


def test_marker_is_registered(pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult]) -> None:
    result = run_pytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.orb(image=None, arch=None, user=None, user_data=None)*"])


def test_orbsim_is_used_when_orbctl_is_missing(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORBCTL")
    pytester.makepyfile(PASSING)
    result = run_pytest()
    result.stdout.fnmatch_lines(
        ["orbstack: orbsim (OrbStack double, used because no orbctl was found) */orbsim, image *"]
    )


def test_header_names_orbsim_given_by_orbctl_env(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult], orbsim_bin: str
) -> None:
    pytester.makepyfile(PASSING)
    result = run_pytest()
    result.stdout.fnmatch_lines([f"orbstack: orbsim (OrbStack double) {orbsim_bin}, image *"])


def test_bad_flag_value_in_env(
    pytester: pytest.Pytester, run_pytest: Callable[..., pytest.RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ORBSTACK_NO_PURGE", "maybe")
    pytester.makepyfile(PASSING)
    result = run_pytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: env PYTEST_ORBSTACK_NO_PURGE: expected true or false (1/0, yes/no), got 'maybe'"]
    )
