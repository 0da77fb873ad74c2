"""What a base machine is: its key, from the spec and the provision hooks' source.

A base is one per *base key*: image, arch, user, the cloud-init user-data (its
content) and the registered ``pytest_orbstack_provision`` implementations
(their source code, in call order).  Changing a hook gives a new key, so a
base kept across runs (``--orb-reuse``) is rebuilt when its hooks change.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final, Optional

from pytest_orbstack.naming import REUSE_PREFIX

if TYPE_CHECKING:
    from pytest_orbstack.models import MachineSpec

__all__ = ["base_key", "hook_sources", "provision_sources", "reused_base_name"]

#: Length of the hex key in file and machine names.
_KEY_CHARS: Final = 16


def _source_of(function: Callable[..., object]) -> str:
    """The source code of a hook implementation, or failing that its compiled code."""
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        code = getattr(function, "__code__", None)
        return code.co_code.hex() if code is not None else repr(function)


def hook_sources(hookimpls: Iterable[Any]) -> list[str]:
    """One text per ``pytest_orbstack_provision`` implementation: where it lives and its source.

    ``hookimpls`` are pluggy ``HookImpl`` objects (``config.hook.pytest_orbstack_provision.get_hookimpls()``),
    given in call order, which is part of what a base is.
    """
    texts = []
    for impl in hookimpls:
        function = impl.function
        where = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"
        texts.append(f"{where}\n{_source_of(function)}")
    return texts


def provision_sources(hook_caller: Any) -> list[str]:
    """:func:`hook_sources` of the implementations registered on ``config.hook.pytest_orbstack_provision``."""
    return hook_sources(hook_caller.get_hookimpls())


def _file_digest(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:  # validated earlier; a file removed since then still gets a distinct key
        return f"unreadable: {exc.strerror}"


def base_key(spec: MachineSpec, sources: Sequence[str]) -> str:
    """The hex key of the base for ``spec`` provisioned by hooks with ``sources``."""
    payload = {
        "image": spec.image,
        "arch": spec.arch,
        "user": spec.user,
        "user_data": _file_digest(spec.user_data),
        "provision": list(sources),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_KEY_CHARS]


def reused_base_name(key: str) -> str:
    """The name of the base kept across runs (``--orb-reuse``) for ``key``."""
    return f"{REUSE_PREFIX}{key}"
