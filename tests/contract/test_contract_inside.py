"""Inside a machine, as a test sees it on a Mac: working directory, default user, exit codes, logs.

The plugin relies on each of these (docs/orbctl.md).  On orbsim the default
user is ``john.doe`` (conftest), a macOS-style short name, as a Mac's would be.
Run against the real orbctl with ``ORBSTACK_CONTRACT=real``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from orbctl_contract import Orb

HOME_PROBE = ["sh", "-c", 'printf "%s\\n" "$HOME"']


def _needs_users(orb: Orb) -> None:
    if orb.kind == "orbsim" and orb.env.get("ORBSIM_MODE") == "plain":
        pytest.skip("orbsim's plain mode (not root) runs every command as the host user: no users")


@pytest.fixture
def shared_dir(orb: Orb, base: str, tmp_path: Path) -> Iterator[Path]:
    """A directory of the caller that also exists in the machine under the same path.

    On a Mac: a fresh directory in the home (``/Users/...`` is shared into
    machines).  orbsim shares nothing with the host, so the path is made in
    the machine too.
    """
    if orb.kind == "real":
        here = Path(tempfile.mkdtemp(prefix=".orb-contract-", dir=Path.home()))
    else:
        here = tmp_path / "checkout"
        here.mkdir()
        orb.ok("run", "-m", base, "-u", "root", "-w", "/", "mkdir", "-p", "-m", "755", str(here))
    try:
        yield here
    finally:
        if orb.kind == "real":
            shutil.rmtree(here, ignore_errors=True)


def test_run_without_w_runs_in_the_callers_directory(orb: Orb, base: str, shared_dir: Path) -> None:
    _needs_users(orb)
    assert orb.ok("run", "-m", base, "pwd", cwd=str(shared_dir)).stdout == f"{shared_dir}\n"
    assert orb.ok("run", "-m", base, "-w", "/", "pwd", cwd=str(shared_dir)).stdout == "/\n"
    home = orb.ok("run", "-m", base, *HOME_PROBE, cwd=str(shared_dir)).stdout.strip()
    assert orb.ok("run", "-m", base, "-w", home, "pwd", cwd=str(shared_dir)).stdout == f"{home}\n"


def test_default_user_is_not_root_has_uid_501_a_linux_home_and_sudo(orb: Orb, base: str) -> None:
    _needs_users(orb)
    user = orb.record(base)["config"]["default_username"]
    assert user != "root"
    assert orb.ok("run", "-m", base, "-w", "/", "id", "-un").stdout.strip() == user
    assert orb.ok("run", "-m", base, "-w", "/", "id", "-u").stdout.strip() == "501"
    home = orb.ok("run", "-m", base, "-w", "/", *HOME_PROBE).stdout.strip()
    assert home == f"/home/{user}"
    assert orb.ok("run", "-m", base, "-w", "/", "-u", "root", *HOME_PROBE).stdout.strip() == "/root"
    assert orb.ok("run", "-m", base, "-w", "/", "sudo", "-n", "id", "-u").stdout.strip() == "0"
    denied = orb("run", "-m", base, "-w", "/", "sh", "-c", ": > /etc/contract-denied")
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr  # root paths need -u root (the plugin's hint)
    orb.ok(
        "run", "-m", base, "-w", "/", "-u", "root", "sh", "-c", ": > /etc/contract-ok && rm /etc/contract-ok"
    )


def test_push_lands_in_the_default_users_home_as_that_user(orb: Orb, base: str, tmp_path: Path) -> None:
    _needs_users(orb)
    user = orb.record(base)["config"]["default_username"]
    src = tmp_path / "owned.txt"
    src.write_text("mine\n")
    orb.ok("push", "-m", base, str(src), "contract-owned.txt")
    owner = orb.ok("run", "-m", base, "-w", "/", "sh", "-c", 'stat -c %U "$HOME/contract-owned.txt"')
    assert owner.stdout.strip() == user


def test_run_exit_codes_are_the_commands_and_an_orbctl_failure_is_also_1(orb: Orb, base: str) -> None:
    for code in (0, 1, 2, 3, 42):
        proc = orb("run", "-m", base, "-w", "/", "sh", "-c", f"exit {code}")
        assert (proc.returncode, proc.stderr) == (code, "")
    missing = orb.name("gone")
    proc = orb("run", "-m", missing, "-w", "/", "true")
    assert proc.returncode == 1  # the same code as a command's own failure ...
    assert proc.stderr == "" or f"machine not found: '{missing}'" in proc.stderr  # ... maybe silent
    info = orb("info", missing, "-f", "json")  # one info tells them apart
    assert info.returncode == 1
    assert f"machine not found: '{missing}'" in info.stderr


def test_logs_of_a_machine_and_of_a_missing_one(orb: Orb, base: str) -> None:
    proc = orb("logs", base)
    assert (proc.returncode, proc.stderr) == (0, "")
    missing = orb.name("nologs")
    proc = orb("logs", missing)
    assert (proc.returncode, proc.stderr) == (0, "")  # errors go to stdout with exit 0
    assert f"machine not found: '{missing}'" in proc.stdout
