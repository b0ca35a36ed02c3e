"""Where the end-to-end harness keeps what outlives one run: packages, image roots, the engine's data."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$LOCALDEV_E2E_CACHE``, else ``/var/cache/localdev-e2e`` as root, else under ``$XDG_CACHE_HOME``."""
    explicit = os.environ.get("LOCALDEV_E2E_CACHE")
    if explicit:
        path = Path(explicit)
    elif os.geteuid() == 0:
        path = Path("/var/cache/localdev-e2e")
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "localdev-e2e"
    path.mkdir(parents=True, exist_ok=True)
    return path
