"""Where orbctl is, whether OrbStack can be used, and the plan decided once from its version."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional, cast

import pytest
from fakes import RUN, FakeClock, FakeOrb

from pytest_orbstack.backend import STARTING_WAIT, Backend, Located, locate
from pytest_orbstack.errors import OrbctlCommandError, OrbctlNotFoundError, OrbctlTimeoutError
from pytest_orbstack.models import OrbVersion
from pytest_orbstack.plan import KeepPolicy, decide
from pytest_orbstack.runtime import OrbRuntime
from pytest_orbstack.settings import Clone, Keep, Settings


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


# --- locate -------------------------------------------------------------------------------------


def test_locate_names_the_kind(tmp_path: Path) -> None:
    orbctl = _executable(tmp_path / "orbctl")
    orbsim = _executable(tmp_path / "orbsim")
    env = {"PATH": str(tmp_path)}
    assert locate(None, env, "Darwin") == Located(str(orbctl), "orbctl")
    assert locate(str(orbsim), env, "Darwin") == (str(orbsim), "orbsim")  # given: orbsim by its name
    assert locate(None, {"PATH": str(tmp_path), "ORBCTL": str(orbsim)}, "Linux").kind == "orbsim"


def test_orbsim_stands_in_only_on_linux_and_only_when_nothing_was_asked_for(tmp_path: Path) -> None:
    orbsim = _executable(tmp_path / "orbsim")
    env = {"PATH": str(tmp_path)}
    assert locate(None, env, "Linux") == (str(orbsim), "orbsim-fallback")
    with pytest.raises(OrbctlNotFoundError, match="not on PATH"):
        locate(None, env, "Darwin")
    with pytest.raises(OrbctlNotFoundError, match="--orb-orbctl"):
        locate("no-such-orbctl", env, "Linux")  # an orbctl that was asked for is never replaced


# --- the backend --------------------------------------------------------------------------------


def _backend(orb: FakeOrb, clock: Optional[FakeClock] = None) -> Backend:
    clock = clock or FakeClock()
    return Backend(None, lambda: orb, sleep=clock.sleep, clock=clock)  # type: ignore[arg-type,return-value]


def test_the_client_is_made_once_even_by_threads() -> None:
    made: list[FakeOrb] = []

    def make() -> FakeOrb:
        made.append(FakeOrb())
        return made[-1]

    backend = Backend(None, make)  # type: ignore[arg-type]
    threads = [threading.Thread(target=backend.client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1
    assert backend.client() is made[0]


def test_a_running_orbstack_has_no_problem_and_is_asked_once() -> None:
    orb = FakeOrb()
    backend = _backend(orb)
    assert backend.problem() is None
    assert backend.problem() is None
    assert orb.count("status") == 1


def test_a_stopped_orbstack_is_one_line_naming_the_fix() -> None:
    orb = FakeOrb()
    orb.statuses = ["Stopped"]
    backend = _backend(orb)
    backend.where = "on host mac2: "
    assert backend.problem() == (
        "on host mac2: OrbStack is not running (orbctl status: Stopped): open the OrbStack app "
        "or run 'orbctl list' (which starts it), then run the tests again"
    )


def test_a_starting_orbstack_is_waited_for() -> None:
    orb, clock = FakeOrb(), FakeClock()
    orb.statuses = ["Starting", "Starting", "Starting", "Running"]
    assert _backend(orb, clock).problem() is None
    assert orb.count("status") == 4
    assert clock.sleeps == [0.25, 0.25, 0.25]


def test_an_orbstack_that_stays_starting_is_given_up_after_the_wait() -> None:
    orb, clock = FakeOrb(), FakeClock()
    orb.statuses = ["Starting"]
    problem = _backend(orb, clock).problem()
    assert problem is not None
    assert problem.startswith(
        f"OrbStack is still starting after {STARTING_WAIT:g}s (orbctl status: Starting): "
    )
    assert sum(clock.sleeps) == pytest.approx(STARTING_WAIT)


def test_a_missing_orbctl_is_its_first_line() -> None:
    def missing() -> FakeOrb:
        raise OrbctlNotFoundError("orbctl not found (not on PATH); install OrbStack\nmore")

    backend = Backend(None, missing)  # type: ignore[arg-type]
    assert backend.problem() == "orbctl not found (not on PATH); install OrbStack"


def test_a_failed_status_says_what_orbctl_said() -> None:
    orb = FakeOrb()
    orb.statuses = [OrbctlCommandError(["orbctl", "status"], 1, "Broken\n", "")]
    assert _backend(orb).status() == "Broken"
    orb.statuses = [OrbctlTimeoutError(["orbctl", "status"], 30, "", "")]
    assert _backend(orb).status() == "orbctl status did not finish within 30s and was killed"


def test_the_version_is_asked_until_it_is_told() -> None:
    orb = FakeOrb()
    orb.orb_version = OrbctlTimeoutError(["orbctl", "version"], 30, "", "")
    backend = _backend(orb)
    assert backend.version() is None
    orb.orb_version = OrbVersion(1, 9, 2)
    assert backend.version() == OrbVersion(1, 9, 2)
    assert backend.version() == OrbVersion(1, 9, 2)
    assert orb.count("version") == 2


def test_a_client_without_version_cannot_tell() -> None:
    backend = Backend(None, object)  # type: ignore[arg-type,return-value]
    assert backend.version() is None


# --- the plan -----------------------------------------------------------------------------------

OLD, NEW = OrbVersion(1, 9, 2), OrbVersion(2, 0, 4)


def test_the_plan_clones_when_orbstack_can() -> None:
    plan = decide(Settings(), NEW)
    assert (plan.version, plan.clone, plan.note, plan.refused, plan.prefetch) == (NEW, True, None, None, 2)
    assert decide(Settings(), None).clone  # unknown: clone is tried
    assert not decide(Settings(clone=Clone.NEVER), NEW).clone


def test_the_plan_falls_back_to_create_on_an_old_orbstack_with_a_note() -> None:
    plan = decide(Settings(), OLD)
    assert not plan.clone
    assert plan.refused is None
    assert plan.note is not None
    assert plan.note.startswith("OrbStack 1.9.2 has no 'orbctl clone' (2.0.0+)")


def test_the_plan_refuses_clone_always_on_an_old_orbstack() -> None:
    plan = decide(Settings(clone=Clone.ALWAYS), OLD)
    assert not plan.clone
    assert plan.note is None
    assert plan.refused is not None
    assert plan.refused.startswith("OrbStack 1.9.2 has no 'orbctl clone'")
    assert decide(Settings(clone=Clone.ALWAYS), NEW).refused is None


def test_the_plan_prefetches_what_the_settings_allow() -> None:
    assert decide(Settings(prefetch=5), NEW).prefetch == 5
    assert decide(Settings(prefetch=5, no_prefetch=True), NEW).prefetch == 0


@pytest.mark.parametrize(
    ("keep", "failed", "kept"),
    [
        (Keep.NEVER, True, False),
        (Keep.FAILED, False, False),
        (Keep.FAILED, True, True),
        (Keep.ALWAYS, False, True),
    ],
)
def test_the_keep_policy(keep: Keep, failed: bool, kept: bool) -> None:
    policy = KeepPolicy(keep)
    if failed:
        policy.failed.add("pytest-test-m1")
    assert policy.keeps("pytest-test-m1") is kept
    assert not policy.keeps("pytest-test-m2") or keep == Keep.ALWAYS


# --- the runtime decides once --------------------------------------------------------------------


def _runtime(orb: FakeOrb, settings: Settings) -> OrbRuntime:
    runtime = OrbRuntime(cast(pytest.Config, None), settings, RUN, "main")  # no hook is called
    runtime.backend = _backend(orb)
    return runtime


def test_the_runtime_decides_its_plan_once() -> None:
    orb = FakeOrb()
    runtime = _runtime(orb, Settings())
    assert runtime.plan() is runtime.plan()
    assert runtime.plan().clone
    assert orb.count("version") == 1


def test_a_plan_made_without_the_version_is_made_again() -> None:
    orb = FakeOrb()
    orb.orb_version = OrbctlTimeoutError(["orbctl", "version"], 30, "", "")
    runtime = _runtime(orb, Settings())
    assert runtime.plan().clone  # cannot tell: clone is tried
    orb.orb_version = OLD
    assert not runtime.plan().clone
    assert runtime.plan() is runtime.plan()
    assert orb.count("version") == 2


def test_clone_never_asks_no_version() -> None:
    orb = FakeOrb()
    runtime = _runtime(orb, Settings(clone=Clone.NEVER))
    assert not runtime.plan().clone
    assert orb.count("version") == 0


def test_the_runtime_keeps_what_its_keep_policy_says() -> None:
    runtime = _runtime(FakeOrb(), Settings(keep=Keep.FAILED))
    runtime.failed_machines.add("pytest-test-m1")  # what a failed test's report adds
    assert runtime.keep.keeps("pytest-test-m1")
    assert not runtime.keep.keeps("pytest-test-m2")
