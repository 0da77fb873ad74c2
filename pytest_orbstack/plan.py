"""How this process makes machines: decided once, from the settings and OrbStack's version.

One :class:`Plan` per process answers the questions that the progress lines
before the first machine, the ``--orb-clone always`` check and the fixtures'
provisioner would otherwise each ask on their own: which OrbStack, clone or
create (:func:`pytest_orbstack.bases.clone_decision`), and how many machines
are made ahead.  :class:`KeepPolicy` says which machines are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, final

from pytest_orbstack.bases import clone_decision
from pytest_orbstack.models import OrbVersion
from pytest_orbstack.settings import Keep, Settings

__all__ = ["KeepPolicy", "Plan", "decide"]


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


def decide(settings: Settings, version: Optional[OrbVersion]) -> Plan:
    """The plan for ``settings`` on OrbStack ``version`` (``None``: unknown, clone is tried)."""
    try:
        clone, note = clone_decision(settings.clone, version)
    except ValueError as exc:
        return Plan(version, clone=False, note=None, refused=str(exc), prefetch=settings.prefetch_limit)
    return Plan(version, clone=clone, note=note, refused=None, prefetch=settings.prefetch_limit)


class KeepPolicy:
    """``--orb-keep``: which machines outlive their fixture (renamed ``pytest-kept-...``)."""

    def __init__(self, keep: Keep) -> None:
        self.keep = keep
        #: names of machines used by a failed test (``--orb-keep failed``)
        self.failed: set[str] = set()

    def keeps(self, name: str) -> bool:
        """Whether the machine ``name`` is kept when its fixture ends."""
        return self.keep == Keep.ALWAYS or (self.keep == Keep.FAILED and name in self.failed)
