"""Provision every new machine once, before any test gets it.

``pytest_orbstack_provision`` runs on each machine the plugin creates
(``orb_vm`` once per worker, and every ``orb_vm_fresh`` / ``orb_machines``
machine).  Here it "installs" a small service: a user, a script and a config
file.  Hooks in a conftest apply to every machine of the run.
"""

from __future__ import annotations

import pytest

from pytest_orbstack import Machine

GREET = """#!/bin/sh
# greet: the tool our tests need on every machine
. /etc/greet.conf
echo "$GREETING, $1"
"""


def pytest_orbstack_provision(machine: Machine, config: pytest.Config) -> None:
    machine.run(["useradd", "--create-home", "--shell", "/bin/sh", "app"], user="root")
    machine.write_text("/usr/local/bin/greet", GREET, user="root")
    machine.run(["chmod", "755", "/usr/local/bin/greet"], user="root")
    machine.write_text("/etc/greet.conf", "GREETING=Hello\n", user="root")


def pytest_orbstack_machine_ready(machine: Machine, config: pytest.Config) -> None:
    # A cheap check that provisioning worked before any test sees the machine.
    machine.run(["greet", "ready-check"])
