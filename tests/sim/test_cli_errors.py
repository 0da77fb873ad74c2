"""Every error text of the orbctl spec: same text, same stream, same exit code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from orbsim_cli_helpers import Sim, expect_service_error, expect_usage_error, make_sim

from pytest_orbstack.sim.images import host_arch

NAME = "pytest-test-err"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    yield from make_sim(tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info"], "accepts 1 arg(s), received 0"),
        (["create", "ubuntu", "a1", "extra"], "accepts between 1 and 2 arg(s), received 3"),
        (["push"], "requires at least 1 arg(s), only received 0"),
        (["list", "--foo"], "unknown flag: --foo"),
        (["list", "-x"], "unknown shorthand flag: 'x' in -x"),
        (["create", "ubuntu", "--arch"], "flag needs an argument: --arch"),
        (["create", "ubuntu", "-a"], "flag needs an argument: 'a' in -a"),
        (["create", "plan9"], "invalid distro: plan9"),
        (["create", "-a", "riscv64", "ubuntu"], "invalid architecture: riscv64"),
        (["list", "-f", "yaml"], "invalid format: yaml"),
        (["delete"], "no machines specified"),
        (["run", "--", "true"], "unknown flag --"),
        (["run", "--bogus", "true"], "unknown flag --bogus"),
        (["run", "-m"], "flag needs an argument: -m"),
    ],
)
def test_usage_errors_print_error_and_usage_and_exit_1(sim: Sim, args: list[str], message: str) -> None:
    proc = sim(*args)
    expect_usage_error(proc, message)
    assert "Usage:" in proc.stderr


def test_unknown_command_is_cobras_text(sim: Sim) -> None:
    proc = sim("foo", prog="orbctl")
    expect_usage_error(proc, 'unknown command "foo" for "orbctl"')
    assert proc.stderr == 'Error: unknown command "foo" for "orbctl"\nRun \'orbctl --help\' for usage.\n'
    proc = sim("config", "foo")
    assert proc.stderr.splitlines() == [
        'Error: unknown command "foo" for "orbctl config"',
        "Run 'orbctl config --help' for usage.",
    ]


def test_missing_user_data_file_names_the_path(sim: Sim, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    proc = sim("create", "-c", str(missing), "ubuntu", NAME)
    expect_usage_error(proc, f"open {missing}: no such file or directory")


@pytest.mark.parametrize("verb", ["info", "start", "stop", "delete", "restart", "rename"])
def test_machine_not_found_is_a_service_error(sim: Sim, verb: str) -> None:
    args = [verb, "nosuch", "other"] if verb == "rename" else [verb, "nosuch"]
    expect_service_error(sim(*args), "machine not found: 'nosuch'")


def test_machine_not_found_without_the_name_before_2_0(sim: Sim) -> None:
    proc = sim("info", "nosuch", env={"ORBSIM_VERSION": "1.9.2"})
    expect_service_error(proc, "machine not found")


@pytest.mark.parametrize("bad", ["a_b", ".dot", "x", "default", "docker"])
def test_invalid_machine_name(sim: Sim, bad: str) -> None:
    proc = sim("create", "ubuntu", bad)
    expect_service_error(proc, f"create '{bad}': invalid machine name '{bad}'")


def test_machine_already_exists(sim: Sim) -> None:
    sim.ok("create", "ubuntu", NAME)
    proc = sim("create", "debian", NAME)
    expect_service_error(proc, f"create '{NAME}': machine already exists: '{NAME}'")
    sim.ok("delete", NAME)


def test_unknown_version_names_the_image_with_the_host_arch(sim: Sim) -> None:
    proc = sim("create", "ubuntu:99.04", NAME)
    expect_service_error(
        proc, f"create '{NAME}': make rootfs: image not found: {{ubuntu 99.04 {host_arch()} default}}"
    )
    assert sim.names() == []  # the half-made machine is gone


def test_image_not_found_uses_orbstack_image_names_and_requested_arch(sim: Sim) -> None:
    proc = sim("create", "-a", "arm64", "arch:2020", NAME)
    expect_service_error(
        proc, f"create '{NAME}': make rootfs: image not found: {{archlinux 2020 arm64 default}}"
    )


def test_cloud_init_is_rejected_for_distros_without_a_cloud_image(sim: Sim, tmp_path: Path) -> None:
    data = tmp_path / "user-data.yaml"
    data.write_text("#cloud-config\n")
    proc = sim("create", "-c", str(data), "void", NAME)
    expect_service_error(
        proc, f"create '{NAME}': make rootfs: image not found: {{voidlinux current {host_arch()} cloud}}"
    )


def test_clone_is_an_unknown_command_before_2_0(sim: Sim) -> None:
    proc = sim("clone", "a1", "b1", prog="orbctl", env={"ORBSIM_VERSION": "1.10.0"})
    expect_usage_error(proc, 'unknown command "clone" for "orbctl"')


def test_create_flags_of_later_versions_are_unknown_flags_on_2_0(sim: Sim) -> None:
    expect_usage_error(sim("create", "--cpus", "2", "ubuntu", NAME), "unknown flag: --cpus")
    expect_usage_error(sim("create", "--isolated", "ubuntu", NAME), "unknown flag: --isolated")


def test_start_on_a_machine_being_created_is_a_transition_conflict(sim: Sim) -> None:
    proc = sim("create", "ubuntu", NAME, env={"ORBSIM_FAULTS": "start=conflict:creating*1"})
    assert proc.returncode == 0
    proc = sim("start", NAME, env={"ORBSIM_FAULTS": "start=conflict:creating*1"})
    expect_service_error(proc, "cannot transition from creating to starting")
    sim.ok("delete", NAME)


def test_logs_of_a_missing_machine_report_on_stdout_with_exit_0(sim: Sim) -> None:
    proc = sim("logs", "nosuch")
    assert proc.returncode == 0
    assert proc.stdout == "[-32098] machine not found: 'nosuch'\n"


def test_bad_orbsim_settings_are_one_line_saying_what_to_do(sim: Sim) -> None:
    for env, word in (
        ({"ORBSIM_VERSION": "two"}, "ORBSIM_VERSION"),
        ({"ORBSIM_FAULTS": "create=boom"}, "ORBSIM_FAULTS"),
    ):
        proc = sim("list", env=env)
        assert proc.returncode == 1
        assert proc.stderr.startswith(f"orbsim: {word}")
        assert proc.stderr.count("\n") == 1
