"""The ``orb`` marker: validated at collection, applied to orb_vm_fresh and orb_machines."""

from __future__ import annotations

from typing import Callable

import pytest


@pytest.mark.parametrize(
    ("decorators", "message"),
    [
        (
            ["@pytest.mark.orb(imgae='alpine')"],
            "*test_bad.py::test_it: @pytest.mark.orb got an unknown argument 'imgae'; "
            "allowed: image, arch, user, user_data",
        ),
        (
            ["@pytest.mark.orb('alpine')"],
            "*test_bad.py::test_it: @pytest.mark.orb takes keyword arguments only*positional*'alpine'*",
        ),
        (
            ["@pytest.mark.orb(image='alpine')", "@pytest.mark.orb(image='debian')"],
            "*test_bad.py::test_it: @pytest.mark.orb argument 'image' is given twice*",
        ),
        (
            ["@pytest.mark.orb(image='plan9')"],
            "*test_bad.py::test_it: @pytest.mark.orb(image='plan9'): *",
        ),
        (
            ["@pytest.mark.orb(arch='sparc')"],
            "*test_bad.py::test_it: @pytest.mark.orb(arch='sparc'): *",
        ),
        (
            ["@pytest.mark.orb(user_data='nope.yaml')"],
            "*test_bad.py::test_it: @pytest.mark.orb(user_data='nope.yaml'): expected a readable*",
        ),
    ],
)
def test_bad_marker_fails_collection(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    decorators: list[str],
    message: str,
) -> None:
    body = "\n".join(decorators)
    pytester.makepyfile(
        test_bad=f"import pytest\n\n{body}\ndef test_it(orb_vm_fresh):\n    pass\n",
        test_good="def test_other():\n    pass\n",
    )
    result = run_pytest("-v")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting test_bad.py*", message])
    # no machine was made
    result.stdout.no_fnmatch_line("orbstack: *created*")


def test_module_marker_is_overridden_by_closer_marker(
    pytester: pytest.Pytester,
    run_pytest: Callable[..., pytest.RunResult],
    assert_no_leftovers: Callable[..., None],
) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.orb(user="modeuser")

        def test_module_level(orb_vm_fresh):
            assert orb_vm_fresh.run("id -un").stdout.strip() == "modeuser"

        @pytest.mark.orb(user="closer")
        def test_closer_wins(orb_machines):
            machine = orb_machines.create()
            assert machine.run("id -un").stdout.strip() == "closer"
            other = orb_machines.create(user="explicit")
            assert other.run("id -un").stdout.strip() == "explicit"
        """
    )
    result = run_pytest("-p", "no:xdist")
    result.assert_outcomes(passed=2)
    assert_no_leftovers()
