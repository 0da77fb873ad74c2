"""pytest-timeout: the time spent making machines is not charged to a test's timeout.

pytest-timeout arms one timer per test through its ``pytest_timeout_set_timer``
hook (around setup, call and teardown, or around the call only with
``timeout_func_only``) and disarms it through ``pytest_timeout_cancel_timer``.
:class:`TimeoutPause` watches both hooks (as hook wrappers: whatever
implementation arms the timer, pytest-timeout's signal or thread method or
another plugin's) and, while a machine is being made for the running test,
disarms the timer and arms it again afterwards with the time the test had
left.  Making a machine has deadlines of its own (``--orb-create-timeout``,
``--orb-ready-timeout``), so nothing waits forever meanwhile.

Only the main thread pauses the timer (pytest-timeout's signal method can
only be armed there); machines made by ``orb_machines.create_many`` in
worker threads are charged as before.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any, Optional

import pytest

__all__ = ["TimeoutPause"]

#: Below this, a paused timer is armed again with this much left (a zero timeout means "none").
_MIN_LEFT = 0.01


class TimeoutPause:
    """pytest-timeout hook wrappers, and :meth:`paused` around the making of a machine.

    Registered only when pytest-timeout is active and ``--orb-timeout-setup`` is ``exclude``.
    """

    def __init__(self) -> None:
        #: the test whose timer runs, its settings, and when the timer was armed
        self._armed: Optional[tuple[pytest.Item, Any, float]] = None
        self._depth = 0

    @pytest.hookimpl(hookwrapper=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> Generator[None, Any, None]:
        yield
        self._armed = (item, settings, time.monotonic())

    @pytest.hookimpl(hookwrapper=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> Generator[None, Any, None]:
        yield
        self._armed = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The running test's timer stands still inside this block (nested blocks: the outermost)."""
        armed = self._armed
        if armed is None or self._depth or threading.current_thread() is not threading.main_thread():
            yield
            return
        item, settings, since = armed
        hook = item.config.hook
        left = float(settings.timeout) - (time.monotonic() - since)
        hook.pytest_timeout_cancel_timer(item=item)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            hook.pytest_timeout_set_timer(item=item, settings=settings._replace(timeout=max(left, _MIN_LEFT)))
