"""How this process makes machines: decided once, from the settings and OrbStack's version.

One :class:`Plan` per process answers the questions that the progress lines
before the first machine, the ``--orb-clone always`` check and the fixtures'
provisioner would otherwise each ask on their own: which OrbStack, clone or
create (:func:`pytest_orbstack.bases.clone_decision`), and how many machines
are made ahead.  :class:`Demand` is how many machines of each spec the
run's selected tests can need: a spec needed once is created directly,
without a base (:func:`pytest_orbstack.bases.install`).  :class:`KeepPolicy`
says which machines are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional, final

from pytest_orbstack.bases import clone_decision
from pytest_orbstack.models import MachineSpec, OrbVersion
from pytest_orbstack.settings import Clone, Keep, Reuse, Settings

__all__ = ["Demand", "KeepPolicy", "Plan", "decide"]


@final
@dataclass(frozen=True, eq=False)
class Demand:
    """How many machines of each spec the run's selected tests can need, counted after collection.

    ``orb_vm`` gives at most one machine per process, each ``orb_vm_fresh`` test one;
    ``orb_machines`` can make any number of any spec (``open_ended``).  A run whose
    tests were not counted is open-ended too: every spec may be needed many times.
    """

    #: spec -> the most machines of it the run can make (specs not listed: none were counted)
    counts: Mapping[MachineSpec, int] = field(default_factory=dict)
    #: the tests can make machines that were not counted (``orb_machines``, or no count at all)
    open_ended: bool = True
    #: every process can count on running an ``orb_vm`` test: without xdist, with ``-n 1`` or with
    #: ``--dist each``, one without ``skip``/``skipif`` is selected; with ``--dist load`` or
    #: ``worksteal``, an estimate: such tests are at least half the selected tests and at least one
    #: per worker.  Its shared machine is then made as soon as the base exists.
    shared_everywhere: bool = False

    def single(self, spec: MachineSpec) -> bool:
        """Whether the whole run needs exactly one machine of ``spec``."""
        return not self.open_ended and self.counts.get(spec, 0) == 1


@final
@dataclass(frozen=True)
class Plan:
    """The run's choices for this process."""

    #: OrbStack's version, ``None`` when it was not asked (``--orb-clone never``) or could not be told
    version: Optional[OrbVersion]
    #: machines are clones of a provisioned base (the clone fast path)
    clone: bool
    #: the one line that explains a fallback from clone to create, said before the first machine
    note: Optional[str]
    #: why ``--orb-clone always`` cannot be done (a usage error), or ``None``
    refused: Optional[str]
    #: ``orb_vm_fresh`` machines made ahead at once (0: prefetch is off)
    prefetch: int
    #: a spec the run needs only one machine of is created directly, without a base: the clone
    #: fast path is on with ``--orb-clone auto`` and no ``--orb-reuse`` (a reused base serves
    #: later runs; ``--orb-clone always`` asks for a base)
    one_off: bool = False


def decide(settings: Settings, version: Optional[OrbVersion]) -> Plan:
    """The plan for ``settings`` on OrbStack ``version`` (``None``: unknown, clone is tried)."""
    try:
        clone, note = clone_decision(settings.clone, version)
    except ValueError as exc:
        return Plan(version, clone=False, note=None, refused=str(exc), prefetch=settings.prefetch_limit)
    one_off = clone and settings.clone == Clone.AUTO and settings.reuse == Reuse.OFF
    return Plan(
        version, clone=clone, note=note, refused=None, prefetch=settings.prefetch_limit, one_off=one_off
    )


class KeepPolicy:
    """``--orb-keep``: which machines outlive their fixture (renamed ``pytest-kept-...``)."""

    def __init__(self, keep: Keep) -> None:
        self.keep = keep
        #: names of machines used by a failed test (``--orb-keep failed``)
        self.failed: set[str] = set()

    def keeps(self, name: str) -> bool:
        """Whether the machine ``name`` is kept when its fixture ends."""
        return self.keep == Keep.ALWAYS or (self.keep == Keep.FAILED and name in self.failed)
