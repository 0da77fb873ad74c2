"""The ``fake_orbctl`` fixture: the executable orbctl stand-in of :mod:`fakes`, its grandchild reaped."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeOrbctl, is_our_sleep


@pytest.fixture
def fake_orbctl(tmp_path: Path) -> Iterator[FakeOrbctl]:
    directory = tmp_path / "fake-bin"
    directory.mkdir()
    fake = FakeOrbctl(directory)
    yield fake
    pid = fake.grandchild_pid()
    if pid is not None and is_our_sleep(pid):  # only ever the sleep this fake started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
