"""Name missing prerequisites and how to get them, instead of failing deep inside a provider."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

#: Tool → how to install it.
PREREQUISITES = {
    "docker": "install Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/",
    "kind": "install kind v0.33 or newer: https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "pulumi": "install the Pulumi CLI: https://www.pulumi.com/docs/install/",
}


def missing_prerequisites(
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> list[str]:
    """One line per missing tool (or unreachable Docker daemon); empty when all is well."""
    problems = [f"{tool} not found on PATH: {hint}" for tool, hint in PREREQUISITES.items() if which(tool) is None]
    if which("docker") is not None:
        try:
            info = run(
                ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20, check=False
            )
        except subprocess.TimeoutExpired:
            problems.append("docker info timed out: is the Docker daemon running?")
        else:
            if info.returncode != 0:
                why = info.stderr.strip() or "docker info failed"
                problems.append(f"the Docker daemon is not reachable ({why}): start Docker, then retry")
    return problems
