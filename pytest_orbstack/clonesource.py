"""The machine source of the clone fast path: every machine is a clone of its spec's base."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pytest_orbstack.basestore import BaseBuildError
from pytest_orbstack.errors import MachineNotFoundError, first_line
from pytest_orbstack.sources import Made, clone_ready

if TYPE_CHECKING:
    from pytest_orbstack.context import MakeContext
    from pytest_orbstack.models import MachineSpec


__all__ = ["Bases", "CloneSource"]


class Bases(Protocol):
    """Where the base of a spec comes from (:class:`~pytest_orbstack.bases.BaseManager`)."""

    def base_for(self, spec: MachineSpec) -> str:
        """The name of the stopped, provisioned base for ``spec`` (built if need be)."""
        ...

    def close(self) -> None:
        """The session ends: let go of the bases."""


class CloneSource:
    """A :class:`~pytest_orbstack.sources.MachineSource`: ``orbctl clone`` of the spec's base, started
    by its first command (``orbctl run`` starts a stopped machine), which is also the readiness probe.

    A clone that fails or times out is deleted; transient failures of clone and
    start are retried like create's.  Clone, start and readiness keep within the
    machine's overall deadline (``--orb-machine-timeout``), which starts once the
    base is there (the base is a machine of its own, with its own deadline).  The
    machine is handed out already provisioned (the hooks ran on the base); the
    ready hook still runs on it.
    """

    def __init__(self, context: MakeContext, bases: Bases) -> None:
        self._c = context
        self.bases = bases

    def close(self, *, wait: bool = True) -> None:
        """Let go of the reused bases (run-scoped bases end with the run's purge)."""
        self.bases.close()

    def warm(self, spec: MachineSpec) -> bool:
        """The spec's base exists (built now, or waited for): clones can be made on any thread."""
        self.bases.base_for(spec)
        return True

    def make(self, spec: MachineSpec, name: str) -> Made:
        base = self.bases.base_for(spec)

        def vanished(exc: MachineNotFoundError) -> BaseBuildError:
            return BaseBuildError(
                spec,
                base,
                f"it vanished ({first_line(exc)}); was it deleted by hand?",
                hint="--orb-clone never creates every machine instead",
            )

        made = clone_ready(self._c, base, name, wake_up=True, missing=vanished)
        return Made(made.info, made.create_seconds, made.ready_seconds, provisioned=True)
