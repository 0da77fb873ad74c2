"""An Ansible connection plugin that runs tasks in OrbStack machines through ``orbctl`` (no SSH).

Ansible ships no connection for OrbStack.  This one runs every command as
``orbctl run -m MACHINE [-u USER] sh -c COMMAND`` and copies files through
``sh -c 'cat > "$1"'`` with the content on stdin, so it works in isolated
machines too.  ``become`` (sudo) works as on any host: OrbStack's default user
has passwordless sudo.  Put it in ``connection_plugins/`` next to the playbook
and set ``ansible_connection=orbctl`` on the machines of the inventory.
"""

from __future__ import annotations

import subprocess

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
    name: orbctl
    short_description: run tasks in OrbStack machines with orbctl
    description:
        - Runs commands with C(orbctl run) and copies files through its stdin.
    author: pytest-orbstack examples
    options:
        remote_addr:
            description: the machine name or ID
            default: inventory_hostname
            vars:
                - name: inventory_hostname
                - name: ansible_host
        remote_user:
            description: the user to run as (default the machine's default user)
            vars:
                - name: ansible_user
        orbctl:
            description: the orbctl executable
            default: orbctl
            env:
                - name: ORBCTL
            vars:
                - name: ansible_orbctl
        timeout:
            description: seconds one command may take
            type: int
            default: 600
            vars:
                - name: ansible_orbctl_timeout
"""

#: orbctl exits 1 and prints this prefix when the failure is its own (machine missing...).
ORBCTL_ERROR = b"[-32098] "


class Connection(ConnectionBase):
    """Commands and files through ``orbctl run``."""

    transport = "orbctl"
    has_pipelining = False

    def _connect(self) -> Connection:
        self._connected = True
        return self

    def _run(self, command: list[str], stdin: bytes | None) -> tuple[int, bytes, bytes]:
        argv = [self.get_option("orbctl"), "run", "-m", self.get_option("remote_addr")]
        user = self.get_option("remote_user")
        if user:
            argv += ["-u", user]
        try:
            done = subprocess.run(  # noqa: S603 - argv list, no shell on this computer
                argv + command,
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=self.get_option("timeout"),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AnsibleConnectionFailure(f"orbctl run failed: {exc}") from exc
        if done.returncode == 1 and done.stderr.startswith(ORBCTL_ERROR):
            raise AnsibleConnectionFailure(done.stderr.decode(errors="replace").strip())
        return done.returncode, done.stdout, done.stderr

    def exec_command(
        self, cmd: str, in_data: bytes | None = None, sudoable: bool = True
    ) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        return self._run(["sh", "-c", cmd], in_data)

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as source:
            code, _, err = self._run(["sh", "-c", 'cat > "$1"', "sh", out_path], source.read())
        if code != 0:
            raise AnsibleConnectionFailure(f"cannot write {out_path}: {err.decode(errors='replace').strip()}")

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        code, out, err = self._run(["cat", "--", in_path], None)
        if code != 0:
            raise AnsibleConnectionFailure(f"cannot read {in_path}: {err.decode(errors='replace').strip()}")
        with open(out_path, "wb") as target:
            target.write(out)

    def close(self) -> None:
        self._connected = False
