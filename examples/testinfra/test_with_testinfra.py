"""pytest-testinfra assertions on OrbStack machines: ``machine.host`` is a testinfra ``Host``.

A small "service" is deployed (a package from a local .deb, a config file,
a system user and a server process listening on a port) and then checked the
testinfra way: package, file, user, process, socket and command.  Once on the
per-worker ``orb_vm``, once on a fresh machine.

Run:  pip install 'pytest-orbstack[testinfra]' && pytest examples/testinfra -n 3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_orbstack import Machine

pytest.importorskip("testinfra", reason="needs pytest-testinfra: pip install 'pytest-orbstack[testinfra]'")

PORT = 8765
CONFIG = f"greeting = hello from orb-hello\nport = {PORT}\n"
SERVER = (
    f"ss -ltn | grep -q ':{PORT} ' || "
    f"(cd /srv/hello && nohup python3 -m http.server {PORT} --bind 127.0.0.1 >/dev/null 2>&1 </dev/null &)"
)
WAIT_LISTENING = f"for i in $(seq 100); do ss -ltn | grep -q ':{PORT} ' && exit 0; sleep 0.1; done; exit 1"


def deploy(machine: Machine, deb: Path) -> None:
    """Install the package, write the config, add the user and start the server (idempotent)."""
    machine.push(deb, "/tmp/orb-hello.deb")
    machine.run(["dpkg", "-i", "/tmp/orb-hello.deb"], user="root")
    machine.write_text("/etc/orb-hello.conf", CONFIG, user="root")
    machine.run(
        "id -u hello >/dev/null 2>&1 || useradd --system --create-home --home-dir /srv/hello "
        "--shell /bin/sh hello",
        user="root",
    )
    machine.run(SERVER, user="hello")
    machine.run(WAIT_LISTENING)


@pytest.fixture(scope="module")
def host(orb_vm: Machine, hello_deb: Path) -> Any:
    """The testinfra host of this worker's machine, with the service deployed.

    (It takes the name of testinfra's own ``host`` fixture, which ``--hosts`` feeds.)
    """
    deploy(orb_vm, hello_deb)
    return orb_vm.host


def test_package_is_installed(host: Any) -> None:
    package = host.package("orb-hello")
    assert package.is_installed
    assert package.version == "1.0"


def test_config_file(host: Any) -> None:
    config = host.file("/etc/orb-hello.conf")
    assert config.is_file
    assert config.user == "root"
    assert config.mode == 0o644
    assert config.contains("^greeting = hello")


def test_user(host: Any) -> None:
    user = host.user("hello")
    assert user.exists
    assert user.home == "/srv/hello"
    assert host.file("/srv/hello").user == "hello"


def test_server_process_and_socket(host: Any) -> None:
    servers = host.process.filter(user="hello", comm="python3")
    assert len(servers) == 1
    assert f"http.server {PORT}" in servers[0].args
    assert host.socket(f"tcp://127.0.0.1:{PORT}").is_listening
    assert not host.socket("tcp://0.0.0.0:8766").is_listening


def test_command_output(host: Any) -> None:
    assert host.check_output("orb-hello") == "hello from orb-hello"
    assert host.run("orb-hello --no-such-flag; exit 3").rc == 3
    assert host.exists("orb-hello")


def test_sudo_as_the_default_user(host: Any, orb_vm: Machine) -> None:
    assert host.user().name == orb_vm.user
    with host.sudo():
        assert host.user().name == "root"
        assert host.file("/etc/shadow").is_file
        with host.sudo("hello"):
            assert host.check_output("id -un") == "hello"


def test_fresh_machine_before_and_after_deploy(orb_vm_fresh: Machine, hello_deb: Path) -> None:
    host = orb_vm_fresh.host
    assert not host.package("orb-hello").is_installed
    assert not host.socket(f"tcp://127.0.0.1:{PORT}").is_listening

    deploy(orb_vm_fresh, hello_deb)

    assert host.package("orb-hello").is_installed
    assert host.file("/etc/orb-hello.conf").content_string == CONFIG
    assert host.user("hello").exists
    assert host.socket(f"tcp://127.0.0.1:{PORT}").is_listening
    assert host.check_output("orb-hello") == "hello from orb-hello"


def test_host_as_root(orb_vm: Machine) -> None:
    root = orb_vm.testinfra_host("root")
    assert root.user().name == "root"
    assert root.check_output("id -u") == "0"
