"""The docker CLI against the private engine (``DOCKER_HOST``, set by :mod:`tests.e2e.engine`)."""

from __future__ import annotations

import json
import subprocess
from typing import Any


class DockerError(RuntimeError):
    """A docker command failed; the message holds the command and its stderr."""


def docker(*args: str, check: bool = True, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, input=input, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise DockerError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result


def docker_ok() -> bool:
    return docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20).returncode == 0


def inspect(kind: str, name: str) -> dict[str, Any] | None:
    """``docker KIND inspect NAME`` as a dict, or None when it does not exist."""
    result = docker(kind, "inspect", name, check=False)
    if result.returncode != 0:
        return None
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data[0]
