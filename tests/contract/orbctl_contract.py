"""The contract suite's handle on one orbctl (real or orbsim)."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from typing import Any, Optional

PREFIX = "pytest-test-contract-"


class Orb:
    """One orbctl to talk to; ``orb("list", "-f", "json")`` returns the CompletedProcess."""

    def __init__(self, binary: str, env: dict[str, str], kind: str) -> None:
        self.binary = binary
        self.env = env
        self.kind = kind
        self.run_id = secrets.token_hex(4)

    def name(self, suffix: str) -> str:
        return f"{PREFIX}{self.run_id}-{suffix}"

    def __call__(
        self,
        *args: str,
        input: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
        timeout: float = 300,
        cwd: Optional[str] = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args],
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )

    def ok(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        proc = self(*args, **kw)
        assert proc.returncode == 0, f"orbctl {' '.join(args)} -> {proc.returncode}: {proc.stderr}"
        return proc

    def info(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.ok("info", name, "-f", "json").stdout)
        return data

    def record(self, name: str) -> dict[str, Any]:
        data = self.info(name)
        rec: dict[str, Any] = data.get("record", data)
        return rec

    def version(self) -> tuple[int, ...]:
        first = self.ok("version").stdout.split()[1]
        return tuple(int(p) for p in first.split("."))

    def ours(self) -> list[str]:
        listed = json.loads(self.ok("list", "-f", "json").stdout)
        return [m["name"] for m in listed if m["name"].startswith(f"{PREFIX}{self.run_id}-")]

    def wait_for(self, what: str, check: Any, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
            time.sleep(0.2)
