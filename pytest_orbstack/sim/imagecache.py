"""Where the machine image is, and whether it is complete: what every clone and boot asks.

``rootfs.py`` builds the image; this module only names its place, without
``rootfs``'s imports (``hashlib``, ``tempfile``, ``shutil``, ``pathlib``): start-up time.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

#: Name of the cached image directory; bump the suffix when the recipe changes.
IMAGE_NAME = "debian-bookworm-2"
#: The file inside a complete image (written last, by ``rootfs``).
STAMP = ".orbsim-image.json"


def directory(environ: Optional[Mapping[str, str]] = None) -> str:
    """``$ORBSIM_IMAGE_DIR``, default ``/var/cache/orbsim``: the host-wide image cache."""
    env = os.environ if environ is None else environ
    return env.get("ORBSIM_IMAGE_DIR") or "/var/cache/orbsim"


def path(environ: Optional[Mapping[str, str]] = None) -> str:
    """Where the rootfs is (or will be)."""
    return os.path.join(directory(environ), IMAGE_NAME)


def ready(environ: Optional[Mapping[str, str]] = None) -> bool:
    return os.path.isfile(os.path.join(path(environ), STAMP))
