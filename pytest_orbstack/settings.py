"""The session's options, ini values and environment variables, resolved once into :class:`Settings`.

Every setting can come from four places.  The first one that is set wins:

1. the command line (``--orb-image``),
2. the environment (``PYTEST_ORBSTACK_IMAGE``; the orbctl path also reads ``ORBCTL``),
3. the ini file (``orb_image``),
4. the default.

The ``orb`` marker of a test overrides the machine spec above all of them (see ``marker.py``).

A bad value raises :class:`pytest.UsageError` naming where it came from, before
any machine is created.

The option table (flag, ini key, environment variables, help) is in
``options.py``, what each option accepts in ``parsers.py``; this module holds
the resolved value and the loading.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Optional

import pytest

from pytest_orbstack.client import DEFAULT_OUTPUT_LIMIT, Timeouts
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.naming import DEFAULT_PREFIX, reuse_conflict
from pytest_orbstack.options import (
    DEFAULT_IMAGE,
    DEFAULT_MACHINE_TIMEOUT,
    DEFAULT_PREFETCH,
    DEFAULT_READY_TIMEOUT,
    DEFAULT_RETRIES,
    OPTIONS,
    add_options,
    raw,
)
from pytest_orbstack.parsers import IF_UNAVAILABLE_CHOICES, SPEC_PARSERS, Clone, Keep, Reuse

__all__ = [
    "IF_UNAVAILABLE_CHOICES",
    "SPEC_PARSERS",
    "Clone",
    "Keep",
    "Reuse",
    "Settings",
    "add_options",
    "load_settings",
]


@dataclass(frozen=True)
class Settings:
    """Every pytest-orbstack setting of this run, validated."""

    #: image of machines, ``distro[:version]`` (``--orb-image``)
    image: str = DEFAULT_IMAGE
    #: CPU architecture, ``None`` = the host's (``--orb-arch``)
    arch: Optional[str] = None
    #: default user created in machines, ``None`` = OrbStack's default (``--orb-user``)
    user: Optional[str] = None
    #: absolute path of a cloud-init user-data file (``--orb-user-data``)
    user_data: Optional[str] = None
    #: prefix of every machine name (``--orb-prefix``)
    prefix: str = DEFAULT_PREFIX
    #: ``never``, ``failed`` or ``always`` (``--orb-keep``)
    keep: Keep = Keep.NEVER
    #: seconds a machine may take to become ready (``--orb-ready-timeout``)
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    #: seconds one ``orbctl create`` may take, ``None`` = the client's default (``--orb-create-timeout``)
    create_timeout: Optional[float] = None
    #: seconds one ``orbctl clone`` may take, ``None`` = the client's default (``--orb-clone-timeout``)
    clone_timeout: Optional[float] = None
    #: seconds one machine may take in all, retries included (``--orb-machine-timeout``)
    machine_timeout: float = DEFAULT_MACHINE_TIMEOUT
    #: retries of transient create/start/delete failures (``--orb-retries``)
    retries: int = DEFAULT_RETRIES
    #: bytes of stdout and of stderr kept per command (the last ones; ``--orb-output-limit``)
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    #: the orbctl to run, ``None`` = look for ``orbctl`` (then ``orbsim`` on Linux) (``--orb-orbctl``)
    orbctl: Optional[str] = None
    #: do not purge machines of dead runs (``--orb-no-purge``)
    no_purge: bool = False
    #: ``auto``, ``always`` or ``never``: clone machines from a provisioned base (``--orb-clone``)
    clone: Clone = Clone.AUTO
    #: ``off``, ``on`` or ``refresh``: keep provisioned bases across runs (``--orb-reuse``)
    reuse: Reuse = Reuse.OFF
    #: do not make the next tests' fresh machines while the current test runs (``--orb-no-prefetch``)
    no_prefetch: bool = False
    #: the most ``orb_vm_fresh`` machines made ahead at once per process (``--orb-prefetch``; 0 = off)
    prefetch: int = DEFAULT_PREFETCH
    #: ``error`` or ``skip``: machine tests when OrbStack cannot be used (``--orb-if-unavailable``)
    if_unavailable: str = "error"

    #: ``exclude`` or ``include``: making machines counts in pytest-timeout's timer (``--orb-timeout-setup``)
    timeout_setup: str = "exclude"

    @property
    def prefetch_limit(self) -> int:
        """How many machines prefetch may make ahead: 0 when it is off."""
        return 0 if self.no_prefetch else self.prefetch

    @property
    def spec(self) -> MachineSpec:
        """The machine spec of ``orb_vm`` and of machines without a marker."""
        return MachineSpec(image=self.image, arch=self.arch, user=self.user, user_data=self.user_data)

    def timeouts(self) -> Timeouts:
        """The orbctl client's timeouts: its defaults, with the create and clone timeouts set here."""
        found = Timeouts()
        if self.create_timeout is not None:
            found = replace(found, create=self.create_timeout)
        if self.clone_timeout is not None:
            found = replace(found, clone=self.clone_timeout)
        return found


def load_settings(config: pytest.Config, environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Resolve every setting (CLI > env > ini > default); :class:`pytest.UsageError` on a bad value."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        found = raw(config, option, env)
        if found is None:
            continue
        value, source, base = found
        try:
            values[option.field] = option.parse(value, base)
        except ValueError as exc:
            raise pytest.UsageError(f"{source}: {exc}, got {value!r}") from None
        sources[option.field] = source
    settings = Settings(**values)
    conflict = reuse_conflict(settings.prefix) if settings.reuse != Reuse.OFF else None
    if conflict is not None:
        raise pytest.UsageError(f"{sources['reuse']}: {conflict}")
    return settings
