"""orbsim: an ``orbctl``-compatible double whose machines are real isolated Linux environments.

Run it as ``orbsim`` (console script), or as ``orbctl``/``orb`` through the
launchers ``orbsim shims DIR`` writes.  See docs/orbsim.md.  Nothing here is
imported by the rest of pytest_orbstack, and orbsim imports nothing from it.
"""

from __future__ import annotations

__all__: list[str] = []
