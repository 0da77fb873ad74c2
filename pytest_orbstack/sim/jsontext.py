"""JSON for orbsim's own files and output, without ``import json``.

Start-up time: every orbsim command is a new Python process, and ``import json``
loads ``re`` (and with it ``enum``, ``functools``, ...), about as much CPU as a
whole ``orbctl info``.  CPython's C scanner and string encoders (``_json``) do
the work here; the few lines around them give what orbsim needs of
``json.loads`` and ``json.dumps(indent=..., sort_keys=..., ensure_ascii=False)``.
Other interpreters fall back to ``json``.
"""

from __future__ import annotations

try:
    import _json
except ImportError:  # pragma: no cover - other interpreters
    import json

    _json = None  # type: ignore[assignment]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional


class _ScanContext:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder``: the defaults of ``json.loads``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


def loads(text: str) -> Any:
    """``json.loads(text)``; ``ValueError`` for anything that is not one JSON value."""
    if _json is None:
        return json.loads(text)
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        value, end = _json.make_scanner(_ScanContext())(text, start)  # type: ignore[arg-type]
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip(" \t\n\r"):
        raise ValueError("extra data after JSON")
    return value


def load_object(path: str) -> Optional[dict[str, Any]]:
    """The JSON object in the file ``path``; None if it is missing, unreadable, not JSON or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = loads(fh.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def dumps_strings(items: list[str]) -> str:
    """``json.dumps(items)`` for a list of strings (one line, ASCII)."""
    if _json is None:
        return json.dumps(items)
    return "[" + ", ".join(_json.encode_basestring_ascii(item) for item in items) + "]"


def dumps(value: Any, *, indent: int = 2, sort_keys: bool = False, ensure_ascii: bool = False) -> str:
    """``json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)``.

    For the values orbsim writes: dicts with string keys, lists, tuples, strings,
    ints, floats, booleans and None; anything else is a ``TypeError``, as in ``json``.
    orbsim's own files are written with ``ensure_ascii=True``: a string from argv, the
    environment or a path may hold lone surrogates (bytes that are not UTF-8), which
    only an escape can carry into a UTF-8 file.
    """
    if _json is None:
        return json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)
    quote = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
    encoder = _Encoder(indent, sort_keys, quote)
    encoder.encode(value, 0)
    return "".join(encoder.parts)


class _Encoder:
    """``json``'s pretty printer, for the types ``dumps`` takes."""

    def __init__(self, indent: int, sort_keys: bool, quote: Callable[[str], str]) -> None:
        self.indent = indent
        self.sort_keys = sort_keys
        self.quote = quote
        self.parts: list[str] = []

    def encode(self, value: Any, depth: int) -> None:
        parts = self.parts
        if isinstance(value, str):
            parts.append(self.quote(value))
        elif value is None or value is True or value is False:
            parts.append("null" if value is None else "true" if value else "false")
        elif isinstance(value, int):
            parts.append(int.__repr__(value))
        elif isinstance(value, float):
            parts.append(_float(value))
        elif isinstance(value, dict):
            items = sorted(value.items()) if self.sort_keys else list(value.items())
            if not items:
                parts.append("{}")
                return
            inner = "\n" + " " * (self.indent * (depth + 1))
            parts.append("{")
            for i, (key, item) in enumerate(items):
                if not isinstance(key, str):
                    raise TypeError(f"keys must be str, not {type(key).__name__}")
                parts.append(("," if i else "") + inner + self.quote(key) + ": ")
                self.encode(item, depth + 1)
            parts.append("\n" + " " * (self.indent * depth) + "}")
        elif isinstance(value, (list, tuple)):
            if not value:
                parts.append("[]")
                return
            inner = "\n" + " " * (self.indent * (depth + 1))
            parts.append("[")
            for i, item in enumerate(value):
                parts.append(("," if i else "") + inner)
                self.encode(item, depth + 1)
            parts.append("\n" + " " * (self.indent * depth) + "]")
        else:
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _float(value: float) -> str:
    if value != value:  # noqa: PLR0124 - NaN is the one float unequal to itself
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)
