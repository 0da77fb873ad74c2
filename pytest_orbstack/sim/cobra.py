"""Just enough of cobra/pflag to answer like ``orbctl``: flag parsing, argument counts, usage texts.

Error texts are cobra's and pflag's own: ``unknown flag: --foo``,
``unknown shorthand flag: 'x' in -x``, ``flag needs an argument: --arch``,
``accepts 1 arg(s), received 0``, ...  A usage error prints ``Error: <msg>``
and the command's usage on stderr and exits 1.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Callable, Optional, Union

    Value = Union[str, bool, None]
    Opts = dict[str, Value]


class Flag:
    __slots__ = ("help", "is_bool", "long", "metavar", "short")

    def __init__(
        self, long: str, short: Optional[str], help: str, *, is_bool: bool = False, metavar: str = "string"
    ) -> None:
        self.long = long
        self.short = short
        self.help = help
        self.is_bool = is_bool
        self.metavar = metavar


class Command:
    """One (sub)command: its names, usage line, flags and argument-count rule."""

    def __init__(
        self,
        name: str,
        use: str,
        short: str,
        *,
        aliases: Sequence[str] = (),
        flags: Sequence[Flag] = (),
        nargs: tuple[int, Optional[int]] = (0, None),
        run: Optional[Callable[..., int]] = None,
        subcommands: Sequence[Command] = (),
        disable_flag_parsing: bool = False,
    ) -> None:
        self.name = name
        self.use = use
        self.short = short
        self.aliases = tuple(aliases)
        self.flags = [*flags, Flag("help", "h", f"help for {name}", is_bool=True)]
        self.nargs = nargs
        self.run = run
        self.subcommands = list(subcommands)
        #: cobra's ``DisableFlagParsing``: ``run`` gets every argument as is and parses its own flags
        self.disable_flag_parsing = disable_flag_parsing
        self.parent: Optional[Command] = None
        for sub in self.subcommands:
            sub.parent = self

    @property
    def path(self) -> str:
        return self.name if self.parent is None else f"{self.parent.path} {self.name}"

    def find(self, word: str) -> Optional[Command]:
        for sub in self.subcommands:
            if word == sub.name or word in sub.aliases:
                return sub
        return None

    def usage(self) -> str:
        lines = ["Usage:"]
        if self.run is not None:
            use_line = f"{self.parent.path} {self.use}" if self.parent else self.use
            lines.append(f"  {use_line}")
        if self.subcommands:
            lines.append(f"  {self.path} [command]")
        if self.aliases:
            lines += ["", "Aliases:", "  " + ", ".join((self.name, *self.aliases))]
        if self.subcommands:
            lines += ["", "Available Commands:"]
            width = max(len(s.name) for s in self.subcommands)
            lines += [f"  {s.name.ljust(width)}  {s.short}" for s in self.subcommands]
        lines += ["", "Flags:"]
        cells = []
        for f in self.flags:
            left = (f"-{f.short}, " if f.short else "    ") + f"--{f.long}"
            if not f.is_bool:
                left += f" {f.metavar}"
            cells.append((left, f.help))
        width = max(len(c[0]) for c in cells)
        lines += [f"  {left.ljust(width)}   {text}" for left, text in cells]
        if self.subcommands:
            lines += ["", f'Use "{self.path} [command] --help" for more information about a command.']
        return "\n".join(lines) + "\n"


class UsageError(Exception):
    """A cobra-style error: ``Error: <msg>`` + usage, exit 1."""

    keeps_state = True

    def __init__(self, message: str, command: Optional[Command] = None) -> None:
        super().__init__(message)
        self.message = message
        self.command = command


class HelpRequested(Exception):
    def __init__(self, command: Command) -> None:
        super().__init__(command.name)
        self.command = command


def _lookup_long(cmd: Command, name: str) -> Optional[Flag]:
    return next((f for f in cmd.flags if f.long == name), None)


def _lookup_short(cmd: Command, char: str) -> Optional[Flag]:
    return next((f for f in cmd.flags if f.short == char), None)


def _flag_value(inline: Optional[str], rest: list[str], missing: str, cmd: Command) -> str:
    """A flag's value: given in the same word (``--f=v``, ``-fv``), else the next word, else ``missing``."""
    if inline is not None:
        return inline
    if rest:
        return rest.pop(0)
    raise UsageError(missing, cmd)


def parse_flags(cmd: Command, argv: Sequence[str]) -> tuple[Opts, list[str]]:
    """pflag's interspersed parsing: flags anywhere, ``--`` ends them."""
    opts: Opts = {f.long: (False if f.is_bool else None) for f in cmd.flags}
    args: list[str] = []
    rest = list(argv)
    while rest:
        word = rest.pop(0)
        if word == "--":
            args += rest
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            flag = _lookup_long(cmd, name)
            if flag is None:
                raise UsageError(f"unknown flag: --{name}", cmd)
            if flag.is_bool:
                opts[flag.long] = value.lower() not in ("false", "0", "f") if eq else True
            else:
                missing = f"flag needs an argument: --{name}"
                opts[flag.long] = _flag_value(value if eq else None, rest, missing, cmd)
        elif word.startswith("-") and len(word) > 1:
            cluster = word[1:]
            i = 0
            while i < len(cluster):
                char = cluster[i]
                flag = _lookup_short(cmd, char)
                if flag is None:
                    raise UsageError(f"unknown shorthand flag: '{char}' in -{cluster}", cmd)
                if flag.is_bool:
                    opts[flag.long] = True
                    i += 1
                    continue
                tail = cluster[i + 1 :]
                inline = tail[1:] if tail.startswith("=") else (tail or None)
                missing = f"flag needs an argument: '{char}' in -{cluster}"
                opts[flag.long] = _flag_value(inline, rest, missing, cmd)
                break
        else:
            args.append(word)
        if opts.get("help"):
            raise HelpRequested(cmd)
    return opts, args


def check_nargs(cmd: Command, args: Sequence[str]) -> None:
    low, high = cmd.nargs
    n = len(args)
    if high is not None and low == high:
        if n != low:
            raise UsageError(f"accepts {low} arg(s), received {n}", cmd)
    elif high is not None and low > 0:
        if not low <= n <= high:
            raise UsageError(f"accepts between {low} and {high} arg(s), received {n}", cmd)
    elif high is not None:
        if n > high:
            raise UsageError(f"accepts at most {high} arg(s), received {n}", cmd)
    elif n < low:
        raise UsageError(f"requires at least {low} arg(s), only received {n}", cmd)
