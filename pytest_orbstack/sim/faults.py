"""Injected failures (``ORBSIM_FAULTS``), counted across processes.

Syntax: rules separated by ``;``::

    OP[@GLOB]=KIND[:ARG][*N]

- ``OP``: ``create clone start stop restart delete run rename push pull info list
  logs default config`` or ``any`` (every command but ``status``/``version``), or
  ``vm`` (the state of OrbStack itself).
- ``@GLOB``: only for calls naming a machine that matches (``fnmatch``), e.g.
  ``create@pytest-test-*=download-502``.
- ``*N``: the next N matching calls only; without it, every matching call.
  Counters live in ``$ORBSIM_HOME/state.json`` (under the lock), keyed by the
  rule's text, so "the next 2 creates" holds across orbsim processes.
  ``orbsim reset`` (or changing the rule's text) re-arms a used-up rule.

Kinds (the texts are the real ``orbctl`` ones):

=====================  =====================================================================
``setup-timeout``      create: ``[-32098] create 'NAME': setup: machine didn't start in 30s
                       (missing IP address)``; the half-made machine is deleted
``setup-timeout-keep`` create: same text, but the machine exists and runs (as OrbStack does
                       sometimes)
``download-502``       create: ``[-32098] create 'NAME': make rootfs: download metadata: GET
                       download status: 502 Bad Gateway``; nothing is left
``hang[:SECONDS]``     create: the machine is made and running, then orbsim sleeps SECONDS
                       (default 3600) before exiting 0: a create that outlives its caller's
                       timeout and still succeeded
``stall[:SECONDS]``    any op: sleep SECONDS (default 3600) before doing anything, then carry
                       on (a killed caller leaves nothing behind)
``service-timeout``    any op: ``timed out waiting for services to start``, exit 1
``vm-timeout``         any op: ``start VM: timed out waiting for VM to start``, exit 1
``conflict[:FROM]``    ops on a machine: ``[-32098] cannot transition from FROM to TARGET``
                       (FROM defaults to the machine's state; TARGET from the op: starting,
                       stopping, deleting, ...)
``error:TEXT``         any op: ``[-32098] TEXT`` exit 1 (``{name}`` is replaced by the machine)
``stopped``            ``vm`` only: OrbStack is stopped (``status`` prints ``Stopped``, exit 1;
                       other commands fail with ``start VM: timed out waiting for VM to start``)
``starting``           ``vm`` only: ``status`` prints ``Starting``, exit 2
``no-ip[:SECONDS]``    create, start, restart: the machine runs but never gets an address
                       (``info`` shows no ``ip4``; OrbStack issue #2688); a create waits SECONDS
                       (default 0; OrbStack waits 30) and then fails with the ``setup-timeout``
                       text, the half-made machine deleted
``download-stall[:S]`` create: the machine stays ``creating`` for S seconds (default 3600), a
                       stalled image download; the work goes on in the background when the
                       calling orbsim is killed, so the machine ends ``running`` later
``undeletable[:TEXT]`` delete: a machine matching the rule cannot be deleted: it is stopped,
                       stays listed, and the call fails with ``[-32098] TEXT`` (default
                       ``delete rootfs: remove all x2: unlinkat
                       /data/scon/containers/ID/rootfs/swapfile: operation not permitted``);
                       nothing else in that call is deleted
=====================  =====================================================================

Example: ``ORBSIM_FAULTS='create=setup-timeout*2; delete=conflict*1'``.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Final, Optional

OPS: Final = frozenset(
    {
        "create",
        "clone",
        "start",
        "stop",
        "restart",
        "delete",
        "run",
        "rename",
        "push",
        "pull",
        "info",
        "list",
        "logs",
        "default",
        "config",
        "any",
        "vm",
    }
)
KINDS: Final = frozenset(
    {
        "setup-timeout",
        "setup-timeout-keep",
        "download-502",
        "hang",
        "stall",
        "service-timeout",
        "vm-timeout",
        "conflict",
        "error",
        "stopped",
        "starting",
        "no-ip",
        "download-stall",
        "undeletable",
    }
)
_RULE = r"^(?P<op>[a-z]+)(?:@(?P<glob>[^=]+))?=(?P<kind>[a-z0-9-]+)(?::(?P<arg>.*?))?(?:\*(?P<n>\d+))?$"


class FaultSyntaxError(ValueError):
    """``ORBSIM_FAULTS`` does not parse."""


class Fault:
    __slots__ = ("arg", "count", "glob", "key", "kind", "op")

    def __init__(
        self, key: str, op: str, glob: Optional[str], kind: str, *, arg: Optional[str], count: Optional[int]
    ) -> None:
        self.key = key
        self.op = op
        self.glob = glob
        self.kind = kind
        self.arg = arg
        self.count = count

    def seconds(self, default: float = 3600.0) -> float:
        try:
            return float(self.arg) if self.arg else default
        except ValueError:
            return default

    def __repr__(self) -> str:
        return f"Fault({self.key!r})"


def parse(text: str) -> list[Fault]:
    import re  # start-up time: only a run with ORBSIM_FAULTS parses rules

    faults = []
    for raw in text.split(";"):
        rule = raw.strip()
        if not rule:
            continue
        m = re.match(_RULE, rule)
        if m is None or m["op"] not in OPS or m["kind"] not in KINDS:
            raise FaultSyntaxError(
                f"ORBSIM_FAULTS rule {rule!r} does not parse: write OP[@GLOB]=KIND[:ARG][*N], "
                "e.g. 'create=setup-timeout*2' (see docs/orbsim.md)"
            )
        count = int(m["n"]) if m["n"] else None
        faults.append(Fault(rule, m["op"], m["glob"], m["kind"], arg=m["arg"], count=count))
    return faults


def active(environ: Optional[Mapping[str, str]] = None) -> list[Fault]:
    env = os.environ if environ is None else environ
    text = env.get("ORBSIM_FAULTS", "")
    return parse(text) if text.strip() else []


def matches(name: str, glob: str) -> bool:
    """``fnmatch.fnmatchcase``, loaded only when a rule has a ``@GLOB`` (start-up time)."""
    import fnmatch

    return fnmatch.fnmatchcase(name, glob)


def take(
    used: dict[str, int],
    faults: Sequence[Fault],
    op: str,
    names: Sequence[str] = (),
    kinds: Optional[frozenset[str]] = None,
) -> Optional[Fault]:
    """The first rule matching ``op`` (and a name) that has calls left; uses one of its calls.

    ``used`` counts the calls each rule had (the registry's ``faults``): hold the state lock.
    """
    for fault in faults:
        if fault.op != op and not (fault.op == "any" and op not in ("vm", "status", "version")):
            continue
        if kinds is not None and fault.kind not in kinds:
            continue
        if fault.glob is not None and not any(matches(n, fault.glob) for n in names):
            continue
        if fault.count is not None:
            if used.get(fault.key, 0) >= fault.count:
                continue
            used[fault.key] = used.get(fault.key, 0) + 1
        return fault
    return None
