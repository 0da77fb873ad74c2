"""basestore.py: the run's build turn and record, the reused bases' users lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import SPEC

from pytest_orbstack.basestore import BaseBuildError, BaseRecord, BaseStore

RUN = "abcd1234"


def store(tmp_path: Path, *, run_id: str = RUN, worker: str = "gw0") -> BaseStore:
    return BaseStore(lock_dir=tmp_path / "run", run_id=run_id, worker=worker, state_dir=tmp_path / "state")


def test_the_first_turn_finds_no_record_and_leaves_one_for_the_next(tmp_path: Path) -> None:
    builder, other = store(tmp_path), store(tmp_path, worker="gw1")
    with builder.build_turn(SPEC, "k1") as turn:
        assert turn.record is None
        turn.built("pytest-test-base", reused=False)
    with other.build_turn(SPEC, "k1") as turn:
        assert turn.record == BaseRecord(RUN, "k1", "pytest-test-base", "gw0")
    with other.build_turn(SPEC, "k2") as turn:
        assert turn.record is None  # one record per key


def test_a_failed_build_is_recorded_with_its_reason(tmp_path: Path) -> None:
    with store(tmp_path).build_turn(SPEC, "k1") as turn:
        turn.failed("pytest-test-base", "RuntimeError: boom")
    with store(tmp_path, worker="gw1").build_turn(SPEC, "k1") as turn:
        assert turn.record is not None
        assert (turn.record.error, turn.record.worker) == ("RuntimeError: boom", "gw0")


def test_a_record_of_another_run_or_a_broken_one_is_ignored(tmp_path: Path) -> None:
    with store(tmp_path, run_id="zzzz9999").build_turn(SPEC, "k1") as turn:
        turn.built("pytest-test-old", reused=False)
    with store(tmp_path).build_turn(SPEC, "k1") as turn:
        assert turn.record is None
    (tmp_path / "run" / f"orbstack-base-k2-{RUN}.json").write_text("{not json")
    with store(tmp_path).build_turn(SPEC, "k2") as turn:
        assert turn.record is None


def test_a_record_is_json_naming_run_key_name_and_worker(tmp_path: Path) -> None:
    with store(tmp_path).build_turn(SPEC, "k1") as turn:
        turn.built("pytest-base-k1", reused=True)
    data = json.loads((tmp_path / "run" / f"orbstack-base-k1-{RUN}.json").read_text())
    assert data == {
        "error": None,
        "key": "k1",
        "name": "pytest-base-k1",
        "reused": True,
        "run_id": RUN,
        "worker": "gw0",
    }


def test_a_reused_base_another_run_uses_is_not_taken_over(tmp_path: Path) -> None:
    user, refresher = store(tmp_path, run_id="live0000"), store(tmp_path)
    user.use("k1")
    with (
        pytest.raises(BaseBuildError, match="another live run clones machines from it"),
        refresher.taken_over(SPEC, "k1", "pytest-base-k1"),
    ):
        pytest.fail("taken over while used")
    user.close()  # that run ended
    with refresher.taken_over(SPEC, "k1", "pytest-base-k1"):
        pass
    # the refresher is now a user of the new base, like every other run
    with (
        pytest.raises(BaseBuildError, match="another live run"),
        user.taken_over(SPEC, "k1", "pytest-base-k1"),
    ):
        pytest.fail("taken over while used")
    refresher.close()


def test_a_failed_rebuild_lets_go_of_the_base(tmp_path: Path) -> None:
    refresher, other = store(tmp_path), store(tmp_path, run_id="next0000")
    with (
        pytest.raises(RuntimeError, match="build failed"),
        refresher.taken_over(SPEC, "k1", "pytest-base-k1"),
    ):
        raise RuntimeError("build failed")
    with other.taken_over(SPEC, "k1", "pytest-base-k1"):  # nobody holds it
        pass
    other.close()
