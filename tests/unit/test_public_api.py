"""The public surface: ``__all__`` is complete and lazy, and orbsim stays independent."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest_orbstack

PACKAGE = Path(pytest_orbstack.__file__).parent


def test_every_public_name_resolves_and_nothing_else_is_offered() -> None:
    for name in pytest_orbstack.__all__:
        assert getattr(pytest_orbstack, name) is not None, name
    assert sorted(dir(pytest_orbstack)) == sorted(pytest_orbstack.__all__)
    assert len(set(pytest_orbstack.__all__)) == len(pytest_orbstack.__all__)


def test_public_errors_share_one_base() -> None:
    errors = [
        getattr(pytest_orbstack, n)
        for n in pytest_orbstack.__all__
        if n.endswith("Error") and isinstance(getattr(pytest_orbstack, n), type)
    ]
    assert errors
    assert all(issubclass(e, pytest_orbstack.OrbstackError) for e in errors)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_orbsim_imports_nothing_from_the_plugin() -> None:
    offending = {
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in (PACKAGE / "sim").glob("*.py")
        for module in _imported_modules(path)
        if module.startswith("pytest_orbstack") and not module.startswith("pytest_orbstack.sim")
    }
    assert offending == set()


def test_orbsim_starts_without_loading_the_plugin() -> None:
    code = (
        "import sys, pytest_orbstack.sim.__main__, pytest_orbstack.sim.cli;"
        "print(sorted(m for m in sys.modules if m.startswith('pytest_orbstack.')"
        " and not m.startswith('pytest_orbstack.sim')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_layers_never_import_upwards() -> None:
    """plugin -> fixtures -> machine/provisioner -> client -> commands: no import runs back up."""
    order = ["errors", "models", "commands", "client", "naming", "ownership", "machine", "fixtures", "plugin"]
    rank = {name: i for i, name in enumerate(order)}
    offending = []
    for low in order:
        path = PACKAGE / f"{low}.py"
        for module in _imported_modules(path):
            target = module.removeprefix("pytest_orbstack.")
            if target in rank and rank[target] > rank[low]:
                offending.append(f"{low} imports {target}")
    assert offending == []
