"""orbsim takes the user names OrbStack does: macOS short names with '.' and capitals."""

from __future__ import annotations

import pytest

from pytest_orbstack.sim import fsutil
from pytest_orbstack.sim.engine import EngineError


@pytest.mark.parametrize("name", ["john.doe", "John", "j_doe-2", "_svc", "x" * 32, "1st"])
def test_macos_short_names_are_accepted(name: str) -> None:
    fsutil.check_username(name)


@pytest.mark.parametrize("name", ["", "-x", "bob smith", "a/b", "x" * 33, "1000", ".", "..", "a:b"])
def test_names_linux_refuses_are_refused(name: str) -> None:
    with pytest.raises(EngineError, match="invalid user name"):
        fsutil.check_username(name)
