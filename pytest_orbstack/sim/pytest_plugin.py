"""orbsim's pytest plugin: makes orbsim ready before the first machine of a test run.

Registered through the ``pytest11`` entry point ``orbsim``.  It implements
pytest-orbstack's ``pytest_orbstack_prepare`` hook (optional: without
pytest-orbstack nothing calls it) and imports nothing from pytest-orbstack.
When the orbctl a run uses is orbsim (``orbsim``, or a shim written by
``orbsim shims``), it installs the Debian packages orbsim needs with apt-get
(as root, saying so), builds the machine image with progress lines (what,
where, elapsed time) under the host-wide build lock, and checks that machines
can be made.  pytest-orbstack calls the hook once per run and only when a
selected test needs a machine (``-n 3 -m "not orb"`` builds nothing): on the
xdist controller before any test is handed out (on another host, by the worker
elected there), so ``-n 3`` builds the image once, in sight, and no worker
waits on a silent build.  When something is missing that
cannot be fixed here, it returns the one line saying what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import pytest

#: What a shim written by ``orbsim shims`` contains (see ``simcmds.SHIM``).
SHIM_MARK = b"pytest_orbstack.sim.__main__"


def is_orbsim(orbctl: str) -> bool:
    """Whether the executable at ``orbctl`` is orbsim (by name, or a shim ``orbsim shims`` wrote)."""
    path = Path(orbctl)
    if path.name.startswith("orbsim"):
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(1024)
    except OSError:
        return False
    return head.startswith(b"#!") and SHIM_MARK in head


def make_ready(say: Optional[Callable[[str], None]] = None) -> Optional[str]:
    """Install what is missing, build the image if needed; ``None`` when machines can be made, else why.

    ``say`` gets the progress lines (default: ``orbsim: LINE`` on stderr).
    """
    # Start-up time: pytest loads this plugin in every run, with orbsim or not; the
    # engine (subprocess, tarfile, ...) only when orbsim is the orbctl in use.
    import shutil

    from . import rootfs
    from .engine import NOT_ROOT, EngineError, get_engine
    from .namespace import TOOLS

    say = say or rootfs.to_stderr

    try:
        engine = get_engine()
        if engine.kind != "namespace":
            return None  # plain mode needs nothing
        if os.geteuid() != 0:
            return NOT_ROOT
        if os.environ.get("ORBSIM_IMAGE_AUTOBUILD", "1") != "0":
            missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
            rootfs.install_packages(missing, why="to run machines", say=say)
            rootfs.build(progress=say)
        engine.preflight()
    except EngineError as exc:
        say(f"cannot make machines: {exc}")
        reason = str(exc)
        return reason if reason.startswith("orbsim") else f"orbsim: {reason}"
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_orbstack_prepare(config: pytest.Config, orbctl: str) -> Optional[str]:
    """pytest-orbstack's hook: make orbsim ready when it is the orbctl in use (see the module docstring)."""
    if not is_orbsim(orbctl):
        return None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return make_ready()
    return make_ready(lambda line: reporter.write_line(f"orbsim: {line}"))
