"""Parsers of orbctl output, over recorded files in tests/data (one per shape in the spec)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack import MachineInfo, OrbVersion
from pytest_orbstack.errors import OrbctlParseError
from pytest_orbstack.models import parse_machine_info, parse_machine_list

DATA = Path(__file__).resolve().parent.parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


# --- OrbVersion ----------------------------------------------------------------------------------


def test_version_from_orbctl_version_output() -> None:
    version = OrbVersion.parse(read("version_2.0.4.txt"))
    assert (version.major, version.minor, version.patch, version.build) == (2, 0, 4, 2000400)
    assert str(version) == "2.0.4"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.0.4", (2, 0, 4, None)),
        ("  1.10.3\n", (1, 10, 3, None)),
        ("Version: 2.2.0 (2020000)", (2, 2, 0, 2020000)),
        ("Version: v2.1.1", (2, 1, 1, None)),
        ("\nVersion: 2.1.0-rc1 (2010001)\nCommit: abc (v2.1.0-rc1)\n", (2, 1, 0, 2010001)),
    ],
)
def test_version_shapes(text: str, expected: tuple[int, int, int, int | None]) -> None:
    version = OrbVersion.parse(text)
    assert (version.major, version.minor, version.patch, version.build) == expected


@pytest.mark.parametrize(
    "text", ["", "\n\n", "garbage", "Version: 2.0", "2.0.x", "Commit: abc\nVersion: 2.0.4"]
)
def test_version_bad_text_raises_and_keeps_the_text(text: str) -> None:
    with pytest.raises(OrbctlParseError) as excinfo:
        OrbVersion.parse(text)
    assert excinfo.value.text == text


def test_versions_are_ordered_and_build_is_ignored() -> None:
    assert OrbVersion(1, 9, 9) < OrbVersion(2, 0, 0) < OrbVersion(2, 0, 10) < OrbVersion(2, 1, 0)
    assert OrbVersion(2, 0, 4, 2000400) == OrbVersion(2, 0, 4)
    assert OrbVersion.parse("Version: 2.0.4 (2000400)") >= OrbVersion(2, 0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        OrbVersion(2, 0, 0).major = 3  # type: ignore[misc]


# --- list ----------------------------------------------------------------------------------------


def test_list_v2() -> None:
    machines = parse_machine_list(read("list_v2.json"))
    assert [m.name for m in machines] == ["web-server", "worker.1"]
    web, worker = machines
    assert web.id == "01K2G8TY5GM9C3CN95KCB4ZG8B"
    assert (web.distro, web.version, web.arch, web.variant) == ("ubuntu", "jammy", "arm64", "default")
    assert web.image == "ubuntu:jammy"
    assert web.state == "running"
    assert web.running
    assert web.default_username == "alice"
    assert web.isolated is False
    assert web.builtin is False
    assert (web.ip4, web.ip6, web.disk_size) == (None, None, None)  # list has no addresses
    assert worker.distro == "archlinux"
    assert worker.isolated is True
    assert worker.state == "stopped"
    assert not worker.running
    assert web.raw["image"]["distro"] == "ubuntu"


def test_list_empty() -> None:
    assert parse_machine_list(read("list_empty.json")) == []


def test_list_v22_limit_keys_are_ignored() -> None:
    (machine,) = parse_machine_list(read("list_v22_limits.json"))
    assert machine.name == "limited"
    assert machine.version == "noble"
    assert machine.raw["config"]["cpu_limit"] == 2


# --- info ----------------------------------------------------------------------------------------


def test_info_v2_wrapper_with_addresses() -> None:
    info = parse_machine_info(read("info_v2_running.json"))
    assert info.name == "web-server"
    assert info.state == "running"
    assert info.ip4 == "192.168.139.76"
    assert info.ip6 == "fd07:b51a:cc66:0:b476:dbff:fe73:161e"
    assert info.disk_size == 962924544
    assert info.raw["record"]["name"] == "web-server"


def test_info_v2_stopped_has_no_addresses() -> None:
    info = parse_machine_info(read("info_v2_stopped.json"))
    assert info.state == "stopped"
    assert (info.ip4, info.ip6) == (None, None)
    assert info.disk_size == 1048576
    assert (info.distro, info.version, info.variant) == ("debian", "bookworm", "cloud")


def test_info_v2_disk_size_null() -> None:
    info = parse_machine_info(read("info_v2_disk_null.json"))
    assert info.disk_size is None
    assert info.variant == "openrc"
    assert info.state == "starting"


def test_info_v1_bare_record() -> None:
    info = parse_machine_info(read("info_v1_bare.json"))
    assert info.name == "legacy"
    assert info.version == "focal"
    assert info.default_username == "bob"
    assert (info.ip4, info.ip6, info.disk_size) == (None, None, None)
    assert info.raw["name"] == "legacy"


def test_info_pre2024_config_without_default_username() -> None:
    info = parse_machine_info(read("info_v1_pre2024_config.json"))
    assert info.default_username is None
    assert info.isolated is True


def test_info_v22_limits_and_unknown_keys() -> None:
    info = parse_machine_info(read("info_v22_limits.json"))
    assert info.name == "limited"
    assert info.ip4 == "192.168.139.12"
    assert info.disk_size == 2147483648
    assert info.raw["record"]["config"]["memory_limit_mib"] == 4096
    assert info.raw["future_field"] is True


def test_info_equal_records_compare_equal_whatever_raw() -> None:
    a = parse_machine_info(read("info_v1_bare.json"))
    b = dataclasses.replace(a, raw={"other": 1})
    assert a == b
    assert hash(a) == hash(b)
    assert isinstance(a, MachineInfo)


def test_missing_optional_record_keys_default() -> None:
    text = json.dumps(
        {
            "id": "x1",
            "name": "m1",
            "image": {"distro": "ubuntu", "version": "jammy", "arch": "arm64"},
            "state": "up",
        }
    )
    info = parse_machine_info(text)
    assert (info.variant, info.isolated, info.builtin, info.default_username) == (
        "default",
        False,
        False,
        None,
    )


RECORD: dict[str, Any] = {
    "id": "a1",
    "name": "b1",
    "image": {"distro": "ubuntu", "version": "jammy", "arch": "arm64"},
    "state": "running",
}

# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parser", "name"),
    [
        (parse_machine_list, "invalid_truncated.json"),
        (parse_machine_list, "invalid_missing_image.json"),
        (parse_machine_info, "invalid_wrong_types.json"),
        (parse_machine_info, "invalid_truncated.json"),
        (parse_machine_info, "list_v2.json"),  # an array where an object belongs
        (parse_machine_list, "info_v2_running.json"),  # an object where an array belongs
    ],
)
def test_bad_files_raise_parse_error_keeping_the_text(parser: object, name: str) -> None:
    text = read(name)
    with pytest.raises(OrbctlParseError) as excinfo:
        parser(text)  # type: ignore[operator]
    assert excinfo.value.text == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Error: invalid format: yaml",
        "[1]",
        '[{"name": "x"}]',
        '{"record": []}',
        json.dumps({"record": {**RECORD, "image": {**RECORD["image"], "version": 1}}}),
        json.dumps({**RECORD, "config": []}),
        json.dumps({**RECORD, "builtin": 1}),
        json.dumps({**RECORD, "config": {"isolated": "no"}}),
        json.dumps({"record": RECORD, "disk_size": True}),
        json.dumps({"record": RECORD, "ip4": 17}),
    ],
)
def test_bad_shapes_raise_parse_error(text: str) -> None:
    parser = parse_machine_list if text.startswith("[") else parse_machine_info
    with pytest.raises(OrbctlParseError) as excinfo:
        parser(text)  # type: ignore[operator]
    assert excinfo.value.text == text
    assert "\n" not in str(excinfo.value).split("; orbctl printed:")[0]
