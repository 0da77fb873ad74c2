"""Fixtures of the scenario suite; the helpers are in reliability_helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import Scenario


@pytest.fixture
def scenario(pytester: pytest.Pytester, tmp_path: Path, orbsim_bin: str) -> Iterator[Scenario]:
    """A fresh orbsim home and state directory, and the inner pytest runs of one scenario."""
    base = tmp_path / "scenario"
    base.mkdir()
    sc = Scenario(pytester, base, orbsim_bin)
    yield sc
    sc.cleanup()
