"""The public surface: ``__all__`` is complete and lazy, and orbsim stays independent."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_orbstack
from pytest_orbstack import CommandResult, MachineDeadlineError, TransientOrbctlError, parse_machine_info
from pytest_orbstack.errors import OrbctlCommandError, OrbstackError
from pytest_orbstack.models import parse_machine_info as parse_in_models
from pytest_orbstack.results import RunResult

PACKAGE = Path(pytest_orbstack.__file__).parent


def test_every_public_name_resolves_and_nothing_else_is_offered() -> None:
    for name in pytest_orbstack.__all__:
        assert getattr(pytest_orbstack, name) is not None, name
    assert sorted(dir(pytest_orbstack)) == sorted(pytest_orbstack.__all__)
    assert len(set(pytest_orbstack.__all__)) == len(pytest_orbstack.__all__)


def test_names_the_changelog_announced_still_import_outside_all() -> None:
    assert CommandResult is RunResult is pytest_orbstack.RunResult
    assert issubclass(TransientOrbctlError, OrbctlCommandError)
    assert issubclass(MachineDeadlineError, OrbstackError)
    assert parse_machine_info is parse_in_models
    for name in ("CommandResult", "MachineDeadlineError", "TransientOrbctlError", "parse_machine_info"):
        assert name not in pytest_orbstack.__all__
    with pytest.raises(AttributeError, match="no attribute 'OrbctlParseError'"):
        pytest_orbstack.OrbctlParseError  # noqa: B018 - the access is the test


def test_marker_errors_are_orbstack_errors() -> None:
    assert issubclass(pytest_orbstack.MarkerError, pytest_orbstack.OrbstackError)


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


def sim_imports(source: str) -> set[str]:
    """What in ``source`` imports orbsim (``pytest_orbstack.sim`` or a module of it)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pytest_orbstack.sim"))
        elif isinstance(node, ast.ImportFrom) and node.module == "pytest_orbstack":
            found.update(f"pytest_orbstack.{a.name}" for a in node.names if a.name == "sim")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_orbstack.sim"):
            found.add(str(node.module))
    return found


def test_the_plugin_imports_nothing_from_orbsim() -> None:
    offending = {f"{path.name}: {sorted(sim_imports(path.read_text()))}" for path in PACKAGE.glob("*.py")}
    assert {line for line in offending if not line.endswith("[]")} == set()
    assert sim_imports("from pytest_orbstack import sim\n") == {"pytest_orbstack.sim"}
    assert sim_imports("def f():\n    from pytest_orbstack.sim.engine import get_engine\n") == {
        "pytest_orbstack.sim.engine"
    }
    assert sim_imports("import pytest_orbstack.sim.cli\n") == {"pytest_orbstack.sim.cli"}


def test_orbsim_starts_without_loading_the_plugin() -> None:
    code = (
        "import sys, pytest_orbstack.sim.__main__, pytest_orbstack.sim.cli;"
        "print(sorted(m for m in sys.modules if m.startswith('pytest_orbstack.')"
        " and not m.startswith('pytest_orbstack.sim')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
