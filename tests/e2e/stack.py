"""The end-to-end test's stack: the program's defaults, with every upstream a registry of the test's own.

The defaults name real upstreams (``https://registry-1.docker.io``, ghcr.io, …) in each cache and
in every node's hosts.toml ``server``. Here every mirror is ``HOST=PORT=URL`` with URL the test's
upstream registry container, so nothing a test starts can reach a public name.

Ports are fixed, away from the defaults (5000, 5001, …) so a developer's own stack does not clash
with the end-to-end stack, and below the kernel's ephemeral range (32768+), where other tests'
connections on the machine could hold them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from localdev.images import parse_reference
from localdev.settings import Settings, parse_settings

#: Mirror host -> its cache port on 127.0.0.1 (metrics on port + 100, the program's offset).
CACHE_PORTS = {"docker.io": 25000, "ghcr.io": 25002}
PUSH_PORT = 25001
#: The UIs the control-plane node publishes (kind port mappings), away from 3000/9090/16686.
UI_PORTS = {"grafanaPort": 25300, "prometheusPort": 25390, "jaegerPort": 25386}
DEFAULT_STACK = "e2e"


def default_settings() -> Settings:
    """The program's own defaults (Pulumi.yaml), read at run time, never copied here."""
    return parse_settings({})


#: Where the kindest/node stand-in lives in the private engine.
STANDIN_NODE_REPOSITORY = "localdev-e2e/kindest-node-standin"


def standin_node_image(image: str) -> str:
    """The reference of the kindest/node stand-in for the stack's default ``nodeImage``.

    The default names kind's published image by digest, and the program refuses ``kindest/node``
    without one (kind v0.33.0's release notes). A locally built image can never have that digest,
    and Docker finds an image by digest only when it was pulled or pushed with it. So the stand-in
    gets a repository of its own, named as a stand-in, with the default's tag, and the test stack
    sets ``nodeImage`` to it (docs/testing.md).
    """
    tag = parse_reference(image).tag or "latest"
    return f"{STANDIN_NODE_REPOSITORY}:{tag}"


@dataclass(frozen=True)
class TestStack:
    """One configuration of the end-to-end stack."""

    name: str
    upstream_url: str
    workers: int = 1
    mirrors: Sequence[str] = ("docker.io", "ghcr.io")
    node_image: str = ""
    registry_image: str = ""

    def config(self) -> dict[str, Any]:
        defaults = default_settings()
        return {
            "clusterName": self.name,
            "workers": self.workers,
            "mirrors": [f"{host}={CACHE_PORTS[host]}={self.upstream_url}" for host in self.mirrors],
            "pushRegistryPort": PUSH_PORT,
            **UI_PORTS,
            "nodeImage": self.node_image or standin_node_image(defaults.node_image),
            "registryImage": self.registry_image or defaults.registry_image,
        }

    def settings(self) -> Settings:
        return parse_settings(self.config())
