"""Shared test setup: makes ``import tiny`` (tests/tiny.py, tiny random models of every
supported architecture) work from every test directory, and keeps the hub offline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
