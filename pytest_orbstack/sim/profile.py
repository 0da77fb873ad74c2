"""Timing profiles (``ORBSIM_PROFILE``, ``ORBSIM_SCALE``).

``instant`` (the default) adds no delay.  ``orbstack`` imitates OrbStack 2.0
on a laptop (orbctl-spec.md, "Timing and concurrency"):

- create ~12 s alone, of which ~7 s is the image download: OrbStack keeps no
  image cache, so creates running at the same time share the download
  bandwidth and N of them each take about N times as long for that part;
- clone ~0.1 s (a btrfs subvolume snapshot: near-instant, copy-on-write);
- start ~1 s with the IP appearing ~1 s after start returns; stop ~1 s;
- delete ~0.2 s (a subvolume delete); run ~30 ms.

``orbstack-copy`` is the same with the slow clone path (no subvolumes: the
source is frozen and copied), clone ~6 s and delete ~1 s, as on installs
without the fast path.

Every figure is multiplied by ``ORBSIM_SCALE`` (default 1; e.g. 0.1).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # start-up time: every `run` of a timed profile loads this module (fastrun.py)
    from collections.abc import Mapping
    from typing import Final, Optional

_ORBSTACK: Final[dict[str, float]] = {
    "create": 12.0,
    "clone": 0.1,
    "start": 1.0,
    "ip": 1.0,
    "stop": 1.0,
    "delete": 0.2,
    "run": 0.03,
    "vm_start": 15.0,
}

PROFILES: Final[dict[str, dict[str, float]]] = {
    "instant": {},
    "orbstack": _ORBSTACK,
    "orbstack-copy": {**_ORBSTACK, "clone": 6.0, "delete": 1.0},
}

#: The share of a create that is the image download (the rest is setup and boot).
DOWNLOAD_SHARE: Final = 0.6
#: How often a download looks at how many others share the bandwidth.
_TICK: Final = 0.02


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

    def download(self, spool: str) -> None:
        """The image download of a create, sharing the bandwidth with every other one in ``spool``.

        Each download in progress is a file ``<pid>-<n>`` in ``spool`` (one per
        OrbStack, i.e. per orbsim home).  Every tick a download advances by the
        time passed divided by the number of downloads whose process is alive,
        so N creates at once each take N times as long for this part.
        """
        seconds = self.delay("create") * DOWNLOAD_SHARE
        if seconds <= 0:
            return
        os.makedirs(spool, exist_ok=True)
        marker = os.path.join(spool, f"{os.getpid()}-{time.monotonic_ns()}")
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644))
        try:
            done, last = 0.0, time.monotonic()
            while done < seconds:
                time.sleep(_TICK)
                now = time.monotonic()
                done += (now - last) / max(1, sharing(spool))
                last = now
        finally:
            try:
                os.unlink(marker)
            except FileNotFoundError:
                pass


def sharing(spool: str) -> int:
    """How many downloads in ``spool`` belong to a live process (a killed create's file is dropped)."""
    count = 0
    for entry in os.scandir(spool):
        pid = entry.name.partition("-")[0]
        if pid.isdigit() and _alive(int(pid)):
            count += 1
        else:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:  # dropped by another process already
                continue
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
