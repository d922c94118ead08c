"""Shared test setup: tests/ is importable (test modules and job scripts import `helpers`,
`hub_server` and `jobs` under any pytest import mode), and the loopback Hub's `hub_server` fixture
is available to every test module.

What the tests build (the tiny model and data, `make_trainer`, `StopAt`, ...) lives in helpers.py:
those are factories called with arguments, not fixtures.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from hub_server import hub_server  # noqa: E402, F401  (the fixture, for every test module)
