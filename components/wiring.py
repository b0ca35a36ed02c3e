"""Wiring the registries into the cluster: network attachment and node mirror files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from components.shell import shell_command
from localdev.render import content_hash, render_network_attachment_command, render_node_hosts, render_node_wiring_command
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
        shell = render_network_attachment_command(args.settings)
        self.command = shell_command(
            f"{name}-connect",
            shell,
            triggers=[content_hash(shell.create, *shell.environment.values()), *[r.id for r in args.registries], args.cluster.id],
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
        self.command = shell_command(
            f"{name}-hosts",
            render_node_wiring_command(args.settings),
            triggers=[content_hash(*files, *files.values()), args.cluster.id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.cluster]),
        )
        self.register_outputs({})
