"""orbsim's own imports, read with ``ast``: no cycle, and imports inside functions only for start-up time."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import pytest_orbstack.sim

SIM = Path(pytest_orbstack.sim.__file__).parent
PACKAGE = "pytest_orbstack.sim"

#: The imports allowed inside functions, each for start-up time (the comment at each says why).
#: ``orbsim run``'s fast path (``__main__`` -> ``fastrun`` -> ``enter``/``relay``) loads no CLI;
#: every other orbctl command loads the CLI but not the modules that make or copy into machines;
#: pytest loads ``pytest_plugin`` in every run, with orbsim or not.
START_UP = {
    "__main__": {"cli", "table"},
    "table": {"basic", "create", "lifecycle", "runcmd", "simcmds"},
    "fastrun": {"profile"},
    "relay": {"shlex"},
    "runner": {"shlex"},
    "enter": {"ctypes"},
    "version": {"hashlib"},
    "engine": {"plain"},
    "namespace": {"guest", "network", "rootfs", "runner", "transfer"},
    "simcmds": {"network", "rootfs", "ssh"},
    "faults": {"fnmatch", "re"},
    "ssh": {"shlex", "shutil", "socket"},
    "create": {"signal", "getpass"},
    "pytest_plugin": {"shutil", "rootfs", "engine", "namespace"},
}


def _module(path: Path) -> str:
    return path.stem


def _imports(tree: ast.AST) -> Iterator[tuple[str, bool]]:
    """(imported module, inside a function) for every import of an orbsim module's tree.

    Relative imports name orbsim modules (``from . import a`` -> ``a``, ``from .b import c`` -> ``b``);
    absolute ones keep their top-level name (``os``) or their orbsim name.
    """

    def walk(node: ast.AST, inner: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    name = alias.name
                    if name.startswith(PACKAGE + "."):
                        yield name[len(PACKAGE) + 1 :].split(".")[0], inner
                    else:
                        yield name.split(".")[0], inner
            elif isinstance(child, ast.ImportFrom):
                if child.level == 1 and child.module is None:
                    for alias in child.names:
                        yield alias.name, inner
                elif child.level == 1 and child.module:
                    yield child.module.split(".")[0], inner
                elif child.module and child.module.startswith(PACKAGE + "."):
                    yield child.module[len(PACKAGE) + 1 :].split(".")[0], inner
                elif child.module:
                    yield child.module.split(".")[0], inner
            is_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from walk(child, inner or is_function)

    yield from walk(tree, False)


def _graph() -> dict[str, list[tuple[str, bool]]]:
    modules = {_module(p): p for p in SIM.glob("*.py") if p.name != "__init__.py"}
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = [(target, inner) for target, inner in _imports(tree) if target != "__future__"]
    return graph


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module, and every module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1 or node in edges.get(node, ()):
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_orbsim_modules_import_each_other_without_a_cycle() -> None:
    graph = _graph()
    # every import counts: module level, inside functions, and under TYPE_CHECKING
    edges = {name: {t for t, _ in targets if t in graph} for name, targets in graph.items()}
    assert _cycles(edges) == []


def test_imports_inside_functions_are_only_the_start_up_ones() -> None:
    graph = _graph()
    inner = {name: {t for t, is_inner in targets if is_inner} for name, targets in graph.items()}
    unexpected = {name: sorted(found - START_UP.get(name, set())) for name, found in inner.items()}
    assert {name: found for name, found in unexpected.items() if found} == {}
    # the allow-list stays exact: an entry nobody needs any more goes
    stale = {name: sorted(allowed - inner.get(name, set())) for name, allowed in START_UP.items()}
    assert {name: found for name, found in stale.items() if found} == {}


@pytest.mark.parametrize(
    ("source", "cycles", "inner"),
    [
        ("a:from . import b\nb:from .a import x\n", [["a", "b"]], {}),
        ("a:def f():\n    from . import b\nb:from . import a\n", [["a", "b"]], {"a": {"b"}}),
        (
            "a:TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from .b import B\n"
            "b:import pytest_orbstack.sim.a\n",
            [["a", "b"]],
            {},
        ),
        ("a:from . import b\nb:import os\n", [], {}),
        ("a:class C:\n    def m(self):\n        import json\n", [], {"a": {"json"}}),
    ],
)
def test_the_checks_see_what_they_must(
    source: str, cycles: list[list[str]], inner: dict[str, set[str]]
) -> None:
    modules: dict[str, str] = {}
    name = ""
    for line in source.splitlines(keepends=True):
        head, sep, rest = line.partition(":")
        if sep and head.isidentifier() and not line.startswith(" ") and head in ("a", "b"):
            name = head
            modules[name] = rest
        else:
            modules[name] += line
    graph = {n: list(_imports(ast.parse(text))) for n, text in modules.items()}
    edges = {n: {t for t, _ in targets if t in graph} for n, targets in graph.items()}
    assert _cycles(edges) == cycles
    found = {n: {t for t, i in targets if i} for n, targets in graph.items()}
    assert {n: f for n, f in found.items() if f} == inner
