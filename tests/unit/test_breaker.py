"""breaker.py: machines that never get an address stop the run's machine making."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import SPEC, ScriptedOrb, err, make

from pytest_orbstack.breaker import THRESHOLD, AddressBreaker, NoAddressError
from pytest_orbstack.errors import MachineNotReadyError, TransientOrbctlError
from pytest_orbstack.readiness import NO_ADDRESS, lacks_address

MISSING = "[-32098] create 'm': setup: machine didn't start in 30s (missing IP address)"


def no_ip_create() -> Exception:
    return err(TransientOrbctlError, "create", "m", MISSING)


def no_ip_ready() -> Exception:
    return MachineNotReadyError("m", 120.0, "running", f"{NO_ADDRESS}; raise --orb-ready-timeout (120s)")


def test_what_counts_as_no_address() -> None:
    assert lacks_address(no_ip_create())
    assert lacks_address(no_ip_ready())
    assert not lacks_address(MachineNotReadyError("m", 1.0, "creating", f"{NO_ADDRESS}"))  # not running
    assert not lacks_address(err(TransientOrbctlError, "create", "m", "502 Bad Gateway"))
    assert not lacks_address(RuntimeError("missing IP address"))


def test_trips_at_the_threshold_in_a_row_and_names_the_fix(tmp_path: Path) -> None:
    breaker = AddressBreaker(flag=tmp_path / "flag")
    for _ in range(THRESHOLD - 1):
        breaker.failed(no_ip_create(), "ubuntu:22.04")
    breaker.check()  # not yet
    with pytest.raises(NoAddressError) as caught:
        breaker.failed(no_ip_ready(), "debian:12")
    message = str(caught.value)
    assert f"{THRESHOLD} machines in a row (ubuntu:22.04, debian:12)" in message
    assert "orbctl stop && orbctl start" in message
    assert "#2688" in message
    with pytest.raises(NoAddressError):
        breaker.check()
    assert (tmp_path / "flag").exists()
    other = AddressBreaker(flag=tmp_path / "flag")  # another process of the run
    assert other.tripped
    with pytest.raises(NoAddressError, match="machines in this run never got one"):
        other.check()


def test_a_ready_machine_resets_the_count_and_other_failures_do_not_count() -> None:
    breaker = AddressBreaker()
    for _ in range(THRESHOLD - 1):
        breaker.failed(no_ip_create(), "ubuntu:22.04")
    breaker.succeeded()
    for _ in range(THRESHOLD - 1):
        breaker.failed(no_ip_create(), "ubuntu:22.04")
        breaker.failed(err(TransientOrbctlError, "create", "m", "502 Bad Gateway"), "ubuntu:22.04")
    breaker.check()
    assert not breaker.tripped


def test_a_wrapped_cause_counts() -> None:
    breaker = AddressBreaker(threshold=1)
    wrapper = RuntimeError("base build failed")
    wrapper.__cause__ = no_ip_create()
    with pytest.raises(NoAddressError):
        breaker.failed(wrapper)


def no_ip_orb() -> ScriptedOrb:
    """Every create fails as OrbStack #2688 does."""
    return ScriptedOrb().script("create", no_ip_create())


def test_provisioner_stops_creating_once_tripped() -> None:
    orb = no_ip_orb()
    p = make(orb, retries=1)  # two attempts a machine
    with pytest.raises(TransientOrbctlError):
        p.obtain(SPEC)  # attempts 1 and 2
    with pytest.raises(NoAddressError, match="3 machines in a row"):
        p.obtain(SPEC)  # attempt 3 trips it
    assert len(orb.asked("create")) == THRESHOLD
    with pytest.raises(NoAddressError):
        p.obtain(SPEC)
    assert len(orb.asked("create")) == THRESHOLD  # no more creates
    assert orb.machines == {}


def test_provisioner_success_in_between_resets_the_count() -> None:
    orb = no_ip_orb()
    p = make(orb, retries=THRESHOLD - 2)  # THRESHOLD - 1 attempts a machine
    with pytest.raises(TransientOrbctlError):
        p.obtain(SPEC)
    orb.on("create", orb.unscripted("create"))  # OrbStack recovered: the next machine is ready
    machine = p.obtain(SPEC)
    orb.script("create", no_ip_create())
    with pytest.raises(TransientOrbctlError):
        p.obtain(SPEC)  # THRESHOLD - 1 again: not tripped
    assert not p.breaker.tripped
    p.release(machine, keep=False)
    assert orb.machines == {}
