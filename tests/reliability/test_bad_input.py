"""Bad input stops pytest (or errors the test) with one line naming what is allowed, before any machine.

orbsim's ``argv.log`` records every argv it received: no ``create`` in it
proves nothing was attempted; nothing is left behind either.
"""

from __future__ import annotations

import pytest
from reliability_helpers import REPEAT, Scenario, one_line_error

USES_A_MACHINE = """
    def test_uses_a_machine(orb_vm):
        orb_vm.run("true")
"""

USAGE_ERRORS = [
    pytest.param(
        ["--orb-image", "nosuchdistro"], {}, ("--orb-image", "nosuchdistro", "ubuntu"), id="unknown-distro"
    ),
    pytest.param(
        ["--orb-image", "ubuntu:99.04"], {}, ("--orb-image", "99.04", "22.04"), id="unknown-version"
    ),
    pytest.param(["--orb-arch", "sparc"], {}, ("--orb-arch", "sparc", "arm64"), id="bad-arch"),
    pytest.param(
        ["--orb-prefix", "bad_prefix-"], {}, ("--orb-prefix", "bad_prefix-", "'_'"), id="prefix-underscore"
    ),
    pytest.param(
        ["--orb-prefix", ".hidden-"], {}, ("--orb-prefix", ".hidden-", "starting with"), id="prefix-dot"
    ),
    pytest.param(
        ["--orb-ready-timeout", "-5"], {}, ("--orb-ready-timeout", "-5", "> 0"), id="negative-timeout"
    ),
    pytest.param(
        ["--orb-create-timeout", "soon"], {}, ("--orb-create-timeout", "soon", "seconds"), id="text-timeout"
    ),
    pytest.param(["--orb-retries", "-1"], {}, ("--orb-retries", "-1", "0 to 10"), id="negative-retries"),
    pytest.param(
        ["--orb-retries", "1000000"], {}, ("--orb-retries", "1000000", "0 to 10"), id="retries-above-cap"
    ),
    pytest.param(["--orb-prefix", "x"], {}, ("--orb-prefix", "'x'", "ending in '-' or '.'"), id="prefix-x"),
    pytest.param(
        ["--orb-user-data", "/dev/zero"],
        {},
        ("--orb-user-data", "/dev/zero", "1 MiB"),
        id="user-data-dev-zero",
    ),
    pytest.param(
        ["--orb-user-data", "/bin/sh"], {}, ("--orb-user-data", "/bin/sh", "binary"), id="user-data-binary"
    ),
    pytest.param(
        ["--orb-output-limit", "lots"], {}, ("--orb-output-limit", "lots", "1K to 1G"), id="output-limit"
    ),
    pytest.param(
        [],
        {"PYTEST_ORBSTACK_NO_PREFETCH": "maybe"},
        ("PYTEST_ORBSTACK_NO_PREFETCH", "maybe", "true or false"),
        id="env-no-prefetch",
    ),
    pytest.param(
        [], {"PYTEST_ORBSTACK_RETRIES": "many"}, ("PYTEST_ORBSTACK_RETRIES", "many"), id="env-retries"
    ),
    pytest.param(
        ["--orb-user-data", "no-such-cloud-init.yaml"],
        {},
        ("--orb-user-data", "no-such-cloud-init.yaml", "readable"),
        id="missing-user-data",
    ),
    pytest.param(
        ["--orb-user-data", "."], {}, ("--orb-user-data", "readable"), id="user-data-is-a-directory"
    ),
    pytest.param(
        ["--orb-orbctl", "/nonexistent/bin/orbctl"],
        {},
        ("--orb-orbctl", "/nonexistent/bin/orbctl"),
        id="orbctl-path",
    ),
    pytest.param(
        [], {"ORBCTL": "/nonexistent/bin/orbctl"}, ("ORBCTL", "/nonexistent/bin/orbctl"), id="orbctl-env-path"
    ),
]


@pytest.mark.parametrize("attempt", REPEAT)
@pytest.mark.parametrize(("args", "env", "needles"), USAGE_ERRORS)
def test_bad_option_is_a_usage_error_before_any_machine(
    scenario: Scenario, attempt: int, args: list[str], env: dict[str, str], needles: tuple[str, ...]
) -> None:
    scenario.write_tests(USES_A_MACHINE)
    code, out = scenario.run(*args, env=env)
    assert code == pytest.ExitCode.USAGE_ERROR, out
    one_line_error(out, *needles)
    assert scenario.made() == []
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


@pytest.mark.parametrize("attempt", REPEAT)
def test_bad_ini_value_names_the_ini_key(scenario: Scenario, attempt: int) -> None:
    scenario.pytester.makeini("[pytest]\norb_ready_timeout = abc\n")
    scenario.write_tests(USES_A_MACHINE)
    code, out = scenario.run()
    assert code == pytest.ExitCode.USAGE_ERROR, out
    one_line_error(out, "orb_ready_timeout", "abc", "> 0")
    assert scenario.made() == []


@pytest.mark.parametrize("attempt", REPEAT)
def test_bad_ini_flag_names_the_ini_key_and_the_allowed_values(scenario: Scenario, attempt: int) -> None:
    scenario.pytester.makeini("[pytest]\norb_no_purge = maybe\n")
    scenario.write_tests(USES_A_MACHINE)
    code, out = scenario.run()
    assert code == pytest.ExitCode.USAGE_ERROR, out
    one_line_error(out, "ini orb_no_purge", "maybe", "true or false")
    assert scenario.made() == []
    scenario.assert_no_leftovers()


@pytest.mark.parametrize("attempt", REPEAT)
def test_user_data_that_is_not_cloud_init_is_refused(scenario: Scenario, attempt: int) -> None:
    (scenario.pytester.path / "user-data.yaml").write_text("users:\n  - name: ci\n")
    scenario.write_tests(USES_A_MACHINE)
    code, out = scenario.run("--orb-user-data", "user-data.yaml")
    assert code == pytest.ExitCode.USAGE_ERROR, out
    one_line_error(out, "--orb-user-data", "#cloud-config")
    assert scenario.made() == []
    scenario.assert_no_leftovers()


MARKER_ERRORS = [
    pytest.param(
        '@pytest.mark.orb(imag="ubuntu:22.04")', ("test_marked", "'imag'", "image"), id="unknown-argument"
    ),
    pytest.param(
        '@pytest.mark.orb(image="debian:12")\n    @pytest.mark.orb(image="ubuntu:22.04")',
        ("test_marked", "'image'", "twice"),
        id="duplicate-argument",
    ),
    pytest.param('@pytest.mark.orb("ubuntu:22.04")', ("test_marked", "keyword"), id="positional-argument"),
    pytest.param('@pytest.mark.orb(arch="sparc")', ("test_marked", "sparc", "arm64"), id="bad-arch"),
    pytest.param('@pytest.mark.orb(image="ubuntu:99.04")', ("test_marked", "99.04"), id="unknown-version"),
    pytest.param(
        "@pytest.mark.orb(image=123)", ("test_marked", "123", "expected a str, got int"), id="image-int"
    ),
]


@pytest.mark.parametrize("attempt", REPEAT)
def test_a_marker_on_a_test_that_only_uses_orb_vm_is_an_error(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(
        """
    import pytest

    @pytest.mark.orb(image="debian:12")
    def test_marked(orb_vm):
        orb_vm.run("true")

    def test_unmarked():
        pass
    """
    )
    code, out = scenario.run("-rA")
    assert code in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED), out
    one_line_error(out, "test_marked", "does not apply to orb_vm", "orb_vm_fresh or orb_machines")
    assert scenario.made() == []
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


@pytest.mark.parametrize("attempt", REPEAT)
@pytest.mark.parametrize(("marker", "needles"), MARKER_ERRORS)
def test_bad_marker_fails_the_test_before_any_machine(
    scenario: Scenario, attempt: int, marker: str, needles: tuple[str, ...]
) -> None:
    scenario.write_tests(
        f"""
    import pytest

    {marker}
    def test_marked(orb_vm_fresh):
        orb_vm_fresh.run("true")

    def test_unmarked():
        pass
    """
    )
    code, out = scenario.run("-rA")
    assert code in (pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED), out
    one_line_error(out, *needles)
    assert scenario.made() == []
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


@pytest.mark.parametrize("attempt", REPEAT)
def test_bad_factory_arguments_fail_before_any_machine(scenario: Scenario, attempt: int) -> None:
    scenario.write_tests(
        """
    import pytest
    from pytest_orbstack import InvalidSpecError

    def test_factory(orb_machines):
        with pytest.raises(InvalidSpecError, match="distro"):
            orb_machines.create("nosuchdistro")
        with pytest.raises(InvalidSpecError, match="arm64"):
            orb_machines.create(arch="sparc")
        with pytest.raises(InvalidSpecError, match="invalid user 'Bad User': .*letters, digits"):
            orb_machines.create(user="Bad User")
        with pytest.raises(InvalidSpecError, match="invalid user_data 'missing.yaml': .*readable"):
            orb_machines.create_many(2, user_data="missing.yaml")
        with pytest.raises(InvalidSpecError, match="unknown ubuntu version"):
            orb_machines.create("ubuntu:99.04")
        with pytest.raises(ValueError, match=">= 1"):
            orb_machines.create_many(-1)
    """
    )
    code, out = scenario.run()
    assert code == 0, out
    assert scenario.made() == []
    scenario.assert_no_leftovers()
