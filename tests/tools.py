"""Finding the command-line tools the tests run."""

from __future__ import annotations

import shutil
import sysconfig

import pytest


def tool(name: str, install: str) -> str:
    """Path of ``name``, or fail the test saying how to install it.

    The interpreter's own scripts directory comes first: CI runs ``.venv/bin/python``
    without putting ``.venv/bin`` on PATH, and pip-installed tools live there.
    """
    found = shutil.which(name, path=sysconfig.get_path("scripts")) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {install}")
    return found
