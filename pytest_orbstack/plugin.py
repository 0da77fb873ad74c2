"""pytest entry point: options, ini values, markers and hook wiring."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("orbstack", "OrbStack machines (pytest-orbstack)")
