"""A fresh machine per test with ``orb_vm_fresh``: changes never leak into other tests.

The ``orb`` marker chooses the machine of one test (image, arch, user, user_data).
"""

from __future__ import annotations

import pytest

from pytest_orbstack import Machine


def test_can_break_the_machine(orb_vm_fresh: Machine) -> None:
    orb_vm_fresh.run("sudo rm -f /etc/motd && sudo touch /etc/broken-on-purpose")
    assert orb_vm_fresh.run("test -e /etc/broken-on-purpose", check=False).returncode == 0


def test_gets_its_own_machine(orb_vm_fresh: Machine) -> None:
    # The previous test's machine is gone; this one is new.
    assert orb_vm_fresh.run("test -e /etc/broken-on-purpose", check=False).returncode == 1


@pytest.mark.orb(user="builder")
def test_marker_sets_the_default_user(orb_vm_fresh: Machine) -> None:
    assert orb_vm_fresh.run("id -un").stdout.strip() == "builder"


def test_stop_and_start(orb_vm_fresh: Machine) -> None:
    orb_vm_fresh.stop()
    assert orb_vm_fresh.state == "stopped"
    orb_vm_fresh.start()  # waits until the machine is ready again
    assert orb_vm_fresh.run("true").ok
