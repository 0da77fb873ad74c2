"""The shared machine (``orb_vm``) between tests: replaced when it died, announced again when it restarted.

A test can kill the machine every later test of its process shares
(``sudo kill -TERM 1``, ``orb_vm.delete()``, OrbStack quitting).  Before a
test that uses ``orb_vm`` runs, :meth:`SharedMachine.before_test` looks at the
machine when there is a sign of trouble since the last look
(:attr:`Machine.suspect`: a command that failed on orbctl's side or was ended by
a signal, a push or pull that failed, the test stopped, started, restarted or
deleted it; or a test that used it failed).  With a sign it costs one
``orbctl info``.  When some plugin implements ``pytest_orbstack_machine_ready``,
what that hook started must not be lost without a sign either (``sudo kill -TERM
1`` can return 0 just before the machine goes down, and the next ``orbctl run``
starts it again): then every test that uses ``orb_vm`` first costs one ``orbctl
run`` (``cat /proc/1/stat``, also run when the machine is handed out).  Without
that hook and without a sign, it costs nothing.

- Gone or being deleted: the ``orb_vm`` fixture is finished (its teardown and
  that of every fixture built on it run) and pytest makes it again for this
  test: a new machine, provision and ready hooks run.  A progress line says
  which machine died in which test.
- Stopped (or stopping, starting): started again and waited for.
- Running with an init that started since the last look (the machine
  restarted: the start time of its PID 1 changed): ``pytest_orbstack_machine_ready``
  runs again, since what it started is gone.  A start time that cannot be read
  (``orbctl run`` failing for a moment) is unknown, not a restart: the machine is
  looked at with ``orbctl info``, and the hook runs again only when the start
  time read later differs from the last one read, or the machine was started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Final, Optional

import pytest

from pytest_orbstack.errors import MachineNotFoundError, OrbctlCommandError, OrbstackError, first_line

if TYPE_CHECKING:
    from pytest_orbstack.machine import Machine
    from pytest_orbstack.provisioner import Provisioner

__all__ = ["SharedMachine", "boot_mark"]

#: Reads the machine's PID 1 record; its 22nd field is when init started (clock ticks since boot).
BOOT_COMMAND: Final = ["cat", "/proc/1/stat"]
#: The longest ``cat /proc/1/stat`` may take, in seconds.
_BOOT_TIMEOUT: Final = 30.0


def boot_mark(client: object, name: str) -> Optional[str]:
    """When the machine's init started (``/proc/1/stat`` field 22), or ``None`` if it cannot be read."""
    run = getattr(client, "run", None)
    if run is None:
        return None
    try:
        result = run(name, BOOT_COMMAND, timeout=_BOOT_TIMEOUT, check=False)
    except OrbstackError:
        return None
    if getattr(result, "returncode", 1) != 0:
        return None
    fields = str(getattr(result, "stdout", "")).rsplit(")", 1)[-1].split()  # the name may hold spaces
    return fields[19] if len(fields) > 19 else None


class SharedMachine:
    """What the plugin knows of its process's ``orb_vm`` machine between tests."""

    def __init__(self) -> None:
        #: the machine ``orb_vm`` handed out, ``None`` before and after
        self.machine: Optional[Machine] = None
        #: its init's start time when last seen (see :func:`boot_mark`)
        self.boot: Optional[str] = None
        #: the last test that used it
        self.last_test: Optional[str] = None
        #: how many times it was replaced
        self.replaced = 0
        #: whether restarts matter (some plugin implements ``pytest_orbstack_machine_ready``)
        self.watch_boot = False
        self._finish: Optional[Callable[[], None]] = None

    def bind(self, finish: Callable[[], None]) -> None:
        """``finish()`` ends the ``orb_vm`` fixture, so that pytest makes it again for the next test."""
        self._finish = finish

    def handed_out(self, machine: Machine, provisioner: Provisioner, *, watch_boot: bool) -> None:
        """``orb_vm`` made ``machine``: remember it, and when its init started if ``watch_boot``."""
        self.machine = machine
        self.watch_boot = watch_boot
        self.boot = boot_mark(provisioner.client, machine.name) if watch_boot else None

    def released(self, machine: Machine) -> None:
        if self.machine is machine:
            self.machine = None

    def used_by(self, item: pytest.Item, *, failed: bool) -> None:
        """``item`` used the machine (and ``failed``): a failed test may have killed it."""
        self.last_test = item.nodeid
        if failed and self.machine is not None and self.machine.suspect is None:
            self.machine.suspect = "the test failed"

    def before_test(self, provisioner: Provisioner) -> None:
        """Before a test that uses ``orb_vm``: replace, restart or re-announce the machine if needed."""
        machine = self.machine
        if machine is None:
            return
        if machine.suspect is None:
            if not self.watch_boot or machine.deleted:
                return
            # A ready hook started something in the machine: a restart with no sign (a
            # command that ended before the machine went down) would lose it unseen.
            mark = boot_mark(provisioner.client, machine.name)
            if mark is None:  # unknown, not a restart: is the machine still there?
                machine.suspect = "its init could not be read"
            elif self._restarted(mark):
                machine.suspect = "its init is not the one the ready hook saw"
            else:
                return
        why, machine.suspect = machine.suspect, None
        where = f"during {self.last_test}" if self.last_test else "before this test"
        state: Optional[str] = None
        if not machine.deleted:
            try:
                state = provisioner.client.info(machine.name).state
            except MachineNotFoundError:
                state = None
            except OrbctlCommandError as exc:  # OrbStack itself is in trouble: this test will say so
                machine.suspect = why
                provisioner.stats.event(f"could not check orb_vm machine {machine.name}: {first_line(exc)}")
                return
        if state is None or state == "deleting":
            machine.deleted = True  # gone: its teardown must neither keep nor delete it
            self._replace(provisioner, f"orb_vm machine {machine.name} is gone {where} ({why})")
            return
        started = state != "running"
        if started:
            try:
                provisioner.start(machine)
            except OrbstackError as exc:
                what = f"orb_vm machine {machine.name} was {state} {where} ({why}) and did not start again"
                self._replace(provisioner, f"{what}: {first_line(exc)}")
                return
        if not self.watch_boot:
            return
        mark = boot_mark(provisioner.client, machine.name)
        if not started and not self._restarted(mark):
            return
        self.boot = mark
        provisioner.stats.event(
            f"orb_vm machine {machine.name} restarted {where} ({why}): "
            "pytest_orbstack_machine_ready runs again"
        )
        provisioner.hooks.ready(machine)

    def _restarted(self, mark: Optional[str]) -> bool:
        """Whether ``mark`` says init restarted: an unreadable mark (``None``) is unknown, not a change."""
        if mark is None:
            return False
        if self.boot is None:  # unknown until now: learnt, and the next change counts
            self.boot = mark
            return False
        return mark != self.boot

    def _replace(self, provisioner: Provisioner, what: str) -> None:
        finish, self._finish = self._finish, None
        if finish is None:
            pytest.fail(f"{what}; it cannot be replaced here: run the tests again", pytrace=False)
        provisioner.stats.event(f"{what}: a new one replaces it, made and provisioned as the first was")
        self.replaced += 1
        try:  # the old machine's teardown, and that of the fixtures built on orb_vm
            finish()
        except Exception as exc:  # reported, not raised: this test gets the new machine
            provisioner.stats.event(f"teardown of the replaced orb_vm machine failed: {first_line(exc)}")
        self.machine = None
