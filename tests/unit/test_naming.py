from __future__ import annotations

import os
import re

import pytest

from pytest_orbstack import processes
from pytest_orbstack.errors import InvalidSpecError
from pytest_orbstack.naming import (
    DEFAULT_PREFIX,
    KEPT_PREFIX,
    kept_name,
    machine_name,
    new_run_id,
    owner_of,
    run_id_of,
    validate_prefix,
    worker_tag,
)

ORBCTL_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-.]+$")


def test_run_ids_are_short_fresh_and_lowercase() -> None:
    ids = [new_run_id() for _ in range(2000)]
    assert len(set(ids)) == 2000  # many runs in one process (pytester) never share an id
    assert all(re.fullmatch(r"[a-z0-9]{12}", run_id) for run_id in ids)


def test_a_run_id_names_its_owner_process_and_its_start() -> None:
    run_id = new_run_id()
    expected = processes.fingerprint(processes.start_identity(os.getpid()))
    assert expected != processes.UNKNOWN_FINGERPRINT
    assert owner_of(run_id) == (os.getpid(), expected)
    assert owner_of(new_run_id(pid=4194303, identity="linux:boot:1")) == (
        4194303,
        processes.fingerprint("linux:boot:1"),
    )


def test_a_pid_too_large_for_a_run_id_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        new_run_id(pid=36**5, identity="x")


def test_legacy_run_ids_parse_but_name_no_owner() -> None:
    name = "pytest-test-k3x9q2ab-gw1-7fd0qz"
    assert run_id_of(name) == "k3x9q2ab"
    assert owner_of("k3x9q2ab") is None


def test_kept_names_keep_the_run_worker_and_token_under_the_kept_prefix() -> None:
    run_id = new_run_id()
    name = machine_name("team-7-", run_id, "gw2", token="abc123")
    assert kept_name(name) == f"{KEPT_PREFIX}{run_id}-gw2-abc123"
    assert ORBCTL_NAME.match(kept_name(name))
    longest = machine_name("x" * 36 + "-", run_id, "gw999")
    assert len(longest) <= 63
    assert len(kept_name(longest)) <= 63


@pytest.mark.parametrize("worker", ["main", "gw0", "gw17"])
def test_names_are_valid_machine_names_and_parse_back(worker: str) -> None:
    run_id = new_run_id()
    name = machine_name(DEFAULT_PREFIX, run_id, worker)
    assert ORBCTL_NAME.match(name)
    assert len(name) <= 63
    assert run_id_of(name) == run_id


def test_names_differ_per_call() -> None:
    assert machine_name("p-", "abcdefgh", "gw0") != machine_name("p-", "abcdefgh", "gw0")
    assert machine_name("p-", "abcdefgh", "gw0", token="zzzzzz") == "p-abcdefgh-gw0-zzzzzz"


def test_run_id_of_sees_through_a_longer_prefix() -> None:
    name = machine_name("pytest-test-x-", "k3x9q2ab", "gw1")
    assert run_id_of(name) == "k3x9q2ab"
    assert run_id_of("ubuntu") is None


@pytest.mark.parametrize(
    ("worker_id", "tag"), [(None, "main"), ("master", "main"), ("gw3", "gw3"), ("x", "main")]
)
def test_worker_tag(worker_id: str | None, tag: str) -> None:
    assert worker_tag(worker_id) == tag


@pytest.mark.parametrize("prefix", ["pytest-test-", "ci.", "a-", "team-7-"])
def test_good_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix", ["", "a", "-", "ci", "team", "my_tests-", ".hidden-", "-x", "a b", "x" * 60 + "-", "tést-"]
)
def test_bad_prefixes_say_what_is_allowed(prefix: str) -> None:
    with pytest.raises(InvalidSpecError, match=r"letters, digits, '-' and '\.'") as info:
        validate_prefix(prefix)
    assert "\n" not in str(info.value)
