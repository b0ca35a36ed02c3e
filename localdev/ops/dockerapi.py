"""The Docker daemon, through the Docker SDK for Python (``docker.from_env()``)."""

from __future__ import annotations

from typing import Any

from localdev.errors import OpsError


class DockerUnavailable(OpsError):
    """The daemon cannot be reached (or the SDK is missing)."""


def short_docker_error(err: Exception) -> str:
    explanation = getattr(err, "explanation", None)
    text = str(explanation or err) or type(err).__name__
    if "Connection refused" in text or "No such file or directory" in text or "FileNotFoundError" in text:
        text = "connection refused" if "refused" in text else "no daemon socket"
    return " ".join(text.split())[:200]


def connect(timeout: float = 15.0) -> Any:
    """A ``docker.DockerClient`` for ``DOCKER_HOST`` (or the default socket), known to answer."""
    import docker  # type: ignore[import-untyped]  # missing: the command's entry point says what to install
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except docker.errors.DockerException as err:
        raise DockerUnavailable(
            f"cannot reach the Docker daemon ({short_docker_error(err)})",
            fix="start Docker (or point DOCKER_HOST at it), then retry",
        ) from err
    return client
