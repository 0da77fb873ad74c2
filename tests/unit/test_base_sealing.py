"""What happens on a machine made with user-data and on a base before it is stopped, with fake clients.

cloud-init is checked after create (exit 1 fails, exit 2 warns, no cloud-init
is an error); a base is sealed (machine-id emptied, as root) right before it is
stopped; provision hooks that name /tmp or /run get one warning per process.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

import pytest
from fakes import Hooks, ScriptedOrb, machine_on, make, reply, worker

from pytest_orbstack import cloudinit
from pytest_orbstack.basebuild import SEAL, VolatileProvisionWarning
from pytest_orbstack.basestore import BaseBuildError
from pytest_orbstack.errors import OrbctlTimeoutError
from pytest_orbstack.machine import Machine
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.provisioner import Provisioner
from pytest_orbstack.readiness import PROBE

FAILED_STATUS = "status: error\nextended_status: error - done\nerrors:\n\t('scripts_user', RuntimeError())\n"
LOG_TAIL = "+ false\nCloud-init v. 24.1 finished: with errors\n"


def answering(answers: Optional[dict[tuple[str, ...], Any]] = None) -> ScriptedOrb:
    """The shared client whose ``run`` answers by command (argv tuple -> (exit code, stdout) or an
    error; any other command exits 0 and prints nothing)."""
    orb = ScriptedOrb()
    run = orb.unscripted("run")

    def answer(machine: str, command: list[str], **kwargs: Any) -> Any:
        run(machine, command, **kwargs)  # a stopped machine starts, as on orbctl run
        found = (answers or {}).get(tuple(command), (0, ""))
        if isinstance(found, Exception):
            raise found
        code, out = found
        return reply(code, out, machine=machine)

    return orb.on("run", answer)


def runs(orb: ScriptedOrb) -> list[tuple[tuple[str, ...], Optional[str], Optional[str]]]:
    """Each command run so far: (argv, user, workdir)."""
    return [
        (tuple(call.command), call.kwargs.get("user"), call.kwargs.get("workdir"))
        for call in orb.asked("run")
    ]


def commands(orb: ScriptedOrb) -> list[tuple[str, ...]]:
    """The commands run so far, the readiness probe left out."""
    return [argv for argv, _, _ in runs(orb) if argv != PROBE]


def _user_data(tmp_path: Path) -> str:
    path = tmp_path / "cloud.yaml"
    path.write_text("#cloud-config\nruncmd: [false]\n")
    return str(path)


def _create_only(orb: ScriptedOrb, hooks: Optional[Hooks] = None) -> Provisioner:
    return make(orb, hooks, retries=0)


LOG_TAIL_ARGV = ("tail", "-n", str(cloudinit.LOG_LINES), cloudinit.LOG)


# --- cloud-init -------------------------------------------------------------------------------


def test_cloud_init_is_checked_as_root_after_create(tmp_path: Path) -> None:
    orb = answering()
    machine = _create_only(orb).obtain(MachineSpec("ubuntu:22.04", user_data=_user_data(tmp_path)))
    assert (cloudinit.STATUS, "root", "/") in runs(orb)
    assert orb.machines == {machine.name: "running"}


def test_no_cloud_init_check_without_user_data() -> None:
    orb = answering()
    _create_only(orb).obtain(MachineSpec("ubuntu:22.04"))
    assert cloudinit.STATUS not in commands(orb)


def test_a_failed_cloud_init_fails_with_the_status_and_the_log_tail_and_deletes_the_machine(
    tmp_path: Path,
) -> None:
    orb = answering({cloudinit.STATUS: (1, FAILED_STATUS), LOG_TAIL_ARGV: (0, LOG_TAIL)})
    hooks = Hooks()
    with pytest.raises(cloudinit.CloudInitError) as excinfo:
        _create_only(orb, hooks).obtain(MachineSpec("ubuntu:22.04", user_data=_user_data(tmp_path)))
    message = str(excinfo.value)
    assert message.splitlines()[0].endswith(": it failed (exit 1): fix the user-data")
    assert "status: error" in message
    assert "Cloud-init v. 24.1 finished: with errors" in message
    assert f"last lines of {cloudinit.LOG}" in message
    assert orb.machines == {}  # deleted
    assert hooks.events == []  # never provisioned


def test_a_degraded_cloud_init_warns_and_reports_and_the_machine_is_used(tmp_path: Path) -> None:
    orb = answering({cloudinit.STATUS: (2, "status: done\nextended_status: degraded done\n")})
    p = _create_only(orb)
    with pytest.warns(cloudinit.CloudInitWarning, match="degraded done"):
        machine = p.obtain(MachineSpec("ubuntu:22.04", user_data=_user_data(tmp_path)))
    assert orb.machines == {machine.name: "running"}
    lines = [line for _, line in p.stats.take_events()]
    assert f"cloud-init on {machine.name} finished degraded (exit 2: recoverable errors)" in lines[0]


def test_a_missing_cloud_init_is_a_clear_error(tmp_path: Path) -> None:
    orb = answering({cloudinit.STATUS: (127, "")})
    with pytest.raises(cloudinit.CloudInitError, match="the machine has no cloud-init"):
        _create_only(orb).obtain(MachineSpec("ubuntu:22.04", user_data=_user_data(tmp_path)))
    assert orb.machines == {}


def test_cloud_init_that_never_finishes_names_the_option(tmp_path: Path) -> None:
    orb = answering({cloudinit.STATUS: OrbctlTimeoutError(["orbctl", "run"], 10)})
    with pytest.raises(cloudinit.CloudInitError, match="raise --orb-ready-timeout"):
        _create_only(orb).obtain(MachineSpec("ubuntu:22.04", user_data=_user_data(tmp_path)))
    assert orb.machines == {}


def test_cloud_init_wait_is_what_is_left_of_the_ready_timeout() -> None:
    orb = answering()
    orb.machines["m1"] = "running"
    vm = machine_on(orb, "m1", MachineSpec("ubuntu"))
    cloudinit.check(vm, 42.0)
    cloudinit.check(vm, -3.0)  # readiness used it all: still a short wait
    assert [call.kwargs.get("timeout") for call in orb.asked("run")] == [42.0, 10.0]
    assert {tuple(call.command) for call in orb.asked("run")} == {cloudinit.STATUS}


def test_a_base_with_failed_cloud_init_is_not_built_and_says_why(tmp_path: Path) -> None:
    orb = answering({cloudinit.STATUS: (1, FAILED_STATUS), LOG_TAIL_ARGV: (0, LOG_TAIL)})
    hooks = Hooks()
    p = worker(orb, tmp_path, hooks=hooks)
    with pytest.raises(BaseBuildError) as excinfo:
        p.obtain(MachineSpec("ubuntu:22.04", user_data=_user_data(tmp_path)))
    assert "Cloud-init v. 24.1 finished: with errors" in str(excinfo.value)  # the log tail, not one line
    assert hooks.events == []
    assert orb.machines == {}


def test_clones_of_a_checked_base_are_not_checked_again(tmp_path: Path) -> None:
    orb = answering()
    p = worker(orb, tmp_path)
    spec = MachineSpec("ubuntu:22.04", user_data=_user_data(tmp_path))
    p.obtain(spec)
    p.obtain(spec)
    assert commands(orb).count(cloudinit.STATUS) == 1


# --- sealing ----------------------------------------------------------------------------------


def test_a_base_is_sealed_as_root_after_provisioning_and_before_it_is_stopped(tmp_path: Path) -> None:
    orb = answering()
    order: list[str] = []

    class Ordered(Hooks):
        def provision(self, machine: Machine) -> None:
            order.append("provision")
            assert (SEAL, "root", "/") not in runs(orb)

    real_stop = orb.unscripted("stop")

    def stop(name: str, force: bool = False) -> None:
        order.append("stop" if (SEAL, "root", "/") in runs(orb) else "stop before seal")
        real_stop(name, force=force)

    orb.on("stop", stop)
    p = worker(orb, tmp_path, hooks=Ordered())
    p.obtain(MachineSpec("ubuntu:22.04"))
    assert order == ["provision", "stop"]
    assert SEAL == (
        "sh",
        "-c",
        "[ ! -e /etc/machine-id ] || : > /etc/machine-id; rm -f /var/lib/dbus/machine-id",
    )


def test_a_seal_that_fails_fails_the_build_and_deletes_the_base(tmp_path: Path) -> None:
    orb = answering({SEAL: (1, "")})
    p = worker(orb, tmp_path)
    with pytest.raises(BaseBuildError, match="CommandFailedError"):
        p.obtain(MachineSpec("ubuntu:22.04"))
    assert orb.machines == {}


# --- provision hooks and /tmp ----------------------------------------------------------------


class WritesTmp(Hooks):
    def provision(self, machine: Machine) -> None:
        super().provision(machine)
        machine.run("echo seed > /tmp/seed")
        machine.write_text("/run/app.conf", "x", user="root")


def test_provision_hooks_naming_tmp_warn_once_per_process(tmp_path: Path) -> None:
    orb = answering()
    p = worker(orb, tmp_path, hooks=WritesTmp())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        p.obtain(MachineSpec("ubuntu:22.04"))
        p.obtain(MachineSpec("debian:12"))  # a second base: no second warning
    assert [type(w.message) for w in record] == [VolatileProvisionWarning]
    message = str(record[0].message)
    assert "sh -c 'echo seed > /tmp/seed' (and 1 more)" in message
    assert "/tmp and /run start empty" in message
    assert sum("names /tmp or /run" in line for _, line in p.stats.take_events()) == 1


def test_no_warning_for_hooks_that_keep_off_tmp_nor_without_cloning(tmp_path: Path) -> None:
    class Clean(Hooks):
        def provision(self, machine: Machine) -> None:
            machine.run("echo keep > /var/tmp/keep && mkdir -p ~/tmp")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        worker(answering(), tmp_path, hooks=Clean()).obtain(MachineSpec("ubuntu:22.04"))
        _create_only(answering(), hooks=WritesTmp()).obtain(MachineSpec("ubuntu:22.04"))  # no base
