"""The pure argv builder: what each command builds, and every input it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_orbstack import InvalidSpecError, OrbVersion, commands
from pytest_orbstack.errors import UnsupportedFeatureError

V19 = OrbVersion(1, 9, 0)
V20 = OrbVersion(2, 0, 4)
V21 = OrbVersion(2, 1, 0)
V22 = OrbVersion(2, 2, 0)

NASTY = ["a b", "semi;colon", "$(rm -rf /)", "it's", 'say "hi"', "back\\slash", "`tick`", "*"]


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (commands.status(), ["status"]),
        (commands.version(), ["version"]),
        (commands.list_machines(), ["list", "-f", "json"]),
        (commands.list_machines(running=True), ["list", "-r", "-f", "json"]),
        (commands.list_machines(quiet=True), ["list", "-q"]),
        (commands.list_machines(running=True, quiet=True), ["list", "-r", "-q"]),
        (commands.list_machines(fmt="text"), ["list", "-f", "text"]),
        (commands.info("web-1"), ["info", "web-1", "-f", "json"]),
        (commands.info("01K2G8TY5GM9C3CN95KCB4ZG8B"), ["info", "01K2G8TY5GM9C3CN95KCB4ZG8B", "-f", "json"]),
        (commands.start("a1", "b2"), ["start", "a1", "b2"]),
        (commands.stop("a1"), ["stop", "a1"]),
        (commands.stop("a1", "b2", force=True), ["stop", "-f", "a1", "b2"]),
        (commands.restart("a1"), ["restart", "a1"]),
        (commands.delete("a1", "b2"), ["delete", "-f", "a1", "b2"]),
        (commands.delete("a1", "b2", "a1"), ["delete", "-f", "a1", "b2"]),
        (commands.delete("a1", force=False), ["delete", "a1"]),
        (commands.clone("base", "copy"), ["clone", "base", "copy"]),
        (commands.clone("base", "copy", orb_version=V20), ["clone", "base", "copy"]),
        (commands.rename("old", "new.name"), ["rename", "old", "new.name"]),
        (commands.logs("m1"), ["logs", "m1"]),
        (commands.logs("m1", all_logs=True), ["logs", "m1", "-a"]),
        (commands.push("m1", ["/tmp/a"]), ["push", "-m", "m1", "/tmp/a"]),
        (commands.push("m1", ["a", Path("b c")], "dest dir"), ["push", "-m", "m1", "a", "b c", "dest dir"]),
        (commands.pull("m1", ["/etc/os-release"], "."), ["pull", "-m", "m1", "/etc/os-release", "."]),
    ],
)
def test_simple_builders(built: list[str], expected: list[str]) -> None:
    assert built == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"image": "ubuntu"}, ["create", "ubuntu"]),
        ({"image": "ubuntu:22.04", "name": "web-1"}, ["create", "ubuntu:22.04", "web-1"]),
        (
            {"image": "ubuntu:22.04", "name": "NAME1", "arch": "amd64", "user": "tester"},
            ["create", "-a", "amd64", "-u", "tester", "ubuntu:22.04", "NAME1"],
        ),
        (
            {"image": "debian:bookworm", "name": "m.1", "user_data": Path("/tmp/cloud init.yaml")},
            ["create", "-c", "/tmp/cloud init.yaml", "debian:bookworm", "m.1"],
        ),
        (
            {"image": "alpine:3.20", "cpus": 2, "memory": "4G", "disk": "64G", "orb_version": V22},
            ["create", "--cpus", "2", "--memory", "4G", "--disk", "64G", "alpine:3.20"],
        ),
        ({"image": "fedora", "memory": "512M"}, ["create", "--memory", "512M", "fedora"]),
        ({"image": "fedora", "isolated": True, "orb_version": V21}, ["create", "--isolated", "fedora"]),
        ({"image": "fedora", "isolated": True}, ["create", "--isolated", "fedora"]),  # version unknown
        ({"image": "kali:kali-rolling", "arch": "i386"}, ["create", "-a", "i386", "kali:kali-rolling"]),
        ({"image": "ubuntu:99.04"}, ["create", "ubuntu:99.04"]),  # unknown version: orbctl's to reject
    ],
)
def test_create(kwargs: dict[str, Any], expected: list[str]) -> None:
    assert commands.create(**kwargs) == expected


def test_run_keeps_flags_before_command_and_never_sends_double_dash() -> None:
    argv = commands.run("web-1", ["sh", "-c", "echo $HOME; ls"], user="root", workdir="/srv")
    assert argv == ["run", "-m", "web-1", "-u", "root", "-w", "/srv", "sh", "-c", "echo $HOME; ls"]
    assert "--" not in argv
    assert commands.run("m1", ("true",)) == ["run", "-m", "m1", "true"]
    assert commands.run("m1", ["env", "--", "-x"]) == ["run", "-m", "m1", "env", "--", "-x"]


@pytest.mark.parametrize("nasty", NASTY)
def test_special_characters_stay_single_argv_items(nasty: str) -> None:
    assert commands.run("m1", ["echo", nasty], workdir=f"/srv/{nasty}")[-1] == nasty
    assert commands.run("m1", ["echo", nasty], workdir=f"/srv/{nasty}")[-3] == f"/srv/{nasty}"
    assert commands.push("m1", [f"/tmp/{nasty}"], f"/home/{nasty}")[-2:] == [
        f"/tmp/{nasty}",
        f"/home/{nasty}",
    ]
    user_data = f"/tmp/{nasty}.yaml"
    assert commands.create("ubuntu", "m1", user_data=user_data)[2] == user_data


@pytest.mark.parametrize(
    "image", ["alma", "rocky:9", "openeuler:24.03", "opensuse:tumbleweed", "nixos:24.05"]
)
def test_images_accepted(image: str) -> None:
    distro, _, version = image.partition(":")
    assert commands.parse_image(image) == (distro, version or None)


@pytest.mark.parametrize("alias", ["20.04", "22.04", "24.04", "24.10", "25.04"])
def test_ubuntu_aliases_accepted(alias: str) -> None:
    assert commands.parse_image(f"ubuntu:{alias}") == ("ubuntu", alias)
    assert commands.VERSION_ALIASES["ubuntu"][alias]


def test_constants() -> None:
    assert len(commands.DISTROS) == 16
    assert commands.VERSION_ALIASES["debian"]["12"] == "bookworm"
    assert commands.ARCHES == ("amd64", "arm64", "i386")
    assert commands.NAME_PATTERN.pattern == r"^[a-zA-Z0-9][a-zA-Z0-9-.]+$"
    assert {"default", "vm", "host", "services", "gateway", "k8s", "docker"} == commands.RESERVED_NAMES


@pytest.mark.parametrize(
    "name", ["ab", "a1", "01K2G8TY5GM9C3CN95KCB4ZG8B", "web-server", "x.y", "A-.9", "pytest-test-x0"]
)
def test_valid_names(name: str) -> None:
    assert commands.validate_name(name) == name


INVALID_NAMES = [
    "", "a", "-ab", ".ab", "a_b", "a b", "ab;", "ab$(x)", "ümlaut", "ab\n", "ab/c",
    "default", "vm", "host", "services", "gateway", "k8s", "docker", 12,
]  # fmt: skip


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names(name: Any) -> None:
    with pytest.raises(InvalidSpecError) as excinfo:
        commands.validate_name(name)
    message = str(excinfo.value)
    assert excinfo.value.field == "machine name"
    assert excinfo.value.value == name
    assert "letters, digits" in message
    assert "docker" in message
    assert "\n" not in message.replace(repr(name), "")


def expect_invalid(call: Callable[[], object], field: str) -> InvalidSpecError:
    with pytest.raises(InvalidSpecError) as excinfo:
        call()
    assert excinfo.value.field == field
    assert "\n" not in excinfo.value.allowed
    return excinfo.value


@pytest.mark.parametrize(
    ("call", "field"),
    [
        # images
        (lambda: commands.parse_image("windows"), "image"),
        (lambda: commands.parse_image("Ubuntu"), "image"),
        (lambda: commands.parse_image(""), "image"),
        (lambda: commands.parse_image("ubuntu:"), "image"),
        (lambda: commands.parse_image("ubuntu:22.04:x"), "image"),
        (lambda: commands.parse_image("ubuntu:-x"), "image"),
        (lambda: commands.parse_image("ubuntu:22 04"), "image"),
        (lambda: commands.parse_image("ubuntu:jammy;ls"), "image"),
        (lambda: commands.parse_image(None), "image"),
        (lambda: commands.create("centos:", "m1"), "image"),
        # arch
        (lambda: commands.validate_arch("x86_64"), "arch"),
        (lambda: commands.validate_arch("ARM64"), "arch"),
        (lambda: commands.create("ubuntu", arch="riscv64"), "arch"),
        # create options
        (lambda: commands.create("ubuntu", "default"), "machine name"),
        (lambda: commands.create("ubuntu", "a_b"), "machine name"),
        (lambda: commands.create("ubuntu", user="1000"), "user"),
        (lambda: commands.create("ubuntu", user="-u"), "user"),
        (lambda: commands.create("ubuntu", user="a" * 33), "user"),
        (lambda: commands.create("ubuntu", user="bob smith"), "user"),
        (lambda: commands.create("ubuntu", user_data=""), "user_data"),
        (lambda: commands.create("ubuntu", user_data="-c.yaml"), "user_data"),
        (lambda: commands.create("ubuntu", user_data="a\0b"), "user_data"),
        (lambda: commands.create("ubuntu", user_data=42), "user_data"),
        (lambda: commands.create("arch", user_data="/tmp/u.yaml"), "user_data"),
        (lambda: commands.create("gentoo", user_data="/tmp/u.yaml"), "user_data"),
        (lambda: commands.create("void:current", user_data="/tmp/u.yaml"), "user_data"),
        (lambda: commands.create("nixos", user_data="/tmp/u.yaml"), "user_data"),
        (lambda: commands.create("ubuntu", cpus=0), "cpus"),
        (lambda: commands.create("ubuntu", cpus=-2), "cpus"),
        (lambda: commands.create("ubuntu", cpus=1.5), "cpus"),
        (lambda: commands.create("ubuntu", cpus=True), "cpus"),
        (lambda: commands.create("ubuntu", cpus="2"), "cpus"),
        (lambda: commands.create("ubuntu", memory="4"), "memory"),
        (lambda: commands.create("ubuntu", memory="4GB"), "memory"),
        (lambda: commands.create("ubuntu", memory="0G"), "memory"),
        (lambda: commands.create("ubuntu", memory="-4G"), "memory"),
        (lambda: commands.create("ubuntu", memory=4096), "memory"),
        (lambda: commands.create("ubuntu", disk="64 G"), "disk"),
        (lambda: commands.create("ubuntu", disk="1.5G"), "disk"),
        # machine references
        (lambda: commands.info("-f"), "machine"),
        (lambda: commands.info("a b"), "machine"),
        (commands.start, "machines"),
        (lambda: commands.stop(force=True), "machines"),
        (lambda: commands.restart("ok1", "x"), "machine"),
        (commands.delete, "machines"),
        (lambda: commands.delete("ok1", "-a"), "machine"),
        (lambda: commands.clone("base", "vm"), "new machine name"),
        (lambda: commands.clone("-x", "copy"), "machine"),
        (lambda: commands.rename("old", "a_b"), "new machine name"),
        (lambda: commands.logs("m"), "machine"),
        # list
        (lambda: commands.list_machines(fmt="yaml"), "format"),
        # run
        (lambda: commands.run("m1", []), "command"),
        (lambda: commands.run("m1", "ls -l"), "command"),
        (lambda: commands.run("m1", None), "command"),
        (lambda: commands.run("m1", ["-c", "x"]), "command"),
        (lambda: commands.run("m1", ["--", "ls"]), "command"),
        (lambda: commands.run("m1", [""]), "command"),
        (lambda: commands.run("m1", ["echo", 3]), "command"),
        (lambda: commands.run("m1", ["echo", "a\0b"]), "command"),
        (lambda: commands.run("m_1", ["true"]), "machine"),
        (lambda: commands.run("m1", ["true"], user="0bad!"), "user"),
        (lambda: commands.run("m1", ["true"], workdir=""), "workdir"),
        (lambda: commands.run("m1", ["true"], workdir="-w"), "workdir"),
        # push / pull
        (lambda: commands.push("m1", []), "sources"),
        (lambda: commands.push("m1", "/tmp/a"), "sources"),
        (lambda: commands.push("m1", ["a", "b"]), "dest"),
        (lambda: commands.push("m1", ["-r"]), "source"),
        (lambda: commands.pull("m1", ["a"], "-x"), "dest"),
        (lambda: commands.pull("_m", ["a"]), "machine"),
    ],
)
def test_invalid_input_is_refused(call: Callable[[], object], field: str) -> None:
    expect_invalid(call, field)


def test_invalid_image_message_lists_what_is_allowed() -> None:
    error = expect_invalid(lambda: commands.parse_image("windows:11"), "image")
    assert str(error).startswith(
        "invalid image 'windows:11': DISTRO[:VERSION] with DISTRO one of alma, alpine"
    )
    version_error = expect_invalid(lambda: commands.parse_image("ubuntu:"), "image")
    assert "22.04" in str(version_error)
    arch_error = expect_invalid(lambda: commands.validate_arch("x86_64"), "arch")
    assert str(arch_error) == "invalid arch 'x86_64': one of amd64, arm64, i386"


def test_cloud_init_message_names_the_distros() -> None:
    error = expect_invalid(lambda: commands.create("arch", user_data="/tmp/u.yaml"), "user_data")
    assert "arch, gentoo, void, nixos" in str(error)


@pytest.mark.parametrize(
    ("call", "feature", "needed"),
    [
        (lambda v: commands.clone("a1", "b1", orb_version=v), "clone", "2.0.0"),
        (lambda v: commands.create("ubuntu", isolated=True, orb_version=v), "--isolated", "2.1.0"),
        (lambda v: commands.create("ubuntu", cpus=2, orb_version=v), "--cpus", "2.2.0"),
        (lambda v: commands.create("ubuntu", memory="4G", orb_version=v), "--memory", "2.2.0"),
        (lambda v: commands.create("ubuntu", disk="64G", orb_version=v), "--disk", "2.2.0"),
    ],
)
def test_version_gated_features(
    call: Callable[[OrbVersion | None], object], feature: str, needed: str
) -> None:
    too_old = OrbVersion(1, 9, 0) if feature == "clone" else OrbVersion(2, 0, 4)
    with pytest.raises(UnsupportedFeatureError) as excinfo:
        call(too_old)
    assert (excinfo.value.feature, excinfo.value.needed, excinfo.value.found) == (
        feature,
        needed,
        str(too_old),
    )
    assert f"needs OrbStack >= {needed}" in str(excinfo.value)
    call(OrbVersion(2, 2, 0))  # new enough
    call(OrbVersion(3, 0, 0))
    call(None)  # unknown version: orbctl decides


def test_isolated_on_2_1_but_limits_not() -> None:
    assert "--isolated" in commands.create("ubuntu", isolated=True, orb_version=V21)
    with pytest.raises(UnsupportedFeatureError):
        commands.create("ubuntu", isolated=True, cpus=1, orb_version=V21)
    with pytest.raises(UnsupportedFeatureError):
        commands.clone("a1", "b1", orb_version=V19)


def test_builders_are_pure_and_return_fresh_lists() -> None:
    first = commands.list_machines()
    first.append("mutated")
    assert commands.list_machines() == ["list", "-f", "json"]
    assert commands.status() is not commands.status()
