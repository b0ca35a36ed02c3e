"""Shared pytest setup: the repository root on sys.path, and the real-binary harness fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = ["tests.harness.pytest_plugin"]
