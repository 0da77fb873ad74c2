"""Environment variables for ``orbctl run``: what a command in a machine may be given, and how.

orbctl passes a variable into the machine when ``ORBENV`` names it, taking
its value from orbctl's own environment (see docs/orbctl.md).  So the names
that would change orbctl itself (:data:`RESERVED_ENV`) are refused, values
never appear in argv, logs, errors or tracebacks (:class:`MaskedEnv`), and
:func:`for_run` adds the names to ``ORBENV``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Final

from pytest_orbstack.errors import InvalidSpecError

__all__ = ["RESERVED_ENV", "MaskedEnv", "check_env", "for_run"]

_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: ``run(env=...)`` names that would change how orbctl itself behaves (they must pass through
#: orbctl's own environment to reach the machine): refused.  Prefixes end in ``*``.
RESERVED_ENV: Final = (
    "ORB*", "PYTHON*", "LD_*", "DYLD_*", "XDG_*", "GODEBUG", "GOGC", "GOMAXPROCS", "GOMEMLIMIT",
    "GOTRACEBACK", "HOME", "PATH", "TMPDIR", "SHELL", "USER", "LOGNAME", "SSL_CERT_FILE",
    "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy",
    "https_proxy", "no_proxy", "all_proxy",
)  # fmt: skip


class MaskedEnv(dict):  # type: ignore[type-arg]
    """A dict of environment variables whose repr shows names only (tracebacks print it)."""

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{name!r}: '***'" for name in self) + "}"

    __str__ = __repr__


def _reserved(name: str) -> bool:
    """Environment names are case-sensitive: ``path`` is not ``PATH`` (the proxies are listed in both)."""
    return any(name.startswith(r[:-1]) if r.endswith("*") else name == r for r in RESERVED_ENV)


def check_env(env: Mapping[str, str]) -> None:
    """Refuse ``run(env=...)`` names that are invalid or would change orbctl's own behaviour.

    The variables reach the machine through orbctl's environment (named in
    ``ORBENV``), so ``PATH``, ``HOME``, ``LD_*``, ``ORB*``... would change what
    orbctl itself does: see :data:`RESERVED_ENV`.  Messages never show a value.
    """
    __tracebackhide__ = True
    for name in env:
        if not isinstance(name, str) or _ENV_NAME.fullmatch(name) is None:
            raise InvalidSpecError("env name", name, "expected [A-Za-z_][A-Za-z0-9_]* (value not shown)")
        if _reserved(name):
            raise InvalidSpecError(
                "env name",
                name,
                "it would change orbctl's own behaviour on the host, which passes it on; refused: "
                f"{', '.join(RESERVED_ENV)}; pass it under another name and set it in the command "
                "(env={'MY_HOME': ...} with run('HOME=\"$MY_HOME\" cmd'))",
            )
    bad = next((n for n in env if not isinstance(env[n], str) or "\0" in env[n]), None)
    if bad is not None:
        raise InvalidSpecError("env value", f"<value of {bad}>", "a string without NUL characters")


def for_run(env: Mapping[str, str]) -> dict[str, str]:
    """The variables to add for ``run``: ``env`` plus ``ORBENV`` listing their names."""
    __tracebackhide__ = True
    check_env(env)
    names = [n for n in os.environ.get("ORBENV", "").split(":") if n]
    names += [n for n in env if n not in names]
    return MaskedEnv({**env, "ORBENV": ":".join(names)})
