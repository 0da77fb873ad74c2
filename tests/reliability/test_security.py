"""Nothing the user passes is ever interpreted by a shell on the host; secrets never show.

Shell metacharacters in commands and paths reach orbctl as single argv items
(orbsim's ``argv.log`` records them) and ``$(touch ...)`` never creates its
file on the host.  Values given to ``run(env=...)`` travel in orbctl's
environment, never in argv, an error message, a report or the watchdog's log.
The purge never deletes a machine of a run that is alive, even when runs start
while others purge.
"""

from __future__ import annotations

import json
import secrets

import pytest
from reliability_helpers import PREFIX, REPEAT, Scenario

METACHARACTERS = r'''
    import os
    from pathlib import Path
    import pytest
    from pytest_orbstack import InvalidSpecError

    HERE = os.environ["SCENARIO_DIR"]

    def weird(i):
        """A command argument no host shell may interpret: it would create canary i."""
        c = f"{HERE}/canary{i}"
        return f"a; $(touch {c}) `touch {c}` 'q' \"d\" \\ b  c | x > {c}"

    def weird_name(i):
        """A file name no host shell may interpret: it would create canary i in its directory."""
        return f"n; $(touch canary{i}) `touch canary{i}` 'q' \"d\" \\ b | x > canary{i}"

    def test_argv_command(orb_vm):
        result = orb_vm.run(["printf", "%s", weird(0)])
        assert result.stdout == weird(0)

    def test_shell_command_runs_in_the_machine_only(orb_vm):
        # a str runs through sh -c INSIDE the machine: the host never sees it as shell code
        result = orb_vm.run(f"touch {HERE}/canary1; printf '%s' \"$(echo inner)\"", check=False)
        assert result.stdout == "inner"

    def test_paths(orb_vm, tmp_path):
        local_dir = tmp_path / weird_name(2)
        local_dir.mkdir()
        local = local_dir / weird_name(3)
        local.write_text("payload")
        remote = "/tmp/" + weird_name(4)
        orb_vm.push(str(local), remote)
        back = tmp_path / ("back " + weird_name(5))
        orb_vm.pull(remote, str(back))
        assert back.read_text() == "payload"
        assert orb_vm.read_text(remote) == "payload"

    def test_machine_names_are_validated_not_quoted(orb_vm):
        with pytest.raises(InvalidSpecError):
            orb_vm.clone(f"x; $(touch {HERE}/canary6)")
'''


def weird_name(i: int) -> str:
    return f"n; $(touch canary{i}) `touch canary{i}` 'q' \"d\" \\ b | x > canary{i}"


@pytest.mark.parametrize("attempt", REPEAT)
def test_metacharacters_reach_orbctl_intact_and_no_host_shell_sees_them(
    scenario: Scenario, attempt: int
) -> None:
    scenario.write_tests(METACHARACTERS)
    code, out = scenario.run("-rA")
    assert code == 0, out
    assert "4 passed" in out
    here = str(scenario.markers)
    canaries = [*scenario.markers.parent.rglob("canary*"), *scenario.pytester.path.rglob("canary*")]
    assert canaries == [], "a host shell interpreted user input"

    def weird(i: int) -> str:
        c = f"{here}/canary{i}"
        return f"a; $(touch {c}) `touch {c}` 'q' \"d\" \\ b  c | x > {c}"

    runs = scenario.calls("run")
    assert any(argv[-3:] == ["printf", "%s", weird(0)] for argv in runs), runs
    pushes = scenario.calls("push")
    assert any(
        argv[-2].endswith(f"{weird_name(2)}/{weird_name(3)}") and argv[-1] == "/tmp/" + weird_name(4)
        for argv in pushes
    ), pushes
    pulls = scenario.calls("pull")
    assert any(
        argv[-2] == "/tmp/" + weird_name(4) and argv[-1].endswith("back " + weird_name(5)) for argv in pulls
    ), pulls
    assert not any("canary6" in " ".join(argv) for argv in scenario.argv_log())  # rejected before orbctl
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


SECRETS = """
    import hashlib, os

    SECRET = os.environ.pop("SCENARIO_SECRET")

    def test_the_secret_reaches_the_command(orb_vm):
        result = orb_vm.run('printf %s "$API_TOKEN" | sha256sum', env={"API_TOKEN": SECRET})
        assert result.stdout.split()[0] == hashlib.sha256(SECRET.encode()).hexdigest()

    def test_a_failed_shell_command_with_a_secret(orb_vm):
        orb_vm.run("echo working; exit 7", env={"API_TOKEN": SECRET})

    def test_a_failed_argv_command_with_secrets(orb_vm_fresh):
        orb_vm_fresh.run(["sh", "-c", "exit 3"], env={"API_TOKEN": SECRET, "SECOND": SECRET + "-2"})
"""


@pytest.mark.parametrize("attempt", REPEAT)
def test_env_values_never_appear_in_argv_errors_or_reports(scenario: Scenario, attempt: int) -> None:
    secret = "sk-live-" + secrets.token_hex(16)
    scenario.write_tests(SECRETS)
    code, out = scenario.run("-rA", "-vv", "--tb=long", env={"SCENARIO_SECRET": secret})
    assert code == 1, out
    assert "1 passed" in out
    assert "2 failed" in out
    assert "exit 7" in out  # the failure is reported...
    assert secret not in out  # ...without the secret
    argv_text = (scenario.home / "argv.log").read_text()
    assert "API_TOKEN" not in json.dumps([a for a in scenario.argv_log() if a[0] != "run"])
    assert secret not in argv_text
    assert secret not in scenario.reaper_log()
    assert len(scenario.calls("run")) >= 3
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


RACING = """
    import pytest

    @pytest.mark.parametrize("i", range(6))
    def test_fresh(i, orb_vm_fresh):
        assert orb_vm_fresh.run(["hostname"]).stdout.strip() == orb_vm_fresh.name
"""


@pytest.mark.parametrize("attempt", REPEAT)
def test_runs_starting_while_others_purge_never_lose_a_machine(scenario: Scenario, attempt: int) -> None:
    orphans = [f"{PREFIX}orphan{n:02d}-gw0-abcdef" for n in range(3)]
    for name in orphans:
        scenario.orbsim("create", "debian:12", name)
    scenario.write_tests(RACING)
    # three runs start together: each purges the orphans while the others create machines
    runs = [scenario.start("-n", "2") for _ in range(3)]
    for run in runs:
        assert run.wait() == 0, run.output
    assert not set(orphans) & set(scenario.machines())
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
    run_ids = [
        {n[len(PREFIX) :].split("-")[0] for n in argv[1:] if n.startswith(PREFIX)}
        for argv in scenario.calls("delete")
    ]
    orphan_ids = {n[len(PREFIX) :].split("-")[0] for n in orphans}
    for ids in run_ids:
        # a delete names machines of one run only, or orphans of dead runs
        assert len(ids - orphan_ids) <= 1, ids


BAD_ENV = """
    import os

    SECRET = os.environ.pop("SCENARIO_SECRET")

    def test_invalid_name(orb_vm):
        orb_vm.run("true", env={"API-KEY": SECRET})

    def test_name_that_would_change_orbctl(orb_vm):
        orb_vm.run("true", env={"PYTHONHOME": SECRET})

    def test_name_that_would_change_orbctl_argv(orb_vm):
        orb_vm.run(["true"], env={"LD_PRELOAD": SECRET, "OK_NAME": SECRET})

    def test_a_failed_command_with_a_secret(orb_vm):
        orb_vm.run("exit 5", env={"API_TOKEN": SECRET})
"""


@pytest.mark.parametrize(
    "mode",
    [(), ("--full-trace",), ("--junitxml=report.xml", "--tb=long", "-l")],
    ids=["default", "full-trace", "junitxml"],
)
def test_secrets_never_show_with_bad_env_names_full_trace_or_junitxml(
    scenario: Scenario, mode: tuple[str, ...]
) -> None:
    secret = "sk-live-" + secrets.token_hex(16)
    scenario.write_tests(BAD_ENV)
    code, out = scenario.run("-rA", *mode, env={"SCENARIO_SECRET": secret})
    assert code == 1, out
    assert "4 failed" in out
    assert "invalid env name 'API-KEY'" in out
    assert "invalid env name 'PYTHONHOME': it would change orbctl's own behaviour" in out
    assert "invalid env name 'LD_PRELOAD'" in out
    assert "exit code 5" in out
    assert secret not in out
    if "--full-trace" in mode:  # every frame is shown, with its arguments: env masked
        assert "env = {'API_TOKEN': '***'}" in out
    report = scenario.pytester.path / "report.xml"
    if report.exists():
        xml = report.read_text()
        assert "invalid env name" in xml  # the report holds the failures...
        assert secret not in xml  # ...and not the secret
    assert secret not in (scenario.home / "argv.log").read_text()
    assert secret not in scenario.reaper_log()
    # refused names never reached orbctl; the valid one did
    commands = [argv[-3:] for argv in scenario.calls("run")]
    assert ["sh", "-c", "true"] not in commands
    assert ["sh", "-c", "exit 5"] in commands
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()


PRINTED = """
    import os

    SECRET = os.environ.pop("SCENARIO_SECRET")

    def test_a_command_that_prints_its_secret_and_fails(orb_vm):
        orb_vm.run('echo "token is $API_TOKEN"; exit 4', env={"API_TOKEN": SECRET})
"""


def test_a_secret_the_command_printed_is_masked_in_the_failure(scenario: Scenario) -> None:
    secret = "sk-live-" + secrets.token_hex(16)
    scenario.write_tests(PRINTED)
    code, out = scenario.run("-rA", "--junitxml=report.xml", env={"SCENARIO_SECRET": secret})
    assert code == 1, out
    assert "stdout: token is ***" in out
    assert secret not in out
    xml = (scenario.pytester.path / "report.xml").read_text()
    assert "token is ***" in xml
    assert secret not in xml
    scenario.assert_no_leftovers()
    scenario.assert_watchdogs_gone()
