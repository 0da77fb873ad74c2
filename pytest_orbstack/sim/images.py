"""Distros, versions and architectures as OrbStack names them.

Every image is *reported* as OrbStack would report it (``ubuntu:22.04`` ->
distro ``ubuntu``, version ``jammy``) whatever rootfs really serves it.
The version lists of distros other than Debian and Ubuntu are orbsim's own
approximation of OrbStack's image index (first entry = default version).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, Optional

#: CLI distro name -> image name in OrbStack's records.
IMAGE_NAMES: Final[dict[str, str]] = {
    "alma": "almalinux",
    "alpine": "alpine",
    "arch": "archlinux",
    "centos": "centos",
    "debian": "debian",
    "devuan": "devuan",
    "fedora": "fedora",
    "gentoo": "gentoo",
    "kali": "kali",
    "nixos": "nixos",
    "openeuler": "openeuler",
    "opensuse": "opensuse",
    "oracle": "oracle",
    "rocky": "rockylinux",
    "ubuntu": "ubuntu",
    "void": "voidlinux",
}

#: Version aliases (numbers -> codenames).
ALIASES: Final[dict[str, dict[str, str]]] = {
    "debian": {"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie"},
    "ubuntu": {
        "20.04": "focal",
        "22.04": "jammy",
        "24.04": "noble",
        "24.10": "oracular",
        "25.04": "plucky",
    },
}

#: Known versions per distro; the first is the default.
VERSIONS: Final[dict[str, tuple[str, ...]]] = {
    "alma": ("9", "8"),
    "alpine": ("3.20", "3.19", "3.18", "edge"),
    "arch": ("current",),
    "centos": ("9", "10"),
    "debian": ("bookworm", "bullseye", "buster", "trixie"),
    "devuan": ("daedalus", "chimaera"),
    "fedora": ("40", "39", "41"),
    "gentoo": ("current",),
    "kali": ("current",),
    "nixos": ("24.05", "23.11"),
    "openeuler": ("24.03", "22.03"),
    "opensuse": ("tumbleweed", "15.6", "15.5"),
    "oracle": ("9", "8"),
    "rocky": ("9", "8"),
    "ubuntu": ("noble", "focal", "jammy", "oracular", "plucky"),
    "void": ("current",),
}

#: Distros without a cloud-init (``-c``) variant.
NO_CLOUD: Final = frozenset({"arch", "gentoo", "void", "nixos"})

ARCHES: Final = ("amd64", "arm64")

#: a machine name: an ASCII letter or digit, then at least one more of those, ``.`` or ``-``
_NAME_FIRST: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST: Final = _NAME_FIRST | {".", "-"}
RESERVED: Final = frozenset({"default", "vm", "host", "services", "gateway", "k8s", "docker"})


def host_arch() -> str:
    """The host's architecture in OrbStack's spelling."""
    machine = os.uname().machine.lower()  # what platform.machine() returns, without its import
    return "arm64" if machine in ("aarch64", "arm64") else "amd64"


def valid_name(name: str) -> bool:
    """``^[a-zA-Z0-9][a-zA-Z0-9.-]+$`` (without ``re``: start-up time), and not a reserved name."""
    return (
        len(name) >= 2
        and name[0] in _NAME_FIRST
        and all(c in _NAME_REST for c in name[1:])
        and name.lower() not in RESERVED
    )


def split_image(spec: str) -> tuple[str, Optional[str]]:
    """``"ubuntu:22.04"`` -> ``("ubuntu", "22.04")``; no version -> ``None``."""
    distro, sep, ver = spec.partition(":")
    return distro, (ver if sep else None)


def resolve(distro: str, ver: Optional[str], arch: str, variant: str) -> tuple[str, str, bool]:
    """(image name, version as OrbStack records it, whether such an image exists)."""
    image = IMAGE_NAMES[distro]
    known = VERSIONS[distro]
    if not ver:
        return image, known[0], variant != "cloud" or distro not in NO_CLOUD
    codename = ALIASES.get(distro, {}).get(ver, ver)
    exists = codename in known and (variant != "cloud" or distro not in NO_CLOUD)
    return image, codename, exists
