"""Checks that cloud-init really did its job on a machine created with user-data.

``orbctl create -c FILE`` waits for cloud-init, but a cloud-init *failure*
only logs a warning on OrbStack's side and the create succeeds.  So after a
machine made with user-data is up, :func:`check` runs
``cloud-init status --wait --long`` as root, within what is left of the ready
timeout, and reads its exit code (cloud-init 23.4+):

- 0: done;
- 1: an error: :class:`CloudInitError` with the status and the tail of
  ``/var/log/cloud-init-output.log``;
- 2: done but degraded (recoverable errors, deprecated keys): a
  :class:`CloudInitWarning` and a report line; the machine is used.
  (Distributions that patch 23.4+ back to the old behaviour answer 0.)

An image without cloud-init is an error that says so.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Callable, Final, Optional

from pytest_orbstack.errors import OrbctlTimeoutError, OrbstackError, clip_output

if TYPE_CHECKING:
    from pytest_orbstack.machine import Machine

__all__ = ["CloudInitError", "CloudInitWarning", "check"]

#: ``cloud-init status --wait --long``, or exit 127 when there is no cloud-init (a fixed script).
STATUS: Final = (
    "sh",
    "-c",
    "command -v cloud-init >/dev/null 2>&1 || exit 127; exec cloud-init status --wait --long",
)
#: The last lines of cloud-init's output log shown on a failure.
LOG_LINES: Final = 30
LOG: Final = "/var/log/cloud-init-output.log"
#: The shortest wait given to cloud-init, even when readiness used up the ready timeout.
_MIN_WAIT: Final = 10.0


class CloudInitError(OrbstackError):
    """cloud-init failed (or is missing, or did not finish) on a machine created with user-data."""

    def __init__(self, machine: str, reason: str, details: str = "") -> None:
        self.machine = machine
        self.reason = reason
        self.details = details
        super().__init__(f"cloud-init on {machine}: {reason}" + (f"\n{details}" if details else ""))


class CloudInitWarning(UserWarning):
    """cloud-init finished degraded (exit 2: recoverable errors) on a machine created with user-data."""


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.rstrip("\n").splitlines())


def check(machine: Machine, timeout: float, report: Optional[Callable[[str], None]] = None) -> None:
    """Wait for cloud-init on ``machine`` (at most ``timeout`` s) and check how it ended.

    ``report`` receives the one line of a degraded run (for the run's report);
    the same text is issued as a :class:`CloudInitWarning`.
    """
    wait = max(_MIN_WAIT, timeout)
    try:
        result = machine.run(list(STATUS), user="root", workdir="/", timeout=wait, check=False)
    except OrbctlTimeoutError:
        raise CloudInitError(
            machine.name,
            f"'cloud-init status --wait' did not finish within {wait:.0f}s; "
            "raise --orb-ready-timeout if the user-data does slow work (packages)",
        ) from None
    status = result.stdout.strip()
    if result.returncode == 0:
        return
    if result.returncode == 2:
        line = f"cloud-init on {machine.name} finished degraded (exit 2: recoverable errors)"
        if report is not None:
            report(f"{line}; run 'cloud-init status --long' in it for details")
        warnings.warn(CloudInitWarning(f"{line}:\n{_indent(clip_output(status))}"), stacklevel=2)
        return
    if result.returncode == 127:
        raise CloudInitError(
            machine.name,
            "user-data was given but the machine has no cloud-init "
            f"({machine.spec.image}: use an image whose cloud variant has it, or drop user_data)",
        )
    details = [f"  status (exit {result.returncode}):", _indent(clip_output(status or result.stderr))]
    tail = _log_tail(machine)
    if tail:
        details += [f"  last lines of {LOG}:", _indent(tail)]
    raise CloudInitError(
        machine.name, f"it failed (exit {result.returncode}): fix the user-data", "\n".join(details)
    )


def _log_tail(machine: Machine) -> str:
    try:
        result = machine.run(["tail", "-n", str(LOG_LINES), LOG], user="root", workdir="/", check=False)
    except OrbstackError:
        return ""
    return result.stdout if result.returncode == 0 else ""
