"""The warm step: the caches filled with every workload image before any node pulls one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_command as command

from components.shell import shell_command
from localdev.manifests import image_set_digest
from localdev.render import render_warm_command
from localdev.settings import Settings, venv_python


@dataclass
class CacheWarmupArgs:
    """Inputs of the warm step."""

    settings: Settings
    """Validated stack settings (the caches' hosts, ports and container names)."""
    manifests_dir: Path
    """The workloads' manifests; their images are what is warmed, and a change to that set runs the step again."""
    caches: Sequence[pulumi.CustomResource]
    """The cache containers (created healthy: the step waits for them, and runs again when one is replaced)."""


class CacheWarmup(pulumi.ComponentResource):
    """``localdev warm`` against the stack's caches, after they are healthy and before any workload.

    Each distinct (repository, blob) is read once, in full, through its cache
    on 127.0.0.1: distribution 3.x stores it from that one upstream stream.
    The nodes then find everything stored, so three nodes starting at once
    cost the link the image bytes once instead of once per node. An image that
    cannot be fetched is reported and the step succeeds: the caches serve
    what they hold, and fetch the rest when a node first asks.

    It waits for the caches only: it reaches them on 127.0.0.1, not through
    the kind network or the nodes' containerd, so it runs while kind creates
    the cluster. The workloads wait for it and for the wiring.
    """

    command: command.local.Command

    def __init__(self, name: str, args: CacheWarmupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("localdev:index:CacheWarmup", name, None, opts)
        shell = render_warm_command(args.settings, python=venv_python())
        self.command = shell_command(
            f"{name}-warm",
            shell,
            # The image set, and the caches' ids: a new (empty) cache is warmed again.
            triggers=[image_set_digest(args.manifests_dir), *[cache.id for cache in args.caches]],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.caches)),
        )
        self.register_outputs({})
