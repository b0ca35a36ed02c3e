"""Wiring the registries into the cluster: network attachment and node mirror files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from localdev.render import (
    content_hash,
    render_network_attach_script,
    render_network_detach_script,
    render_node_hosts,
    render_node_wiring_script,
)
from localdev.settings import Settings


@dataclass
class NetworkAttachmentArgs:
    """Inputs of the attachment."""

    settings: Settings
    """Validated stack settings (container names)."""
    cluster: pulumi.CustomResource
    """The cluster command; kind creates the ``kind`` network."""
    registries: Sequence[pulumi.CustomResource]
    """The registry containers to attach."""


class NetworkAttachment(pulumi.ComponentResource):
    """Every registry container joined to the ``kind`` network under its own name."""

    command: command.local.Command

    def __init__(self, name: str, args: NetworkAttachmentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("localdev:index:NetworkAttachment", name, None, opts)
        attach = render_network_attach_script(args.settings)
        self.command = command.local.Command(
            f"{name}-connect",
            create=attach,
            delete=render_network_detach_script(args.settings),
            triggers=[content_hash(attach), *[r.id for r in args.registries], args.cluster.id],
            # Replacing must detach (the old delete) before attaching again, not after.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.cluster, *args.registries], delete_before_replace=True),
        )
        self.register_outputs({})


@dataclass
class NodeMirrorsArgs:
    """Inputs of the node wiring."""

    settings: Settings
    """Validated stack settings (mirrors, push registry, cluster name)."""
    cluster: pulumi.CustomResource
    """The cluster command; re-wired whenever it is replaced (new nodes)."""


class NodeMirrors(pulumi.ComponentResource):
    """``certs.d/<host>/hosts.toml`` for every mirror and the push registry, on every node."""

    command: command.local.Command

    def __init__(self, name: str, args: NodeMirrorsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("localdev:index:NodeMirrors", name, None, opts)
        files = render_node_hosts(args.settings)
        self.command = command.local.Command(
            f"{name}-hosts",
            create=render_node_wiring_script(args.settings),
            triggers=[content_hash(*files, *files.values()), args.cluster.id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.cluster]),
        )
        self.register_outputs({})
