"""What the plugin needs from "an orbctl client": :class:`Orbctl`.

:class:`~pytest_orbstack.client.OrbctlClient` is the one implementation that runs
orbctl; a ``pytest_orbstack_make_client`` hook may return another object with
these methods (a recording wrapper, a double).  Every module above the client
layer types its client as :class:`Orbctl`.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pytest_orbstack.models import MachineInfo, OrbVersion
    from pytest_orbstack.results import RunResult

__all__ = ["Orbctl"]


class Orbctl(Protocol):
    """The orbctl commands the plugin runs, typed (see ``OrbctlClient`` for each one's behaviour)."""

    def status(self) -> str: ...

    def version(self) -> OrbVersion: ...

    def list(self) -> builtins.list[MachineInfo]: ...

    def info(self, name: str) -> MachineInfo: ...

    def logs(self, machine: str, all_logs: bool = False) -> str: ...

    def create(
        self,
        image: str,
        name: str | None = None,
        *,
        arch: str | None = None,
        user: str | None = None,
        user_data: str | os.PathLike[str] | None = None,
        cpus: int | None = None,
        memory: str | None = None,
        disk: str | None = None,
        isolated: bool = False,
        timeout: float | None = None,
    ) -> None: ...

    def start(self, *names: str) -> None: ...

    def stop(self, *names: str, force: bool = False) -> None: ...

    def restart(self, *names: str) -> None: ...

    def delete(self, *names: str, force: bool = True) -> None: ...

    def clone(self, source: str, new: str, *, timeout: float | None = None) -> None: ...

    def rename(self, old: str, new: str) -> None: ...

    def run(
        self,
        machine: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float | None = None,
        check: bool = True,
        output_limit: int | None = None,
    ) -> RunResult: ...

    def push(
        self, machine: str, sources: Sequence[str], dest: str | None = None, *, timeout: float | None = None
    ) -> None: ...

    def pull(
        self, machine: str, sources: Sequence[str], dest: str | None = None, *, timeout: float | None = None
    ) -> None: ...
