"""Entry point of orbsim: ``orbsim``, or ``orbctl``/``orb`` through the shims.

The name orbsim was invoked under decides how it behaves: ``orbctl`` is the
strict subcommand CLI, ``orb WORD`` runs the subcommand WORD if there is one
and ``run`` otherwise, ``orbsim`` is ``orbctl`` plus orbsim's own commands
(``shims``, ``reset``, ``image``, ``timeline``).  Every argv is appended to
``$ORBSIM_HOME/argv.log`` first.
"""

from __future__ import annotations

import os
import sys

from . import fastrun, jsontext

# ``orbsim run`` starts here: only cheap modules (see fastrun.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


def _log_argv(argv: list[str]) -> None:
    root = fastrun.home_dir()
    try:
        os.makedirs(root, exist_ok=True)
        line = (jsontext.dumps_strings(argv) + "\n").encode()
        fd = os.open(os.path.join(root, "argv.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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
    if args[:1] in (["run"], ["exec"], ["shell"]):  # run and its aliases
        fast = fastrun.run(args[1:])
        if fast is not None:
            return fast
    # Start-up time: the full CLI (json, re, typing, every command) only when the fast path declined.
    from .cli import main as cli_main
    from .table import build_root

    code = cli_main(args, name, build_root)
    try:  # not contextlib.suppress: start-up time
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
