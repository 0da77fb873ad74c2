"""The per-test ``orb`` marker: its arguments parsed and checked, and the spec it gives a test.

``@pytest.mark.orb(image=..., arch=..., user=..., user_data=...)`` overrides the
session's settings (``settings.py``) for ``orb_vm_fresh`` and ``orb_machines``:
marker > command line > environment > ini > default.  A wrong marker is a
:class:`~pytest_orbstack.errors.MarkerError` naming the test and the argument.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import pytest

from pytest_orbstack.errors import InvalidSpecError, MarkerError
from pytest_orbstack.models import MachineSpec
from pytest_orbstack.settings import SPEC_PARSERS, Settings

__all__ = [
    "MARKER_ARGS",
    "MARKER_LINE",
    "check_marker_use",
    "marker_overrides",
    "spec_fields",
    "spec_for",
]

#: The arguments ``@pytest.mark.orb`` accepts.
MARKER_ARGS: Final = ("image", "arch", "user", "user_data")
MARKER_LINE: Final = (
    "orb(image=None, arch=None, user=None, user_data=None): the machine spec of orb_vm_fresh and the "
    "defaults of orb_machines for this test; every test using a machine fixture has it, so "
    "-m 'not orb' deselects them (pytest-orbstack)"
)


def spec_fields(values: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """Spec fields given in test code (``orb_machines.create(...)``), validated as a marker's are.

    ``None`` values are left out; ``user_data`` is relative to ``base`` (the
    test file's directory).  A bad value raises :class:`InvalidSpecError`
    naming the field and what is allowed.
    """
    found: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if not isinstance(value, str) and not (key == "user_data" and isinstance(value, os.PathLike)):
            kind = "a str or a path" if key == "user_data" else "a str"
            raise InvalidSpecError(key, value, f"expected {kind}, got {type(value).__name__}")
        try:
            found[key] = SPEC_PARSERS[key](os.fspath(value), base)
        except (TypeError, ValueError) as exc:
            raise InvalidSpecError(key, value, str(exc)) from None
    return found


#: Fixtures whose machines an ``orb`` marker shapes.
MARKED_FIXTURES: Final = ("orb_vm_fresh", "orb_machines")


def check_marker_use(item: pytest.Item) -> None:
    """An ``orb`` marker with arguments on a test that only uses ``orb_vm`` is a :class:`MarkerError`.

    ``orb_vm`` is shared by the whole worker and made from the options, so
    such a marker would be silently ignored.  Markers of a class or module
    apply to many tests and are left alone.
    """
    fixtures = getattr(item, "fixturenames", ())
    if "orb_vm" not in fixtures or any(name in fixtures for name in MARKED_FIXTURES):
        return
    if any(mark.name == "orb" and mark.kwargs for mark in item.own_markers):
        raise MarkerError(
            f"{item.nodeid}: @pytest.mark.orb does not apply to orb_vm (one machine shared by the "
            "worker, made from the --orb-* options); use orb_vm_fresh or orb_machines, or the options"
        )


def marker_overrides(item: pytest.Item) -> dict[str, Any]:
    """The spec fields set by ``orb`` markers on ``item`` (closest marker wins), validated.

    Raises :class:`MarkerError` for a positional argument, an unknown argument,
    an argument given twice at one level (two ``orb`` markers on one function)
    or a bad value.  ``user_data`` paths are relative to the test file's directory.
    """
    found: dict[str, Any] = {}
    checked: list[Any] = []
    for node, mark in item.iter_markers_with_node("orb"):
        if mark.args:
            raise MarkerError(
                f"{item.nodeid}: @pytest.mark.orb takes keyword arguments only "
                f"({', '.join(MARKER_ARGS)}), got positional {mark.args!r}"
            )
        if node not in checked:
            _check_same_level(item, node)
            checked.append(node)
        for key, value in mark.kwargs.items():
            if key not in MARKER_ARGS:
                raise MarkerError(
                    f"{item.nodeid}: @pytest.mark.orb got an unknown argument {key!r}; "
                    f"allowed: {', '.join(MARKER_ARGS)}"
                )
            if key in found or value is None:
                continue  # a closer marker already set it
            try:
                found.update(spec_fields({key: value}, Path(str(item.path)).parent))
            except InvalidSpecError as exc:
                where = f"{item.nodeid}: @pytest.mark.orb({key}={value!r})"
                raise MarkerError(f"{where}: {exc.allowed}") from None
    return found


def _check_same_level(item: pytest.Item, node: Any) -> None:
    """Two ``orb`` markers on the same node may not set the same argument."""
    seen: dict[str, int] = {}
    for other in node.own_markers:
        if other.name != "orb":
            continue
        for key in other.kwargs:
            seen[key] = seen.get(key, 0) + 1
    twice = sorted(key for key, count in seen.items() if count > 1)
    if twice:
        raise MarkerError(
            f"{item.nodeid}: @pytest.mark.orb argument {twice[0]!r} is given twice (duplicate orb markers)"
        )


def spec_for(settings: Settings, overrides: Mapping[str, Any]) -> MachineSpec:
    """The spec of a machine for a test: marker values over the run's settings."""
    base = settings.spec
    return MachineSpec(
        image=overrides.get("image", base.image),
        arch=overrides.get("arch", base.arch),
        user=overrides.get("user", base.user),
        user_data=overrides.get("user_data", base.user_data),
    )
