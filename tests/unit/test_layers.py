"""The plugin's layers, read from its imports: nothing runs back up, nothing private crosses modules.

Every import of every module of ``pytest_orbstack/`` counts: at module level, under
``TYPE_CHECKING`` and inside functions.  docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

import pytest_orbstack

PACKAGE = Path(pytest_orbstack.__file__).parent

#: Bottom to top.  A module may import its own layer and the layers below it.
LAYERS: dict[str, tuple[str, ...]] = {
    "values": ("errors", "models", "results", "events"),
    "orbctl": (
        "commands",
        "runner",
        "orbenv",
        "classifier",
        "client",
        "orbctl",
        "backend",
        "processes",
        "naming",
        "retry",
        "diagnostics",
        "ssh",
    ),
    "settings": ("parsers", "options", "settings"),
    "lifecycle": (
        "readiness",
        "deadline",
        "context",
        "cloudinit",
        "breaker",
        "deleter",
        "machine",
        "health",
        "sources",
        "provisioner",
        "basekey",
        "basestore",
        "basebuild",
        "clonesource",
        "bases",
        "prefetch",
        "ownership",
        "reaper",
        "watchdog",
        "hosts",
        "testinfra_backend",
        "plan",
    ),
    "pytest": (
        "marker",
        "availability",
        "hookspecs",
        "lookahead",
        "timeout",
        "signals",
        "report",
        "terminal",
        "runtime",
        "fixtures",
        "guard",
        "xdist_hooks",
        "plugin",
    ),
    "public": ("__init__",),
}
RANK = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


class Import(NamedTuple):
    target: str  # a module of the package, without "pytest_orbstack."
    names: tuple[str, ...]  # the names taken from it ("" for the module itself)
    line: int


def _modules() -> list[str]:
    return sorted(path.stem for path in PACKAGE.glob("*.py"))


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists()


def imports_of(source: str) -> Iterator[Import]:
    """Every import of a package module in ``source``, wherever it stands."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pytest_orbstack."):
                    yield Import(alias.name.split(".")[1], ("",), node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "pytest_orbstack":
                for alias in node.names:
                    if _is_module(alias.name):
                        yield Import(alias.name, ("",), node.lineno)
                    else:
                        yield Import("__init__", (alias.name,), node.lineno)
            elif node.module.startswith("pytest_orbstack.") and not node.module.startswith(
                "pytest_orbstack.sim"
            ):
                yield Import(node.module.split(".")[1], tuple(a.name for a in node.names), node.lineno)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(source: str) -> Iterator[tuple[str, int]]:
    """``x._name`` where ``x`` is another package module, or a parameter typed with a class of one."""
    tree = ast.parse(source)
    modules: set[str] = set()
    classes: set[str] = set()
    for found in imports_of(source):
        for name in found.names:
            if name == "":
                modules.add(found.target)
            elif name[:1].isupper():
                classes.add(name)

    def private_attribute(node: ast.AST, owners: set[str]) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in owners
        )

    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        args = function.args
        typed = {
            arg.arg
            for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs)
            if isinstance(arg.annotation, ast.Name) and arg.annotation.id in classes
        }
        for node in ast.walk(function):
            if private_attribute(node, typed):
                yield f"{node.value.id}.{node.attr}", node.lineno  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if private_attribute(node, modules):
            yield f"{node.value.id}.{node.attr}", node.lineno  # type: ignore[attr-defined]


def violations(module: str, source: str) -> list[str]:
    """What in ``source`` (the text of ``module``) breaks the layers."""
    found = []
    for imp in imports_of(source):
        if imp.target == module:
            continue
        if RANK[imp.target] > RANK[module]:
            found.append(
                f"{module}.py:{imp.line} imports {imp.target} "
                f"({LAYER_OF[module]} layer importing the {LAYER_OF[imp.target]} layer above it)"
            )
        for name in imp.names:
            if _private(name):
                found.append(f"{module}.py:{imp.line} imports the private {imp.target}.{name}")
    for use, line in private_uses(source):
        found.append(f"{module}.py:{line} uses the private {use} of another module")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (one path per cycle found)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def _graph(sources: dict[str, str]) -> dict[str, set[str]]:
    return {
        module: {imp.target for imp in imports_of(text) if imp.target != module}
        for module, text in sources.items()
    }


def _sources() -> dict[str, str]:
    return {module: (PACKAGE / f"{module}.py").read_text() for module in _modules()}


def test_every_module_has_a_layer() -> None:
    assert sorted(set(_modules()) - set(RANK)) == []
    assert sorted(set(RANK) - set(_modules())) == []


def test_no_import_runs_up_a_layer_or_takes_a_private_name() -> None:
    found = [line for module, text in _sources().items() for line in violations(module, text)]
    assert found == []


def test_the_imports_have_no_cycle() -> None:
    assert cycles(_graph(_sources())) == []


# --- the checks catch what they are for ------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("provisioner", "from pytest_orbstack.report import Stats", "lifecycle layer importing the pytest"),
        ("settings", "from pytest_orbstack import bases", "settings layer importing the lifecycle"),
        ("settings", "from pytest_orbstack.provisioner import MachineSpec", "importing the lifecycle"),
        ("machine", "from pytest_orbstack.report import Stats", "importing the pytest layer"),
        ("client", "import pytest_orbstack.machine", "orbctl layer importing the lifecycle"),
        ("models", "from pytest_orbstack.client import RunResult", "values layer importing the orbctl"),
        ("reaper", "from pytest_orbstack.ownership import _PurgeClient", "private ownership._PurgeClient"),
        ("fixtures", "from pytest_orbstack import Machine", "pytest layer importing the public"),
    ],
)
def test_each_kind_of_bad_import_is_found(module: str, line: str, expected: str) -> None:
    for wrapped in (
        f"{line}\n",
        f"from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    {line}\n",
        f"def late() -> None:\n    {line}\n",
    ):
        found = violations(module, wrapped)
        assert any(expected in text for text in found), (wrapped, found)


def test_a_private_method_called_on_another_modules_object_is_found() -> None:
    source = (
        "from pytest_orbstack.machine import Machine\n"
        "def wait_ready(self, machine: Machine) -> None:\n"
        "    machine._remember(info)\n"
    )
    assert violations("provisioner", source) == [
        "provisioner.py:3 uses the private machine._remember of another module"
    ]
    assert violations("provisioner", "from pytest_orbstack import commands\ncommands._known_names\n") == [
        "provisioner.py:2 uses the private commands._known_names of another module"
    ]


def test_a_type_only_cycle_is_found() -> None:
    sources = _sources()
    sources["machine"] += "\nif TYPE_CHECKING:\n    from pytest_orbstack.provisioner import Provisioner\n"
    assert ["machine", "provisioner", "machine"] in cycles(_graph(sources))


def test_what_is_allowed_is_not_reported() -> None:
    source = (
        "from pytest_orbstack.errors import first_line\n"
        "from pytest_orbstack import naming\n"
        "def f(self, other: Thing) -> None:\n"
        "    self._lock\n"
        "    other._private\n"
    )
    assert violations("provisioner", source) == []


#: Modules that make machines or keep bases: handed a ``context.MakeContext``, never the provisioner.
SOURCES = ("context", "sources", "clonesource", "prefetch", "basekey", "basestore", "basebuild")


def owner_imports(module: str, source: str) -> list[str]:
    """Where ``source`` (the text of ``module``) imports the provisioner that owns it."""
    return [f"{module}.py:{imp.line}" for imp in imports_of(source) if imp.target == "provisioner"]


def test_machine_sources_do_not_know_their_owner() -> None:
    sources = _sources()
    assert [line for module in SOURCES for line in owner_imports(module, sources[module])] == []


def test_an_owner_import_is_found() -> None:
    line = "if TYPE_CHECKING:\n    from pytest_orbstack.provisioner import Provisioner\n"
    assert owner_imports("prefetch", f"from typing import TYPE_CHECKING\n{line}") == ["prefetch.py:3"]
