"""settings.py: precedence (marker > CLI > env > ini > default) and errors naming the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_orbstack.errors import InvalidSpecError
from pytest_orbstack.provisioner import MachineSpec
from pytest_orbstack.settings import Settings, load_settings, spec_fields, spec_for


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
        (["--orb-retries", "x"], {}, "", "--orb-retries: expected a whole number >= 0, got 'x'"),
        ([], {"PYTEST_ORBSTACK_RETRIES": "1.5"}, "", "env PYTEST_ORBSTACK_RETRIES: expected a whole number"),
        ([], {}, "orb_retries = -2", "ini orb_retries: expected a whole number >= 0, got '-2'"),
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
    ]
    for given, field, needle in bad:
        with pytest.raises(InvalidSpecError) as excinfo:
            spec_fields(given, tmp_path)
        assert excinfo.value.field == field
        assert needle in str(excinfo.value)
        assert "\n" not in str(excinfo.value)
