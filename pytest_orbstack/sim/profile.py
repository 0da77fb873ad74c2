"""Timing profiles (``ORBSIM_PROFILE``, ``ORBSIM_SCALE``).

``instant`` (the default) adds no delay.  ``orbstack`` imitates a real
OrbStack on a laptop: create ~12 s, clone ~6 s, start ~1 s with the IP
appearing ~1 s after start returns, stop ~1 s, delete ~1 s, run ~30 ms.
Every figure is multiplied by ``ORBSIM_SCALE`` (default 1; e.g. 0.1).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Final, Optional

PROFILES: Final[dict[str, dict[str, float]]] = {
    "instant": {},
    "orbstack": {
        "create": 12.0,
        "clone": 6.0,
        "start": 1.0,
        "ip": 1.0,
        "stop": 1.0,
        "delete": 1.0,
        "run": 0.03,
        "vm_start": 15.0,
    },
}


class ProfileError(ValueError):
    """A bad ``ORBSIM_PROFILE`` or ``ORBSIM_SCALE``."""


class Profile:
    def __init__(self, name: str, scale: float) -> None:
        if name not in PROFILES:
            raise ProfileError(f"ORBSIM_PROFILE={name!r} is not a profile: use one of {', '.join(PROFILES)}")
        self.name = name
        self.scale = scale
        self._delays = PROFILES[name]

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Profile:
        env = os.environ if environ is None else environ
        raw = env.get("ORBSIM_SCALE", "") or "1"
        try:
            scale = float(raw)
        except ValueError:
            scale = -1.0
        if not scale >= 0:
            raise ProfileError(f"ORBSIM_SCALE={raw!r} is not a number >= 0: use e.g. 1 or 0.1")
        return cls((env.get("ORBSIM_PROFILE", "") or "instant").strip().lower(), scale)

    def delay(self, op: str) -> float:
        return self._delays.get(op, 0.0) * self.scale

    def sleep(self, op: str, fraction: float = 1.0) -> None:
        seconds = self.delay(op) * fraction
        if seconds > 0:
            time.sleep(seconds)
