"""What the scenarios observe on the real engine: ports, sockets, node files, effective containerd config."""

from __future__ import annotations

from pathlib import Path

from localdev.containerd import cri_config_path

from .docker import docker, inspect

CERTS_DIR = "/etc/containerd/certs.d"


def node_config_path(node: str) -> str:
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
