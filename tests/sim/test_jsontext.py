"""jsontext: what orbsim reads and writes as JSON without ``import json`` matches ``json``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_orbstack
from pytest_orbstack.sim import jsontext

VALUES: list[object] = [
    {"a": [1, 2.5, None, True, False, "x\u00e9"], "b": {}, "c": [], "z": {"y": {"x": [[], {}]}}},
    {"machines": {"01J": {"name": "vm", "created_at": 1764590000.123456, "ip4": None}}, "vm": "running"},
    ["orbctl", 'é"\n\\', "\x00", "\U0001f600", "", "\u2028"],
    (1, 2),
    -0.0,
    1e300,
    10**30,
    "just a string",
    None,
    {"b": 1, "a": 2, "B": 3},
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("indent", [1, 2])
@pytest.mark.parametrize("sort_keys", [False, True])
def test_dumps_is_json_dumps(value: object, indent: int, sort_keys: bool) -> None:
    want = json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
    assert jsontext.dumps(value, indent=indent, sort_keys=sort_keys) == want


@pytest.mark.parametrize("value", [*VALUES, {"k": "caf\udcc3", "\udcff": ["\u00e9\U0001f600"]}])
def test_dumps_ascii_is_json_dumps_and_carries_lone_surrogates(value: object) -> None:
    text = jsontext.dumps(value, indent=1, sort_keys=True, ensure_ascii=True)
    assert text == json.dumps(value, indent=1, sort_keys=True)
    assert json.loads(text.encode("utf-8")) == json.loads(json.dumps(value))


def test_dumps_refuses_what_json_refuses_and_writes_json_constants() -> None:
    with pytest.raises(TypeError):
        jsontext.dumps({"a": object()})
    with pytest.raises(TypeError):
        jsontext.dumps({1: "int key"})
    specials = [math.nan, math.inf, -math.inf]
    assert jsontext.dumps(specials) == json.dumps(specials, indent=2)


def test_loads_and_dumps_strings_match_json() -> None:
    for text in ['{"a": [1, 2.5, null, true, "x\\u00e9"], "b": {}}', ' {"k": 1e400}\n', "[]", "NaN"]:
        got, want = jsontext.loads(text), json.loads(text)
        assert repr(got) == repr(want)
    for bad in ["{", "{} x", "", "nul"]:
        with pytest.raises(ValueError):
            jsontext.loads(bad)
    items = ["orbctl", 'é"\n\\', "\x00", "\U0001f600", ""]
    assert jsontext.dumps_strings(items) == json.dumps(items)


def test_importing_it_loads_no_json_and_no_re() -> None:
    root = str(Path(pytest_orbstack.__file__).parent.parent)
    code = (
        f"import sys; sys.path.insert(0, {root!r}); from pytest_orbstack.sim import jsontext; "
        "jsontext.dumps(jsontext.loads('{\"a\": [1]}')); print(sorted({'json', 're'} & set(sys.modules)))"
    )
    argv = [sys.executable, "-I", "-S", "-c", code]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "[]", done.stderr
