"""Reading OrbStack's ``Host orb`` entry into an SshConfig (no machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_orbstack.ssh import ENV_VAR, SshConfigError, default_config_path, ssh_config

#: The entry OrbStack writes (as users copy it into their own configs).
ORBSTACK = """# OrbStack
Host other
  Port 1

Host orb
  HostName 127.0.0.1
  Port 32222
  User default
  IdentityFile ~/.orbstack/ssh/id_ed25519
  ProxyCommand '/Applications/OrbStack.app/Contents/Frameworks/OrbStack Helper.app/Contents/MacOS/\
OrbStack Helper' ssh-proxy-fdpass 501
  ProxyUseFdpass yes
  Port 1

Host *
  User nobody
"""


def test_the_orb_entry_is_read_first_value_wins(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(ORBSTACK)
    cfg = ssh_config("john.doe", "pytest-test-a1", path)
    assert cfg.destination == "john.doe@pytest-test-a1@orb"
    assert (cfg.host, cfg.user, cfg.hostname, cfg.port) == (
        "orb",
        "john.doe@pytest-test-a1",
        "127.0.0.1",
        32222,
    )
    assert cfg.identity_file == Path("~/.orbstack/ssh/id_ed25519").expanduser()
    assert cfg.proxy_command is not None
    assert cfg.proxy_command.endswith("ssh-proxy-fdpass 501")
    assert cfg.proxy_use_fdpass
    assert cfg.ssh_args("true") == ["ssh", "-F", str(path), "john.doe@pytest-test-a1@orb", "true"]
    assert cfg.ansible_vars() == {
        "ansible_host": "orb",
        "ansible_user": "john.doe@pytest-test-a1",
        "ansible_ssh_common_args": f"-F {path}",
    }
    block = cfg.host_block("box").splitlines()
    assert block[:3] == ["Host box", "  User john.doe@pytest-test-a1", "  HostName 127.0.0.1"]
    assert "  HostKeyAlias orb" in block
    assert not any(line.strip() == "User default" for line in block)


def test_equals_form_and_quoted_identity(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text('Host orb x\n  Port=2222\n  IdentityFile "/keys/my key"\n')
    cfg = ssh_config("u", "m", path)
    assert (cfg.port, cfg.identity_file, cfg.proxy_command, cfg.proxy_use_fdpass) == (
        2222,
        Path("/keys/my key"),
        None,
        False,
    )


def test_missing_file_and_missing_entry_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(
        SshConfigError, match=r"cannot read OrbStack's ssh config .*PYTEST_ORBSTACK_SSH_CONFIG"
    ):
        ssh_config("u", "m", tmp_path / "missing")
    path = tmp_path / "config"
    path.write_text("Host orbit\n  Port 1\n")
    with pytest.raises(SshConfigError, match="has no 'Host orb' entry") as info:
        ssh_config("u", "m", path)
    assert info.value.path == path
    assert "\n" not in str(info.value)


def test_the_file_is_found_through_the_environment_or_in_the_home() -> None:
    assert default_config_path({ENV_VAR: "/x/config"}) == Path("/x/config")
    assert default_config_path({}) == Path("~/.orbstack/ssh/config").expanduser()
