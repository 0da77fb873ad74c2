"""Entry point of orbsim: ``orbsim``, or ``orbctl``/``orb`` through the shims.

The name orbsim was invoked under decides how it behaves: ``orbctl`` is the
strict subcommand CLI, ``orb WORD`` runs the subcommand WORD if there is one
and ``run`` otherwise, ``orbsim`` is ``orbctl`` plus orbsim's own commands
(``shims``, ``reset``, ``image``, ``timeline``).  Every argv is appended to
``$ORBSIM_HOME/argv.log`` first.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Optional


def _log_argv(argv: list[str]) -> None:
    import json

    from .state import home

    root = home()
    try:
        root.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(argv) + "\n").encode()
        fd = os.open(root / "argv.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one O_APPEND write per line: concurrent writers never interleave
        finally:
            os.close(fd)
    except OSError:
        pass


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    name = prog or os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "orbsim")
    if name not in ("orbctl", "orb"):
        name = "orbsim"
    _log_argv([name, *args])
    from .cli import main as cli_main

    code = cli_main(args, name)
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
