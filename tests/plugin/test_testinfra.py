"""pytest-testinfra against orbsim machines: the ``orb://`` backend, ``Machine.host``, ``--hosts``.

Inner runs use ``ORBSIM_USER=alice``: the default user is not root and has
passwordless sudo, as on a Mac.  One run without testinfra importable shows
that the plugin does not need it.
"""

from __future__ import annotations

import importlib.util
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Callable

import pytest

needs_testinfra = pytest.mark.skipif(
    importlib.util.find_spec("testinfra") is None, reason="pytest-testinfra is not installed"
)

INNER = r"""
import pytest
import testinfra
from pytest_orbstack import MachineNotFoundError, OrbctlTimeoutError

WEIRD = "it's \"quoted\" $HOME `echo no` \\ back\nline two\tünïcode €😀 %s"


def test_exact_exit_code_and_output_bytes(orb_vm):
    host = orb_vm.host
    result = host.run("printf 'out\\n\\377raw'; printf 'err\\n' >&2; exit 7")
    assert (result.rc, result.stdout_bytes, result.stderr_bytes) == (7, b"out\n\xffraw", b"err\n")
    silent = host.run("exit 1")  # a silent exit 1 of the command is the command's, not orbctl's
    assert (silent.rc, silent.stdout, silent.stderr) == (1, "", "")
    said = host.run("echo no such thing >&2; exit 1")
    assert (said.rc, said.stderr) == (1, "no such thing\n")


def test_commands_join_the_machine_history(orb_vm):
    orb_vm.host.run("exit 4")
    last = orb_vm.history[-1]
    assert (last.command, last.returncode) == ("sh -c 'exit 4'", 4)


def test_quotes_dollars_newlines_and_unicode_survive(orb_vm):
    host = orb_vm.host
    assert host.run("printf '%%s' %s", WEIRD).stdout == WEIRD  # testinfra's own quoting of arguments
    raw = host.run("echo \"a'b\" '$HOME' \"$HOME\"\nprintf 'l1\\nl2\\n'; echo ünï €😀")
    assert raw.stdout == "a'b $HOME /home/alice\nl1\nl2\nünï €😀\n"
    host.run("printf '%%s' %s > /tmp/weird.txt", WEIRD)
    assert host.file("/tmp/weird.txt").content_string == WEIRD


def test_sudo_from_the_default_user(orb_vm):
    host = orb_vm.host
    assert host.user().name == orb_vm.user == "alice"
    with host.sudo():
        assert host.user().name == "root"
        assert host.run("cat /etc/shadow").rc == 0
        with host.sudo("alice"):
            assert host.check_output("id -un") == "alice"
    assert host.check_output("whoami") == "alice"
    assert host.run("cat /etc/shadow").rc != 0


def test_root_host_and_sudo_to_another_user(orb_vm):
    root = orb_vm.testinfra_host("root")
    assert root.backend.get_pytest_id() == f"orb://root@{orb_vm.name}"
    assert root.user().name == "root"
    with root.sudo():
        assert root.check_output("id -u") == "0"
    with root.sudo("alice"):
        assert root.check_output("id -un") == "alice"
    assert orb_vm.testinfra_host("root") is root and orb_vm.host is orb_vm.testinfra_host()


def test_get_host_by_spec_with_a_timeout(orb_vm):
    host = testinfra.get_host(f"orb://{orb_vm.name}?timeout=2")
    assert host.check_output("hostname") == orb_vm.name
    with pytest.raises(OrbctlTimeoutError):
        host.run("sleep 30")


def test_missing_machine_says_testinfras_text_and_ours():
    host = testinfra.get_host("orb://no-such-machine")
    with pytest.raises(MachineNotFoundError) as excinfo:
        host.file("/etc/hostname").exists
    message = str(excinfo.value)
    assert message.startswith("Unexpected exit code 1 for CommandResult(")
    assert (
        "orb://no-such-machine: machine 'no-such-machine' does not exist "
        "(orbctl: [-32098] machine not found: 'no-such-machine'); check the name with 'orbctl list'"
    ) in message


def test_fresh_machine_then_deleted(orb_vm_fresh):
    host = orb_vm_fresh.host
    assert host.file("/etc/hostname").content_string == orb_vm_fresh.name + "\n"
    orb_vm_fresh.delete()
    with pytest.raises(MachineNotFoundError, match="does not exist"):
        host.file("/etc/hostname").exists


def test_each_machine_of_the_factory_has_its_host(orb_machines):
    first, second = orb_machines.create_many(2)
    assert first.host.check_output("hostname") == first.name
    assert second.host.check_output("hostname") == second.name
"""

HOSTS = r"""
import os

def test_hostname(host):
    assert host.backend.get_connection_type() == "orb"
    assert host.check_output("hostname") == os.environ["MACHINE"]
    with host.sudo():
        assert host.user().name == "root"
"""

WITHOUT_TESTINFRA = r"""
import pytest

def test_machine_works_and_host_says_what_to_install(orb_vm):
    assert orb_vm.run("echo hi").stdout == "hi\n"
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'pytest-orbstack\[testinfra\]'"):
        orb_vm.host
"""

# Runs pytest with a copy of site-packages (symlinks) that lacks pytest-testinfra, as if not installed.
NO_TESTINFRA_MAIN = r"""
import os
import sys

shadow = sys.argv.pop(1)
site = next(p for p in sys.path if os.path.isdir(os.path.join(p, "testinfra")))
os.makedirs(shadow)
for entry in os.listdir(site):
    if entry != "testinfra" and not entry.startswith("pytest_testinfra"):
        os.symlink(os.path.join(site, entry), os.path.join(shadow, entry))
sys.path[sys.path.index(site)] = shadow

import pytest

sys.exit(pytest.main(["-p", "no:cacheprovider", *sys.argv[1:]]))
"""


@pytest.fixture
def alice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Machines of the inner runs get the non-root default user ``alice``."""
    monkeypatch.setenv("ORBSIM_USER", "alice")


@needs_testinfra
@pytest.mark.usefixtures("alice")
def test_machine_host_on_every_fixture(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = run_pytest("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=9)
    assert_no_leftovers()


@pytest.fixture
def machine(orbsim_bin: str, orbsim_machines: Callable[[str], list[str]], alice: None) -> Iterator[str]:
    """A machine made with orbsim by the test itself (not by the plugin)."""
    name = f"ti-hosts-{secrets.token_hex(3)}"
    subprocess.run([orbsim_bin, "create", "debian:bookworm", name], check=True, timeout=300)
    try:
        yield name
    finally:
        subprocess.run([orbsim_bin, "delete", "-f", name], check=True, timeout=120)
    assert orbsim_machines("ti-hosts-") == []


@needs_testinfra
def test_hosts_option_from_the_command_line(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    machine: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makepyfile(test_hosts=HOSTS)
    monkeypatch.setenv("MACHINE", machine)
    result = run_pytest("-v", f"--hosts=orb://{machine},orb://alice@{machine}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random(
        [f"*test_hostname?orb://{machine}? PASSED*", f"*test_hostname?orb://alice@{machine}? PASSED*"]
    )


def test_without_testinfra_nothing_breaks(
    pytester: pytest.Pytester, assert_no_leftovers: Callable[..., None]
) -> None:
    pytester.makepyfile(test_plain=WITHOUT_TESTINFRA)
    main = pytester.path / "no_testinfra_main.py"
    main.write_text(NO_TESTINFRA_MAIN)
    shadow = pytester.path / "site-packages"
    result = pytester.run(
        sys.executable, str(main), str(shadow), "test_plain.py", "-p", "no:randomly", timeout=600
    )
    result.assert_outcomes(passed=1)
    assert "testinfra" not in "".join(result.stderr.lines)
    assert "testinfra" not in next(line for line in result.stdout.lines if line.startswith("plugins:"))
    assert_no_leftovers()
