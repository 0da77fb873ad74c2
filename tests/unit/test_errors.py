from __future__ import annotations

from pytest_orbstack.errors import OrbctlCommandError, clip_output, first_line


def test_first_line_is_the_first_non_blank_line_or_the_class_name() -> None:
    assert first_line(RuntimeError("one\ntwo")) == "one"
    assert first_line(RuntimeError("\n  \nlater")) == "later"
    assert first_line(RuntimeError("")) == "RuntimeError"
    err = OrbctlCommandError(["orbctl", "delete", "x"], 1, "", "[-32098] machine not found: 'x'\n")
    assert first_line(err) == "orbctl delete x failed with exit code 1: [-32098] machine not found: 'x'"


def test_clip_output_keeps_short_text_and_says_how_much_was_cut() -> None:
    assert clip_output("short\n\n") == "short"
    long = "x" * 2500
    clipped = clip_output(long)
    assert clipped.startswith("x" * 2000)
    assert clipped.endswith("... [500 more chars]")
