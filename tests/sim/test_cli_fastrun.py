"""``orbsim run``'s fast path (fastrun.py + enter.py) against the nsenter chain it replaces.

Every case runs twice, through the direct setns entry and with ``ORBSIM_ENTER=nsenter``,
and both must print the same output, errors and exit code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from orbsim_cli_helpers import Sim, make_sim, namespace_ready

from pytest_orbstack.sim import enter, fastrun
from pytest_orbstack.sim.simcmds import TRAMPOLINE, shebang

M = "pytest-test-fastrun"

pytestmark = pytest.mark.skipif(namespace_ready() is not None, reason=str(namespace_ready()))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    steps = make_sim(tmp_path_factory.mktemp("fastrun"), mode="namespace", ORBSIM_USER="alice")
    s = next(steps)
    s.ok("create", "ubuntu", M)
    script = (
        "printf 'echo no-shebang $0 $1\\n' > /usr/local/bin/nsb && chmod 755 /usr/local/bin/nsb && "
        "printf x > /usr/local/bin/noexec && chmod 644 /usr/local/bin/noexec && "
        "useradd -m -u 1200 -G sudo,adm bob"
    )
    s.ok("run", "-m", M, "-u", "root", "sh", "-c", script)
    yield s
    s.ok("delete", "-f", M)
    for _ in steps:  # the leftover checks
        pass


CASES = [
    [
        "sh",
        "-c",
        "id; pwd; env | sort; grep -E '^(Sig[BIC]|Cap|NoNewPrivs)' /proc/self/status; umask; hostname",
    ],
    ["-u", "root", "sh", "-c", "id; pwd; echo $PWD $OLDPWD"],
    ["-u", "bob", "sh", "-c", "id; pwd; echo $HOME $USER"],
    ["-w", "/no/such/dir", "sh", "-c", "pwd; echo $PWD $OLDPWD"],
    ["-w", "/etc/../usr/./bin", "sh", "-c", "pwd; echo $PWD"],
    ["-w", "/root", "pwd"],
    ["-w", "relative/../x", "sh", "-c", "pwd; echo $PWD"],
    ["no-such-command-xyz"],
    ["/no/such"],
    ["/etc/passwd"],
    ["/etc/passwd/x"],
    ["/etc"],
    [""],
    ["nsb", "arg"],
    ["noexec"],
    ["sh", "-c", "kill -TERM $$"],
    ["sh", "-c", "echo out; echo err >&2; exit 3"],
    ["-s", "echo $0 $-; test -t 0; echo $?"],
    ["sudo", "-n", "true"],
]


@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a) or "empty")
def test_direct_entry_matches_the_nsenter_chain(sim: Sim, args: list[str]) -> None:
    direct = sim("run", "-m", M, *args, env={"ORBENV": "GIVEN", "GIVEN": "g v"})
    chain = sim("run", "-m", M, *args, env={"ORBENV": "GIVEN", "GIVEN": "g v", "ORBSIM_ENTER": "nsenter"})
    assert (direct.stdout, direct.stderr, direct.returncode) == (chain.stdout, chain.stderr, chain.returncode)


def test_the_command_is_in_the_machine_and_orbsim_is_not(sim: Sim) -> None:
    probe = "readlink /proc/1/exe; readlink /proc/1/ns/pid; readlink /proc/self/ns/pid"
    out = sim.ok("run", "-m", M, "-u", "root", "sh", "-c", probe).stdout.splitlines()
    assert out[0] == "/usr/bin/dash"  # the machine's init, seen from its own pid namespace
    assert out[1] == out[2]  # in the machine's pid namespace
    # The parent stays on the host: it forks the output drainer there, not in the machine.
    bg = sim.ok("run", "-m", M, "sh", "-c", "sleep 0.3 & echo started").stdout
    assert bg == "started\n"
    ps = sim.ok("run", "-m", M, "ps", "-eo", "comm=").stdout.split()
    assert "cat" not in ps
    assert "python3" not in ps


@pytest.mark.parametrize(
    ("word", "profile"), [("run", "instant"), ("exec", "instant"), ("shell", "instant"), ("run", "orbstack")]
)
def test_run_imports_neither_the_cli_nor_json(sim: Sim, word: str, profile: str) -> None:
    """Nor, under a timed profile (its delay: ``ORBSIM_SCALE=0`` here), ``typing`` or ``pathlib``."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(fastrun.__file__).parents[2])!r})\n"
        "from pytest_orbstack.sim.__main__ import main\n"
        f"code = main([{word!r}, '-m', {M!r}, 'true'], 'orbctl')\n"
        "print(code, sorted(m for m in sys.modules if m in ('json', 're', 'typing', 'pathlib')"
        " or m.startswith('pytest_orbstack.sim.') or m == 'pytest_orbstack.sim'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        env={**sim.env, "ORBSIM_PROFILE": profile, "ORBSIM_SCALE": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    code_text, _, modules = proc.stdout.partition(" ")
    assert code_text == "0"
    assert modules.strip() == repr(
        sorted(
            [
                "pytest_orbstack.sim",
                "pytest_orbstack.sim.__main__",
                "pytest_orbstack.sim.enter",
                "pytest_orbstack.sim.fastrun",
                "pytest_orbstack.sim.jsontext",
                "pytest_orbstack.sim.relay",
                *(["pytest_orbstack.sim.profile"] if profile != "instant" else []),
            ]
        )
    )


def test_unusual_runs_take_the_full_cli(sim: Sim) -> None:
    # a stopped machine is started by run, like orbctl run
    sim.ok("stop", M)
    assert sim.ok("run", "-m", M, "echo", "back").stdout == "back\n"
    assert [m["state"] for m in sim.machines()] == ["running"]
    missing = sim("run", "-m", "pytest-test-nosuch", "true")
    assert (missing.returncode, missing.stderr) == (1, "[-32098] machine not found: 'pytest-test-nosuch'\n")
    assert sim("run", "--bogus", "true").stderr.startswith("Error: unknown flag --bogus")
    assert sim.argv_log()[-1] == ["orbsim", "run", "--bogus", "true"]


def test_run_argv_is_scanned_once_for_both_paths() -> None:
    """The fast path and the full CLI read run's flags with one scanner; what it stops at, the CLI reports."""
    got = fastrun.scan_run(["-m", "vm", "--user=root", "-s", "-w", "/srv", "echo", "-x"])
    assert got == ({"machine": "vm", "user": "root", "workdir": "/srv"}, True, ["echo", "-x"], None)
    assert fastrun.scan_run(["-", "x"]) == ({}, False, ["-", "x"], None)
    assert fastrun.scan_run(["-m", "vm", "-w"])[3] == ("needs-value", "-w")
    assert fastrun.scan_run(["-h=1", "true"])[3] == ("help", "-h=1")
    assert fastrun.scan_run(["--", "ls"])[3] == ("unknown", "--")
    assert fastrun.scan_run(["--shell=1", "ls"])[3] == ("unknown", "--shell=1")


def test_home_dir_follows_the_documented_order() -> None:
    assert fastrun.home_dir({"ORBSIM_HOME": "/h", "XDG_DATA_HOME": "/x"}) == "/h"
    assert fastrun.home_dir({"XDG_DATA_HOME": "/x", "HOME": "/u"}) == "/x/orbsim"
    assert fastrun.home_dir({"HOME": "/u"}) == "/u/.local/share/orbsim"


def test_init_groups_reads_the_machine_files(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\nbob:x:1200:1200::/home/bob:/bin/sh\n"
    )
    (tmp_path / "etc" / "group").write_text("root:x:0:\nadm:x:4:syslog,bob\nsudo:x:27:bob\nbob:x:1200:\n")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert enter.init_groups(fd, 1200, 1200) == [1200, 4, 27]
        assert enter.init_groups(fd, 4242, 1200) is None  # no name: the nsenter chain reports it
    finally:
        os.close(fd)


def test_the_logical_pwd_is_the_shells() -> None:
    assert enter._logical("/etc/../usr/./bin/") == "/usr/bin"
    assert enter._logical("rel/x") == "/rel/x"
    assert enter._logical("/..") == "/"


def test_shim_shebang_runs_python_isolated() -> None:
    assert shebang("/usr/bin/python3") == "#!/usr/bin/python3 -IS"
    assert shebang("/opt/my python/bin/python3") == TRAMPOLINE.format(python="'/opt/my python/bin/python3'")
    long = "/" + "p" * 300
    assert shebang(long).startswith("#!/bin/sh\n")


#: What a machine's life cycle must not load (start-up time: docs/orbsim.md, "Every other command").
HEAVY = (
    "typing",
    "pathlib",
    "json",
    "re",
    "contextlib",
    "subprocess",
    "shutil",
    "tempfile",
    "enum",
    "signal",
)


def test_a_machines_life_cycle_loads_none_of_the_heavy_modules(sim: Sim) -> None:
    """create, clone, boot (the first run), info, list, stop, start, delete: each a new process, as a
    shim runs it (the default user named by ``ORBSIM_USER``, as the plugin's CI recipe does)."""
    clone = "pytest-test-fastrun-lean"
    made = "pytest-test-fastrun-made"
    steps = [
        ["create", "debian", made],
        ["clone", M, clone],
        ["run", "-m", clone, "true"],
        ["info", "-f", "json", clone],
        ["list", "-f", "json"],
        ["stop", clone],
        ["start", clone],
        ["delete", "-f", clone, made],
    ]
    root = str(Path(fastrun.__file__).parents[2])
    loaded = {}
    for argv in steps:
        code = (
            "import sys\n"
            f"sys.path.insert(0, {root!r})\n"
            "from pytest_orbstack.sim.__main__ import main\n"
            f"code = main({argv!r}, 'orbctl')\n"
            f"print('\\n' + str(code), sorted(m for m in sys.modules if m in {HEAVY!r}))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-c", code],
            env=sim.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, (argv, proc.stderr)
        status, _, modules = proc.stdout.rstrip("\n").rpartition("\n")[2].partition(" ")
        assert status == "0", (argv, proc.stdout, proc.stderr)
        loaded[argv[0]] = modules
    assert loaded == {argv[0]: "[]" for argv in steps}
    assert not {clone, made} & set(sim.names())
