"""What loading the plugin costs a run that makes no machine: modules loaded only when needed.

pytest loads the plugin in every run of an environment where it is installed, and in every
xdist worker; ``benchmarks/bench_plugin_cost.py`` measures the time.
"""

from __future__ import annotations

import subprocess
import sys

#: Loaded only by a process that needs them: ``filelock`` to build or reuse a base (or to elect
#: a host's first worker), ``ctypes`` to read a process's start time on macOS.
ON_DEMAND = ("filelock", "ctypes")

PROBE = """
import sys
import pytest
before = {name for name in ON_DEMAND if name in sys.modules}
import pytest_orbstack.plugin
print(sorted({name for name in ON_DEMAND if name in sys.modules} - before))
"""


def test_loading_the_plugin_loads_no_module_only_machines_need() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", f"ON_DEMAND = {ON_DEMAND!r}\n{PROBE}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
