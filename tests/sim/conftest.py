"""Fixtures of the orbsim tests in this directory (namespace-engine ones: see engine_support.py)."""

from __future__ import annotations

from engine_support import machine_image, make_machine, ns_engine

__all__ = ["machine_image", "make_machine", "ns_engine"]
