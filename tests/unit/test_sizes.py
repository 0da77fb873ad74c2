"""Small pieces: no long module without its reason at the top, no class handed a crowd of arguments.

Read from the source of ``pytest_orbstack/`` and ``pytest_orbstack/sim/`` with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional

import pytest_orbstack

PACKAGE = Path(pytest_orbstack.__file__).parent

#: Lines a module may have without saying why at the top of its docstring.
LONG_MODULE = 350
#: The words that start that reason.
REASON = "Longer than most modules on purpose:"
#: Arguments a class's constructor may take (``self`` not counted).
MOST_ARGUMENTS = 7
#: Classes that take more, with the reason.
CROWDED: dict[str, str] = {
    # a declaration of one command (cobra.Command's fields), not an object handed collaborators
    "sim/cobra.py:Command": "mirrors cobra",
    # a value type (what create's flags ask for), a NamedTuple but for typing's start-up time
    "sim/create.py:CreateOptions": "create's flags",
}


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def long_without_reason(source: str) -> Optional[int]:
    """The line count of ``source`` when it is long and its docstring gives no reason, else ``None``."""
    lines = len(source.splitlines())
    if lines <= LONG_MODULE:
        return None
    docstring = ast.get_docstring(ast.parse(source)) or ""
    return None if REASON in docstring else lines


def _decorated_as(node: ast.ClassDef, name: str) -> Optional[ast.expr]:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (isinstance(target, ast.Name) and target.id == name) or (
            isinstance(target, ast.Attribute) and target.attr == name
        ):
            return decorator
    return None


def _is_record(node: ast.ClassDef) -> bool:
    """A frozen dataclass or a NamedTuple: a value with one field per fact, not an object with a job."""
    if any(isinstance(base, ast.Name) and base.id == "NamedTuple" for base in node.bases):
        return True
    decorator = _decorated_as(node, "dataclass")
    return isinstance(decorator, ast.Call) and any(
        keyword.arg == "frozen" and isinstance(keyword.value, ast.Constant) and keyword.value.value is True
        for keyword in decorator.keywords
    )


def constructor_arguments(node: ast.ClassDef) -> Optional[int]:
    """How many arguments a class's constructor takes: its ``__init__``, else a dataclass's fields."""
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            args = item.args
            return len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) - 1
    if _decorated_as(node, "dataclass") is None:
        return None
    return sum(
        1
        for item in node.body
        if isinstance(item, ast.AnnAssign)
        and isinstance(item.target, ast.Name)
        and "ClassVar" not in ast.unparse(item.annotation)
    )


def crowded_classes(module: str, source: str) -> list[str]:
    """``module:Class (N arguments)`` for each class whose constructor takes too many."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef) or _is_record(node):
            continue
        count = constructor_arguments(node)
        if count is not None and count > MOST_ARGUMENTS and f"{module}:{node.name}" not in CROWDED:
            found.append(f"{module}:{node.name} ({count} arguments)")
    return found


def test_every_long_module_says_why_at_its_top() -> None:
    found = {}
    for path in _modules():
        lines = long_without_reason(path.read_text())
        if lines is not None:
            found[_relative(path)] = lines
    assert found == {}, f"over {LONG_MODULE} lines without {REASON!r} in the docstring"


def test_no_class_takes_more_than_seven_arguments() -> None:
    found = [line for path in _modules() for line in crowded_classes(_relative(path), path.read_text())]
    assert found == []


def test_every_exception_is_still_there() -> None:
    for name in CROWDED:
        module, _, cls = name.partition(":")
        tree = ast.parse((PACKAGE / module).read_text())
        assert any(isinstance(node, ast.ClassDef) and node.name == cls for node in ast.walk(tree)), name


# --- the checks catch what they are for ------------------------------------------------------------


def test_a_long_module_without_a_reason_is_found() -> None:
    body = "x = 1\n" * LONG_MODULE
    assert long_without_reason(f'"""One job."""\n{body}') == LONG_MODULE + 1
    assert long_without_reason(f'"""One job.\n\n{REASON} it is a table."""\n{body}') is None
    assert long_without_reason('"""One job."""\n' + "x = 1\n" * (LONG_MODULE - 1)) is None  # at the limit


def test_a_crowded_constructor_is_found() -> None:
    eight = ", ".join(f"a{n}" for n in range(8))
    seven = ", ".join(f"a{n}" for n in range(7))
    assert crowded_classes("m.py", f"class Owner:\n    def __init__(self, {eight}): ...\n") == [
        "m.py:Owner (8 arguments)"
    ]
    assert crowded_classes("m.py", f"class Owner:\n    def __init__(self, {seven}): ...\n") == []
    assert crowded_classes("m.py", f"class Owner:\n    def __init__(self, *, {eight}): ...\n") == [
        "m.py:Owner (8 arguments)"
    ]
    fields = "".join(f"    a{n}: int\n" for n in range(8))
    mutable = f"@dataclass\nclass Tally:\n{fields}"
    assert crowded_classes("m.py", mutable) == ["m.py:Tally (8 arguments)"]
    assert crowded_classes("m.py", f"@dataclasses.dataclass(eq=False)\nclass Tally:\n{fields}") == [
        "m.py:Tally (8 arguments)"
    ]
    assert crowded_classes("m.py", f"@dataclass(frozen=True)\nclass Info:\n{fields}") == []
    assert crowded_classes("m.py", f"class Info(NamedTuple):\n{fields}") == []
    assert crowded_classes("m.py", f"@dataclass\nclass Tally:\n{fields}    n: ClassVar[int] = 0\n") == [
        "m.py:Tally (8 arguments)"
    ]
