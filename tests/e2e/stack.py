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


def standin_node_image(image: str) -> str:
    """The tag the kindest/node stand-in carries for the stack's ``nodeImage``.

    A digest names the bytes of kind's published image, which a locally built image can never
    have; and Docker only finds an image by digest when it was pulled or pushed with it. So a
    digest-pinned default becomes the same reference without its digest, and the test stack sets
    ``nodeImage`` to that tag (docs/testing.md).
    """
    return image.split("@", 1)[0]


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
