"""What the scenarios observe on the real engine: ports, sockets, node files, effective containerd config."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .docker import docker, inspect

CERTS_DIR = "/etc/containerd/certs.d"


def cri_config_path(dump: str) -> str | None:
    """``config_path`` of CRI's registry section in ``containerd config dump`` output.

    containerd 2.x keeps it under ``io.containerd.cri.v1.images`` (1.x and v2 files under
    ``io.containerd.grpc.v1.cri``); the transfer service has a ``config_path`` of its own, which
    kubelet's pulls never read, so it is not looked at.
    """
    plugins: dict[str, Any] = tomllib.loads(dump).get("plugins", {})
    for section in ("io.containerd.cri.v1.images", "io.containerd.grpc.v1.cri"):
        registry = (plugins.get(section) or {}).get("registry")
        if registry is not None:
            value = registry.get("config_path")
            return None if value is None else str(value)
    return None


def node_config_path(node: str) -> str | None:
    return cri_config_path(docker("exec", node, "containerd", "config", "dump").stdout)


def cri_loaded(node: str) -> bool:
    lines = docker("exec", node, "ctr", "plugins", "ls").stdout.splitlines()
    return any(line.split()[:2] == ["io.containerd.grpc.v1", "cri"] and line.split()[-1] == "ok" for line in lines)


def node_hosts_files(node: str) -> dict[str, str]:
    """Every ``certs.d/<host>/hosts.toml`` on a node, keyed as ``render_node_hosts`` keys them."""
    listing = docker("exec", node, "find", CERTS_DIR, "-name", "hosts.toml", check=False).stdout.split()
    files = {}
    for path in listing:
        rel = str(Path(path).relative_to(CERTS_DIR))
        files[rel] = docker("exec", node, "cat", path).stdout
    return files


def published(name: str) -> list[tuple[str, str]]:
    """(host ip, host port) of every port binding the engine made for a container."""
    attrs = inspect("container", name) or {}
    bindings = []
    for values in (attrs.get("NetworkSettings", {}).get("Ports") or {}).values():
        for value in values or []:
            bindings.append((value["HostIp"], value["HostPort"]))
    return bindings


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` on this host (from /proc/net/tcp{,6})."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            if width == 8:
                found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
            else:
                words = [bytes.fromhex(address[i : i + 8])[::-1].hex() for i in range(0, 32, 8)]
                found.add(":".join(w[j : j + 4] for w in words for j in (0, 4)))
    return found
