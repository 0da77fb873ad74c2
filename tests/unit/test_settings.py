"""settings.py: precedence (marker > CLI > env > ini > default) and errors naming the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_orbstack.client import Timeouts
from pytest_orbstack.errors import InvalidSpecError
from pytest_orbstack.marker import spec_fields, spec_for
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.settings import Settings, load_settings


def test_defaults(pytester: pytest.Pytester) -> None:
    settings = load_settings(pytester.parseconfig(), environ={})
    assert settings == Settings()
    assert settings.spec == MachineSpec("ubuntu:22.04")
    assert (settings.prefix, settings.keep, settings.retries, settings.ready_timeout) == (
        "pytest-test-",
        "never",
        3,
        120.0,
    )


def test_cli_beats_env_beats_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\norb_retries = 1\norb_image = alpine\norb_keep = always\n")
    config = pytester.parseconfig("--orb-retries", "5")
    env = {"PYTEST_ORBSTACK_RETRIES": "4", "PYTEST_ORBSTACK_IMAGE": "debian:12"}
    settings = load_settings(config, environ=env)
    assert (settings.retries, settings.image, settings.keep) == (5, "debian:12", "always")
    settings = load_settings(config, environ={})
    assert (settings.retries, settings.image) == (5, "alpine")


def test_flags(pytester: pytest.Pytester) -> None:
    assert load_settings(pytester.parseconfig("--orb-no-purge"), environ={}).no_purge is True
    assert load_settings(pytester.parseconfig(), environ={"PYTEST_ORBSTACK_NO_PURGE": "yes"}).no_purge is True
    assert load_settings(pytester.parseconfig(), environ={"PYTEST_ORBSTACK_NO_PURGE": "0"}).no_purge is False
    pytester.makeini("[pytest]\norb_no_purge = true\n")
    assert load_settings(pytester.parseconfig(), environ={}).no_purge is True


def test_prefetch_is_on_unless_turned_off(pytester: pytest.Pytester) -> None:
    assert load_settings(pytester.parseconfig(), environ={}).no_prefetch is False
    assert load_settings(pytester.parseconfig("--orb-no-prefetch"), environ={}).no_prefetch is True
    env = {"PYTEST_ORBSTACK_NO_PREFETCH": "1"}
    assert load_settings(pytester.parseconfig(), environ=env).no_prefetch is True
    pytester.makeini("[pytest]\norb_no_prefetch = yes\n")
    assert load_settings(pytester.parseconfig(), environ={}).no_prefetch is True


def test_user_data_paths_are_resolved(pytester: pytest.Pytester) -> None:
    (pytester.path / "conf").mkdir()
    (pytester.path / "conf" / "pytest.ini").write_text("[pytest]\norb_user_data = init.yaml\n")
    (pytester.path / "conf" / "init.yaml").write_text("#cloud-config\n")
    config = pytester.parseconfig("-c", str(pytester.path / "conf" / "pytest.ini"))
    settings = load_settings(config, environ={})
    assert settings.user_data == str((pytester.path / "conf" / "init.yaml").resolve())


@pytest.mark.parametrize(
    ("args", "env", "ini", "message"),
    [
        (["--orb-retries", "x"], {}, "", "--orb-retries: expected a whole number from 0 to 10, got 'x'"),
        (["--orb-retries", "1000000"], {}, "", "--orb-retries: expected a whole number from 0 to 10, got"),
        (
            [],
            {},
            "orb_no_purge = maybe",
            "ini orb_no_purge: expected true or false (1/0, yes/no), got 'maybe'",
        ),
        (["--orb-prefix", "x"], {}, "", "--orb-prefix: use at least 2 characters ending in '-' or '.'"),
        (["--orb-prefix", "ci"], {}, "", "--orb-prefix: use at least 2 characters ending in '-' or '.'"),
        (["--orb-output-limit", "0"], {}, "", "--orb-output-limit: expected a size from 1K to 1G"),
        (["--orb-output-limit", "2T"], {}, "", "--orb-output-limit: expected a size from 1K to 1G"),
        (["--orb-machine-timeout", "0"], {}, "", "--orb-machine-timeout: expected a number of seconds > 0"),
        (["--orb-clone-timeout", "x"], {}, "", "--orb-clone-timeout: expected a number of seconds > 0"),
        ([], {"PYTEST_ORBSTACK_RETRIES": "1.5"}, "", "env PYTEST_ORBSTACK_RETRIES: expected a whole number"),
        ([], {}, "orb_retries = -2", "ini orb_retries: expected a whole number from 0 to 10, got '-2'"),
        ([], {}, "orb_ready_timeout = inf", "ini orb_ready_timeout: expected a number of seconds > 0"),
        (["--orb-image", "ubuntu:99.04"], {}, "", "--orb-image: unknown ubuntu version: use one of 20.04"),
        (["--orb-user", "bob smith"], {}, "", "--orb-user: expected a Linux user name"),
        ([], {"ORBCTL": "/no/orbctl"}, "", "env ORBCTL: expected the path of an executable orbctl"),
        ([], {"ORBCTL": "no-such-orbctl-cmd"}, "", "env ORBCTL: expected an orbctl executable"),
    ],
)
def test_bad_values_name_their_source(
    pytester: pytest.Pytester, args: list[str], env: dict[str, str], ini: str, message: str
) -> None:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    with pytest.raises(pytest.UsageError) as excinfo:
        load_settings(pytester.parseconfig(*args), environ=env)
    assert str(excinfo.value).startswith(message)
    assert "\n" not in str(excinfo.value)


def test_codename_versions_are_accepted(pytester: pytest.Pytester) -> None:
    settings = load_settings(pytester.parseconfig("--orb-image", "ubuntu:noble"), environ={})
    assert settings.image == "ubuntu:noble"


def test_spec_for_applies_marker_values_over_settings() -> None:
    settings = Settings(image="debian:12", user="alice", user_data=str(Path("/x/init.yaml")))
    assert spec_for(settings, {"user": "bob"}) == MachineSpec("debian:12", None, "bob", "/x/init.yaml")
    assert spec_for(settings, {}) == settings.spec


def test_spec_fields_validate_like_the_marker(tmp_path: Path) -> None:
    (tmp_path / "init.yaml").write_text("#cloud-config\n")
    given = {"image": "debian:12", "arch": None, "user": "ci", "user_data": "init.yaml"}
    fields = spec_fields(given, tmp_path)
    assert fields == {"image": "debian:12", "user": "ci", "user_data": str(tmp_path / "init.yaml")}
    bad = [
        ({"user": "Bad User"}, "user", "letters, digits"),
        (
            {"user_data": "missing.yaml"},
            "user_data",
            f"readable cloud-init user-data file ({tmp_path}/missing.yaml: ",
        ),
        ({"image": "ubuntu:99.04"}, "image", "22.04"),
        ({"arch": "sparc"}, "arch", "arm64"),
        ({"arch": 7}, "arch", "str"),
        ({"image": 123}, "image", "expected a str, got int"),
        ({"user_data": 5}, "user_data", "expected a str or a path, got int"),
    ]
    for given, field, needle in bad:
        with pytest.raises(InvalidSpecError) as excinfo:
            spec_fields(given, tmp_path)
        assert excinfo.value.field == field
        assert needle in str(excinfo.value)
        assert "\n" not in str(excinfo.value)


def test_limits_and_timeouts_options(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig(
        "--orb-output-limit", "64K", "--orb-machine-timeout", "90", "--orb-clone-timeout", "30",
        "--orb-retries", "10", "--orb-prefix", "ci.",
    )  # fmt: skip
    settings = load_settings(config, environ={"PYTEST_ORBSTACK_OUTPUT_LIMIT": "1M"})
    assert (settings.output_limit, settings.machine_timeout, settings.clone_timeout) == (65536, 90.0, 30.0)
    assert (settings.retries, settings.prefix) == (10, "ci.")
    assert load_settings(
        pytester.parseconfig(), environ={"PYTEST_ORBSTACK_OUTPUT_LIMIT": "1M"}
    ).output_limit == (1024 * 1024)
    assert load_settings(pytester.parseconfig(), environ={}).output_limit == 16 * 1024 * 1024


def test_ini_flags_accept_the_usual_words(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\norb_no_purge = yes\norb_no_prefetch = 0\n")
    settings = load_settings(pytester.parseconfig(), environ={})
    assert (settings.no_purge, settings.no_prefetch) == (True, False)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\0" * 100, "binary, contains NUL bytes"),
        (b"\xff\xfe\x00garbage", "binary, not UTF-8 text"),
        (b"users:\n  - name: x\n", "its first line must start with one of #cloud-config"),
        (b"#cloud-config\n" + b"a" * (1024 * 1024), "larger than 1 MiB"),
    ],
)
def test_user_data_that_is_not_cloud_init_is_refused(
    pytester: pytest.Pytester, content: bytes, needle: str
) -> None:
    path = pytester.path / "user-data"
    path.write_bytes(content)
    with pytest.raises(pytest.UsageError) as excinfo:
        load_settings(pytester.parseconfig("--orb-user-data", str(path)), environ={})
    message = str(excinfo.value)
    assert message.startswith("--orb-user-data: expected a cloud-init user-data file of at most 1 MiB")
    assert needle in message
    assert "\n" not in message


def test_user_data_from_dev_zero_is_refused_after_a_bounded_read(pytester: pytest.Pytester) -> None:
    with pytest.raises(pytest.UsageError, match="larger than 1 MiB"):
        load_settings(pytester.parseconfig("--orb-user-data", "/dev/zero"), environ={})


@pytest.mark.parametrize(
    "content",
    [
        b"#cloud-config\nusers: []\n",
        b"#!/bin/sh\necho hi\n",
        b"#include\nhttp://example.invalid/x\n",
        b"Content-Type: multipart/mixed; boundary=XX\nMIME-Version: 1.0\n",
        b"## template: jinja\n#cloud-config\n",
        b"\x1f\x8b\x08\x00binary-gzip",
    ],
)
def test_cloud_init_user_data_formats_are_accepted(pytester: pytest.Pytester, content: bytes) -> None:
    path = pytester.path / "user-data"
    path.write_bytes(content)
    settings = load_settings(pytester.parseconfig("--orb-user-data", str(path)), environ={})
    assert settings.user_data == str(path)


def test_the_clients_timeouts_take_the_create_and_clone_options(pytester: pytest.Pytester) -> None:
    default = Timeouts()
    assert load_settings(pytester.parseconfig(), environ={}).timeouts() == default
    config = pytester.parseconfig("--orb-create-timeout", "42", "--orb-clone-timeout", "7")
    timeouts = load_settings(config, environ={}).timeouts()
    assert (timeouts.create, timeouts.clone) == (42.0, 7.0)
    assert timeouts == Timeouts(create=42.0, clone=7.0)
