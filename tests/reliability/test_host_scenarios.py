"""One run over several hosts: each host keeps, purges and cleans up its own machines.

Two "hosts" on this one machine: xdist ``popen`` workers with an ``ORBSIM_HOME``
and a ``PYTEST_ORBSTACK_STATE_DIR`` of their own (``--tx 2*popen//env:...``),
as workers on two Macs have an OrbStack and a state directory each.  The
controller has a third orbsim home, which must see no call at all.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import PREFIX, Scenario, poll, watchdogs_of

from pytest_orbstack import naming

#: PATH without this project's virtualenv (no orbctl, no orbsim there)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MACHINES = """
    import os, time
    from pathlib import Path
    import pytest

    @pytest.mark.parametrize("i", range(int(os.environ.get("COUNT", "4"))))
    def test_machine(i, orb_vm_fresh):
        marker = Path(os.environ["SCENARIO_DIR"], f"ready-{os.getpid()}-{i}")
        marker.write_text(os.environ["ORBSIM_HOME"] + " " + orb_vm_fresh.name)
        time.sleep(float(os.environ.get("HOLD", "0.2")))
        assert orb_vm_fresh.run(["true"]).returncode == 0
"""


class Host:
    """One pretend host: its orbsim home and its state directory."""

    def __init__(self, scenario: Scenario, name: str) -> None:
        self.scenario = scenario
        self.name = name
        self.home = scenario.markers.parent / f"host-{name}"
        self.state_dir = scenario.markers.parent / f"state-{name}"

    def tx(self, workers: int = 2, python: str = "", **env: str) -> list[str]:
        spec = f"{workers}*popen//env:ORBSIM_HOME={self.home}//env:PYTEST_ORBSTACK_STATE_DIR={self.state_dir}"
        spec += f"//python={python}" if python else ""
        spec += "".join(f"//env:{key}={value}" for key, value in env.items())
        return ["--tx", spec]

    def orbsim(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.scenario.env, "ORBSIM_HOME": str(self.home)}
        env.pop("ORBSIM_FAULTS", None)
        return subprocess.run(
            [self.scenario.orbsim_bin, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    def machines(self, prefix: str = PREFIX) -> list[str]:
        listed = json.loads(self.orbsim("list", "-f", "json").stdout)
        return sorted(m["name"] for m in listed if m["name"].startswith(prefix))

    def calls(self, command: str) -> list[list[str]]:
        log = self.home / "argv.log"
        if not log.exists():
            return []
        argvs = [json.loads(line)[1:] for line in log.read_text().splitlines() if line.strip()]
        return [argv for argv in argvs if argv and argv[0] == command]

    def reaper_log(self) -> str:
        log = self.state_dir / "reaper.log"
        return log.read_text() if log.exists() else ""

    def assert_empty(self, within: float = 10.0) -> None:
        left: list[str] = []

        def empty() -> bool:
            left[:] = self.machines()
            return not left

        assert poll(empty, within, 0.1), f"host {self.name} still lists {left}\n{self.reaper_log()}"

    def cleanup(self) -> None:
        for pid in watchdogs_of(self.state_dir):
            os.kill(pid, signal.SIGKILL)  # started by our runs; a leftover is already a failure
        if self.home.exists():
            subprocess.run(
                [self.scenario.orbsim_bin, "reset"],
                env={**self.scenario.env, "ORBSIM_HOME": str(self.home)},
                capture_output=True,
                timeout=120,
                check=False,
            )


@pytest.fixture
def two_hosts(scenario: Scenario) -> Iterator[tuple[Host, Host]]:
    hosts = (Host(scenario, "a"), Host(scenario, "b"))
    yield hosts
    scenario.cleanup()  # the runs first: their workers may still hold machines
    for host in hosts:
        host.cleanup()


def _python_without_orbsim(directory: Path) -> str:
    """This test's Python and packages, from a directory with no orbsim beside the interpreter."""
    venv = Path(sys.prefix)
    (directory / "bin").mkdir(parents=True)
    shutil.copy(venv / "pyvenv.cfg", directory / "pyvenv.cfg")
    (directory / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
    (directory / "lib").symlink_to(venv / "lib")
    return str(directory / "bin" / "python")


def _worker_pids(scenario: Scenario, host: Host) -> set[int]:
    """Pids of the workers whose tests held a machine of ``host`` (from the markers' names)."""
    return {
        int(marker.name.split("-")[1])
        for marker in scenario.ready_markers()
        if marker.read_text().split()[0] == str(host.home)
    }


def _run_id(name: str) -> str:
    return name[len(PREFIX) :].split("-", maxsplit=1)[0]


def _held(scenario: Scenario) -> dict[str, set[str]]:
    """orbsim home -> names of the machines the inner tests held."""
    found: dict[str, set[str]] = {}
    for marker in scenario.ready_markers():
        home, name = marker.read_text().split()
        found.setdefault(home, set()).add(name)
    return found


def test_each_host_makes_and_deletes_its_own_machines(
    scenario: Scenario, two_hosts: tuple[Host, Host]
) -> None:
    a, b = two_hosts
    scenario.write_tests(MACHINES)
    code, output = scenario.run("--dist", "load", *a.tx(), *b.tx(), "-v", env={"COUNT": "8"})
    assert code == 0, output
    assert "8 passed" in output
    held = _held(scenario)
    assert set(held) == {str(a.home), str(b.home)}, held
    for host in (a, b):
        names = held[str(host.home)]
        made = {argv[-1] for argv in host.calls("create") + host.calls("clone")}
        assert names <= made, (names, made)  # made by this host's orbctl
        runs = {_run_id(name) for name in names}
        assert len(runs) == 1, names  # one host run id, shared by the host's two workers
        owner = naming.owner_of(runs.pop())
        assert owner is not None
        assert owner[0] in _worker_pids(scenario, host)  # owned by a worker of that host
        host.assert_empty()
        assert not watchdogs_of(host.state_dir)
        assert not list((host.state_dir / "runs").glob("*.json"))  # the host's lease is gone
        assert sorted(p.name for p in (host.state_dir / "runs").iterdir()) == []  # and its pins
    assert {_run_id(n) for n in held[str(a.home)]} != {_run_id(n) for n in held[str(b.home)]}
    assert scenario.argv_log() == []  # the controller never ran orbctl on its own host
    summary = [line for line in output.splitlines() if line.startswith("host ")]
    assert len(summary) == 2, output
    for host in (a, b):
        line = next(line for line in summary if str(host.state_dir) in line)
        count = len(held[str(host.home)])  # the tests' machines (a base made for cloning is not counted)
        assert f": {count} created, {count} deleted" in line, (line, count)


@pytest.mark.parametrize("gateway", ["popen", "ssh"])
def test_sigkill_of_the_controller_empties_both_hosts(
    scenario: Scenario, two_hosts: tuple[Host, Host], gateway: str, request: pytest.FixtureRequest
) -> None:
    a, b = two_hosts
    scenario.write_tests(MACHINES)
    run_env = {"COUNT": "2", "HOLD": "120"}
    tx_b = _ssh_tx(scenario, b, request.getfixturevalue("sshd"), run_env) if gateway == "ssh" else b.tx(1)
    run = scenario.start("--dist", "load", *a.tx(1), *tx_b, env=run_env)
    scenario.wait_ready(2, run, within=90)
    held = _held(scenario)
    assert set(held) == {str(a.home), str(b.home)}, held
    assert a.machines()
    assert b.machines()
    run.signal(signal.SIGKILL)
    killed = time.monotonic()
    assert run.wait() == -signal.SIGKILL
    for host in (a, b):
        host.assert_empty(within=10.0)
    print(f"both hosts empty {time.monotonic() - killed:.1f}s after the controller's SIGKILL ({gateway})")
    scenario.assert_group_gone(run)
    for host in (a, b):
        assert poll(lambda host=host: not watchdogs_of(host.state_dir), 10.0), host.reaper_log()


def test_a_controller_without_orbstack_drives_two_hosts(
    scenario: Scenario, two_hosts: tuple[Host, Host]
) -> None:
    a, b = two_hosts
    scenario.write_tests(MACHINES)
    # the controller: no orbctl on PATH, no ORBCTL, no orbsim beside its python (a Linux CI box)
    python = _python_without_orbsim(scenario.markers.parent / "controller-python")
    orbctl = {"ORBCTL": scenario.env["ORBCTL"]}
    run = scenario.start(
        "--dist",
        "load",
        *a.tx(1, **orbctl),
        *b.tx(1, **orbctl),
        "-v",
        env={"COUNT": "4", "PATH": SYSTEM_PATH},
        unset=("ORBCTL",),
        python=python,
    )
    assert run.wait() == 0, run.output
    assert "orbstack: orbctl not found (tests that need a machine will error)" in run.output  # the header
    assert "4 passed" in run.output
    assert set(_held(scenario)) == {str(a.home), str(b.home)}
    for host in (a, b):
        host.assert_empty()
    assert len([line for line in run.output.splitlines() if line.startswith("host ")]) == 2, run.output


def test_the_hosts_watchdog_deletes_its_machines_when_the_elected_worker_dies(
    scenario: Scenario, two_hosts: tuple[Host, Host]
) -> None:
    a, b = two_hosts
    scenario.write_tests(MACHINES)
    run = scenario.start(
        "--dist", "load", "--max-worker-restart", "0", *a.tx(1), *b.tx(1), env={"COUNT": "2", "HOLD": "120"}
    )
    scenario.wait_ready(2, run, within=90)
    (worker,) = _worker_pids(scenario, a)
    held = a.machines()
    assert held
    os.kill(worker, signal.SIGKILL)  # host a's only worker, started by our run
    a.assert_empty(within=10.0)  # by host a's watchdog: nobody else there is left to do it
    # its log line comes once it stopped purging (after its linger)
    assert poll(lambda: "machines deleted: " in a.reaper_log(), 10.0), a.reaper_log()
    assert all(name in a.reaper_log() for name in held), (held, a.reaper_log())
    assert b.machines()  # host b's run goes on
    run.signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    b.assert_empty(within=10.0)
    scenario.assert_group_gone(run)


def test_a_host_without_orbctl_errors_its_tests_and_the_other_host_passes(
    scenario: Scenario, two_hosts: tuple[Host, Host]
) -> None:
    a, b = two_hosts
    scenario.write_tests(MACHINES)
    # host a: no orbctl on PATH, no ORBCTL, and no orbsim beside its python (a Mac without OrbStack)
    python = _python_without_orbsim(scenario.markers.parent / "host-a-python")
    no_orbctl = a.tx(1, python=python, PATH=SYSTEM_PATH, ORBCTL="")
    code, output = scenario.run(
        "--dist", "load", *no_orbctl, *b.tx(1), "-rE", env={"COUNT": "6", "COLUMNS": "400"}
    )
    assert code == 1, output
    errors = [line for line in output.splitlines() if line.startswith("ERROR ")]
    assert errors, output
    assert len({line.split(" - ", 1)[1] for line in errors}) == 1, errors  # one clear message
    assert f"Failed: on host {socket.gethostname()}: orbctl not found" in errors[0], errors
    held = _held(scenario)
    assert list(held) == [str(b.home)], held  # every test that had a machine ran on host b
    assert len(held[str(b.home)]) == 6 - len(errors), (held, errors)
    print(errors[0])
    assert f"{len(errors)} error" in output, output
    assert f"{6 - len(errors)} passed" in output, output
    assert not (a.home / "argv.log").exists()  # host a has no orbctl: nothing ran there
    assert b.calls("create") or b.calls("clone")
    b.assert_empty()
    assert scenario.argv_log() == []


def test_reuse_keeps_a_base_on_each_host(scenario: Scenario, two_hosts: tuple[Host, Host]) -> None:
    a, b = two_hosts
    scenario.write_tests(MACHINES)
    args = ("--dist", "load", *a.tx(1), *b.tx(1), "--orb-reuse")
    code, output = scenario.run(*args, env={"COUNT": "4"})
    assert code == 0, output
    kept = {host.name: host.machines(naming.REUSE_PREFIX) for host in (a, b)}
    assert len(kept["a"]) == 1, kept  # each host built its own base, on its own OrbStack
    assert kept["a"] == kept["b"], kept  # same spec, same name: one per host
    creates = {host.name: len(host.calls("create")) for host in (a, b)}
    code, output = scenario.run(*args, env={"COUNT": "4"})
    assert code == 0, output
    assert {host.name: len(host.calls("create")) for host in (a, b)} == creates  # both reused
    for host in (a, b):
        assert host.machines(naming.REUSE_PREFIX) == kept[host.name]
        host.assert_empty()


def test_a_host_whose_backend_cannot_be_prepared_errors_its_tests_once_each(
    scenario: Scenario, two_hosts: tuple[Host, Host]
) -> None:
    a, b = two_hosts
    scenario.write_tests(MACHINES)
    no_image = {"ORBSIM_IMAGE_DIR": str(scenario.markers.parent / "no-image"), "ORBSIM_IMAGE_AUTOBUILD": "0"}
    code, output = scenario.run(
        "--dist", "load", *a.tx(2, **no_image), *b.tx(1), "-rE", env={"COUNT": "6", "COLUMNS": "400"}
    )
    assert code == 1, output
    assert "INTERNALERROR" not in output
    errors = [line for line in output.splitlines() if line.startswith("ERROR ")]
    assert errors, output
    assert len({line.split(" - ", 1)[1] for line in errors}) == 1, errors  # the elected worker's reason
    assert f"Failed: on host {socket.gethostname()}: orbsim" in errors[0], errors
    held = _held(scenario)
    assert list(held) == [str(b.home)], held
    assert len(held[str(b.home)]) == 6 - len(errors), (held, errors)
    assert not a.calls("create")
    b.assert_empty()


def test_a_dead_runs_leftover_on_b_is_purged_only_by_a_run_that_reaches_b(
    scenario: Scenario, two_hosts: tuple[Host, Host]
) -> None:
    a, b = two_hosts
    scenario.write_tests(MACHINES)
    # a dead run's machine on host b: its owner process ended
    owner = subprocess.Popen(["sleep", "0"])
    owner.wait()
    dead = naming.machine_name(PREFIX, naming.new_run_id(owner.pid, "0"), "gw0")
    b.orbsim("create", "ubuntu:22.04", dead)
    calls = len(b.calls("list")) + len(b.calls("delete"))
    code, output = scenario.run("--dist", "load", *a.tx(1), env={"COUNT": "1"})
    assert code == 0, output
    assert len(b.calls("list")) + len(b.calls("delete")) == calls  # a run with host a only never asks b
    assert b.machines() == [dead]
    code, output = scenario.run("--dist", "load", *a.tx(1), *b.tx(1), "-v", env={"COUNT": "2"})
    assert code == 0, output
    assert f"of dead runs: {dead}" in output
    b.assert_empty()
    a.assert_empty()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Path]:
    """An sshd on 127.0.0.1 (a free port) that lets in a throwaway key; the ssh_config to reach it."""
    program = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.access(program, os.X_OK):
        pytest.fail("sshd is missing: install Debian's openssh-server (.ci/run does)", pytrace=False)
    directory = tmp_path / "sshd"
    directory.mkdir(mode=0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)],
            check=True,
            timeout=30,
        )
    shutil.copy(directory / "client_key.pub", directory / "authorized_keys")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nPidFile {directory / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = open(directory / "sshd.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen([program, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    client = directory / "ssh_config"
    client.write_text(
        f"Host *\n  IdentityFile {directory / 'client_key'}\n  IdentitiesOnly yes\n  BatchMode yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, (directory / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not listen within 10 s"
            time.sleep(0.05)
        (directory / "port").write_text(str(port))
        yield client
    finally:
        server.terminate()  # our own child, by its pid
        server.wait(10)
        log.close()


def _ssh_tx(scenario: Scenario, host: Host, ssh_config: Path, run_env: dict[str, str]) -> list[str]:
    """``--tx`` of one worker on ``host`` through a real ssh connection to 127.0.0.1.

    An ssh session starts with a fresh environment: the run's variables go in ``env:``.
    """
    port = (ssh_config.parent / "port").read_text()
    env = {
        "ORBSIM_HOME": str(host.home),
        "PYTEST_ORBSTACK_STATE_DIR": str(host.state_dir),
        "ORBCTL": scenario.env["ORBCTL"],
        "SCENARIO_DIR": str(scenario.markers),
        "PATH": os.environ["PATH"],
        **run_env,
    }
    spec = f"ssh=-p {port} {getpass.getuser()}@127.0.0.1//ssh_config={ssh_config}//python={sys.executable}"
    spec += f"//chdir={scenario.pytester.path}" + "".join(f"//env:{k}={v}" for k, v in env.items())
    return ["--tx", spec]


def test_a_host_behind_a_real_ssh_gateway(
    scenario: Scenario, two_hosts: tuple[Host, Host], sshd: Path
) -> None:
    a, b = two_hosts
    scenario.write_tests(MACHINES)
    ssh = _ssh_tx(scenario, b, sshd, {"COUNT": "4"})
    code, output = scenario.run("--dist", "load", *a.tx(1), *ssh, "-v", env={"COUNT": "4"})
    assert code == 0, output
    assert "4 passed" in output
    held = _held(scenario)
    assert set(held) == {str(a.home), str(b.home)}, held
    for host in (a, b):
        assert held[str(host.home)] <= {argv[-1] for argv in host.calls("create") + host.calls("clone")}
        host.assert_empty()
    summary = [line for line in output.splitlines() if line.startswith("host ")]
    assert len(summary) == 2, output
    assert scenario.argv_log() == []
    print("\n".join(summary), sorted(p.name for p in scenario.pytester.path.iterdir()))
