from __future__ import annotations

import re

import pytest

from pytest_orbstack.errors import InvalidSpecError
from pytest_orbstack.naming import (
    DEFAULT_PREFIX,
    MachineOwner,
    machine_name,
    new_run_id,
    parse_machine_name,
    run_id_of,
    validate_prefix,
    worker_tag,
)

ORBCTL_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-.]+$")


def test_run_ids_are_short_fresh_and_lowercase() -> None:
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[a-z0-9]{8}", run_id) for run_id in ids)


@pytest.mark.parametrize("worker", ["main", "gw0", "gw17"])
def test_names_are_valid_machine_names_and_parse_back(worker: str) -> None:
    run_id = new_run_id()
    name = machine_name(DEFAULT_PREFIX, run_id, worker)
    assert ORBCTL_NAME.match(name)
    assert len(name) <= 63
    assert parse_machine_name(name, DEFAULT_PREFIX) == MachineOwner(run_id, worker)
    assert run_id_of(name) == run_id


def test_names_differ_per_call() -> None:
    assert machine_name("p-", "abcdefgh", "gw0") != machine_name("p-", "abcdefgh", "gw0")
    assert machine_name("p-", "abcdefgh", "gw0", token="zzzzzz") == "p-abcdefgh-gw0-zzzzzz"


@pytest.mark.parametrize(
    "name",
    [
        "pytest-test-",
        "pytest-test-web",
        "pytest-test-ABCDEFGH-gw0-abcdef",
        "pytest-test-abcdefgh-worker-abcdef",
        "other-abcdefgh-gw0-abcdef",
    ],
)
def test_names_no_run_could_have_made_do_not_parse(name: str) -> None:
    assert parse_machine_name(name, DEFAULT_PREFIX) is None


def test_run_id_of_sees_through_a_longer_prefix() -> None:
    name = machine_name("pytest-test-x-", "k3x9q2ab", "gw1")
    assert parse_machine_name(name, DEFAULT_PREFIX) is None
    assert run_id_of(name) == "k3x9q2ab"
    assert run_id_of("ubuntu") is None


@pytest.mark.parametrize(
    ("worker_id", "tag"), [(None, "main"), ("master", "main"), ("gw3", "gw3"), ("x", "main")]
)
def test_worker_tag(worker_id: str | None, tag: str) -> None:
    assert worker_tag(worker_id) == tag


@pytest.mark.parametrize("prefix", ["pytest-test-", "ci.", "a", "team-7-"])
def test_good_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "my_tests-", ".hidden-", "-x", "a b", "x" * 60, "tést-"])
def test_bad_prefixes_say_what_is_allowed(prefix: str) -> None:
    with pytest.raises(InvalidSpecError, match=r"letters, digits, '-' and '\.'") as info:
        validate_prefix(prefix)
    assert "\n" not in str(info.value)
