"""Engines: what an orbsim machine physically is.

The CLI (``common.py``/``state.py``) keeps the machine registry; an engine makes
the machine real.  The interface the CLI uses (``Engine``) and the types the
engines share are ``engineapi.py``; this module chooses the engine.  ``mdir``
is the machine's directory ``$ORBSIM_HOME/machines/<id>/``; the engine keeps
everything it needs inside it.

Two engines:

- ``NamespaceEngine`` (``kind == "namespace"``, the default; in
  ``namespace.py``): a machine is an overlay over a shared Debian rootfs, run
  by a long-lived init in its own mount, uts, ipc, pid and net namespaces, with
  an address on orbsim's host bridge.  Needs root and the image.
- ``PlainEngine`` (``kind == "plain"``, only with ``ORBSIM_MODE=plain``; in ``plain.py``): NOT
  ISOLATED.  A machine is a plain directory on the host and its commands run on
  the host, as orbsim's own user, with the working directory inside that
  directory.  For developing the CLI without root; never a stand-in for the
  isolation tests rely on.

Running commands (``exec``, both engines): stdin is passed straight through.
When orbsim's stdout/stderr are a terminal or a file, the command gets them
directly.  When they are pipes or sockets (a caller capturing the output, as
``subprocess.run(capture_output=True)`` does), the command writes into
orbsim's own pipes and orbsim copies them; when the command exits, orbsim
copies what is buffered and returns its exit code at once.  A background
process the command left behind (``sh -c 'server &'``) keeps running; if it
still holds the pipes, a detached ``cat`` per pipe reads them until it closes
them, so it never dies of SIGPIPE and the caller sees end-of-file as soon as
orbsim exits (details: ``relay.interactive``).  ``exec(..., replace=True)``
lets orbsim's process become the command when no copying is needed.

Machines have no ``/mnt/mac``: see ``namespace.py``.
"""

from __future__ import annotations

import os

from .engineapi import NOT_ROOT, EngineError
from .namespace import NamespaceEngine

__all__ = ["NOT_ROOT", "EngineError", "get_engine"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

    from .engineapi import Engine


def get_engine(environ: Optional[Mapping[str, str]] = None) -> Engine:
    """``ORBSIM_MODE=plain`` gives the unisolated :class:`PlainEngine`, anything else the namespace engine."""
    env = os.environ if environ is None else environ
    mode = env.get("ORBSIM_MODE", "").strip().lower()
    if mode == "plain":
        from .plain import PlainEngine  # start-up time: only ORBSIM_MODE=plain needs it (shutil, signal)

        return PlainEngine()
    if mode not in ("", "namespace", "isolated"):
        raise EngineError(f"ORBSIM_MODE={mode!r} is not a mode: use 'plain' or leave it unset")
    return NamespaceEngine(env)
