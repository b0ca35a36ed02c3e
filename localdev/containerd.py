"""What a node's containerd really uses, read from ``containerd config dump`` (its effective config)."""

from __future__ import annotations

import tomllib
from typing import Any

#: The sections CRI reads its registry config from: containerd 2.x, then 1.x (and v2 files).
CRI_REGISTRY_SECTIONS = ("io.containerd.cri.v1.images", "io.containerd.grpc.v1.cri")


def cri_config_path(dump: str) -> str:
    """``config_path`` of CRI's registry section in ``containerd config dump`` output ('' when unset).

    The dump, not the file: containerd 2.x migrates a version-2 file's
    ``io.containerd.grpc.v1.cri`` registry section to ``io.containerd.cri.v1.images``, and kind
    silently skips a containerdConfigPatches entry whose version differs from its node file's
    (kind's ``pkg/cluster/internal/patch``). containerd 2.x dumps a second ``config_path``, under
    the transfer service, which kubelet's pulls never read; it is not looked at.
    """
    plugins: dict[str, Any] = tomllib.loads(dump).get("plugins", {})
    for section in CRI_REGISTRY_SECTIONS:
        registry = (plugins.get(section) or {}).get("registry")
        if registry is not None:
            return str(registry.get("config_path") or "")
    return ""
