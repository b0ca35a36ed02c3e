"""Test harness driving real binaries on loopback: registries, a relay, containerd.

Modules:

* :mod:`.net` - ``free_port``, ``wait_for_http``.
* :mod:`.registry` - ``RegistryProcess`` (``docker-registry`` 2.8).
* :mod:`.images` - synthetic OCI images, HTTP and skopeo pushes, verified pulls.
* :mod:`.relay` - ``HttpRelay``: request recording, link model, fault modes.
* :mod:`.containerd` - ``Containerd`` (containerd 1.6, ctr and CRI pulls).
* :mod:`.pytest_plugin` - fixtures ``upstream_registry``, ``make_registry``,
  ``relay_factory``, ``containerd_factory``.

Nothing here imports Pulumi.
"""

from .binaries import MissingBinaryError, require_binary
from .containerd import Containerd, ContainerdStartError, CriError, write_hosts_toml
from .images import (
    DigestMismatchError,
    PushError,
    SyntheticImage,
    make_image,
    pull_manifest_and_blobs,
    push_image,
    push_with_skopeo,
)
from .net import free_port, wait_for_http
from .registry import RegistryProcess, RegistryStartError
from .relay import HttpRelay, RelayedRequest

__all__ = [
    "Containerd",
    "ContainerdStartError",
    "CriError",
    "DigestMismatchError",
    "HttpRelay",
    "MissingBinaryError",
    "PushError",
    "RegistryProcess",
    "RegistryStartError",
    "RelayedRequest",
    "SyntheticImage",
    "free_port",
    "make_image",
    "pull_manifest_and_blobs",
    "push_image",
    "push_with_skopeo",
    "require_binary",
    "wait_for_http",
    "write_hosts_toml",
]
