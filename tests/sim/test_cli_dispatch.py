"""cli.main dispatches in the command tree it is handed: handlers get the command they run as."""

from __future__ import annotations

import pytest

from pytest_orbstack.sim import cli, cobra, table, version
from pytest_orbstack.sim.cobra import Command, Flag, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pytest_orbstack.sim.cobra import Opts
    from pytest_orbstack.sim.common import Ctx


def _tree(calls: list[tuple[str, Opts, list[str]]]) -> cli.BuildRoot:
    def hello(ctx: Ctx, opts: Opts, args: list[str]) -> int:
        calls.append((ctx.command.path, opts, args))
        return 7

    def picky(ctx: Ctx, opts: Opts, args: list[str]) -> int:
        raise UsageError("no thanks", ctx.command)

    def raw(ctx: Ctx, opts: Opts, args: list[str]) -> int:
        calls.append((ctx.command.path, opts, args))
        return 0

    def build(prog: str, v: version.Version) -> Command:
        assert v == version.current()
        subs = [
            Command(
                "hello",
                "hello NAME",
                "Say hello",
                flags=[Flag("loud", "l", "loudly", is_bool=True)],
                nargs=(1, 1),
                run=hello,
            ),
            Command("picky", "picky", "Refuse", nargs=(0, 0), run=picky),
            Command("run", "run [flags] COMMAND", "Run", run=raw, disable_flag_parsing=True),
        ]
        return Command(cli.ROOT, cli.ROOT, "test tree", subcommands=subs)

    return build


def test_main_runs_the_handler_of_the_tree_it_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[str, Opts, list[str]]] = []
    build = _tree(calls)
    assert cli.main(["hello", "-l", "world"], "orbctl", build) == 7
    assert calls == [("orbctl hello", {"loud": True, "help": False}, ["world"])]
    # run parses its own flags: it gets every word as is
    assert cli.main(["run", "-m", "x", "--bogus"], "orbctl", build) == 0
    assert calls[-1] == ("orbctl run", {}, ["-m", "x", "--bogus"])
    # orb WORD: an unknown word is a command for run
    assert cli.main(["uname", "-a"], "orb", build) == 0
    assert calls[-1] == ("orbctl run", {}, ["uname", "-a"])
    capsys.readouterr()


def test_errors_carry_the_usage_of_the_command_being_run(capsys: pytest.CaptureFixture[str]) -> None:
    build = _tree([])
    assert cli.main(["picky"], "orbctl", build) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: no thanks\nUsage:\n  orbctl picky\n")
    assert cli.main(["hello"], "orbctl", build) == 1
    assert capsys.readouterr().err.startswith(
        "Error: accepts 1 arg(s), received 0\nUsage:\n  orbctl hello NAME"
    )
    assert cli.main(["nope"], "orbctl", build) == 1
    assert (
        capsys.readouterr().err
        == 'Error: unknown command "nope" for "orbctl"\nRun \'orbctl --help\' for usage.\n'
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--format", "json"],
        ["--format=json"],
        ["-f", "json"],
        ["-fjson"],
        ["-f=json"],
        ["-af", "json"],
        ["-afjson"],
    ],
)
def test_a_flag_value_in_each_of_pflags_forms(argv: list[str]) -> None:
    cmd = Command(
        "list",
        "list",
        "List",
        flags=[Flag("format", "f", "output format"), Flag("all", "a", "all", is_bool=True)],
    )
    opts, args = cobra.parse_flags(cmd, [*argv, "x"])
    assert (opts["format"], args) == ("json", ["x"])
    assert opts["all"] is ("-a" in argv[0])


def test_an_empty_value_given_in_the_word_is_a_value_and_a_missing_one_an_error() -> None:
    cmd = Command("list", "list", "List", flags=[Flag("format", "f", "output format")])
    assert cobra.parse_flags(cmd, ["--format="])[0]["format"] == ""
    assert cobra.parse_flags(cmd, ["-f="])[0]["format"] == ""
    with pytest.raises(UsageError, match="flag needs an argument: --format"):
        cobra.parse_flags(cmd, ["--format"])
    with pytest.raises(UsageError, match="flag needs an argument: 'f' in -f"):
        cobra.parse_flags(cmd, ["-f"])


def _commands(cmd: Command) -> list[Command]:
    return [cmd, *(c for sub in cmd.subcommands for c in _commands(sub))]


@pytest.mark.parametrize("emulated", ["1.5.0", "2.0.4", "2.2.0"])
def test_every_handler_of_the_real_tree_is_a_function_of_its_module(emulated: str) -> None:
    handlers = [c.run for c in _commands(table.build_root("orbsim", version.parse(emulated))) if c.run]
    assert len(handlers) >= 25
    for handler in handlers:
        assert isinstance(handler, table.Handler)
        found = handler.resolve()
        assert callable(found)
        assert (found.__module__, found.__name__) == (f"pytest_orbstack.sim.{handler.module}", handler.name)
    with pytest.raises(ValueError, match="no command module"):
        table.Handler("nowhere.cmd_x").resolve()
