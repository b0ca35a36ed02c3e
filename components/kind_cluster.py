"""The kind cluster, created by the kind CLI through a local Command."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from components.shell import shell_command
from localdev.render import content_hash, render_kind_cluster_command
from localdev.settings import Settings


@dataclass
class KindClusterArgs:
    """Inputs of the cluster."""

    settings: Settings
    """Validated stack settings (name, node image, node counts, mirrors)."""


class KindCluster(pulumi.ComponentResource):
    """``kind create cluster`` with the rendered config, and a Kubernetes provider for it.

    The kubeconfig is secret everywhere: the Command's stdout is an additional
    secret output and is left out of its logs.
    """

    command: command.local.Command
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, args: KindClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("localdev:index:KindCluster", name, None, opts)
        settings = args.settings
        shell = render_kind_cluster_command(settings)
        self.command = shell_command(
            f"{name}-kind",
            shell,
            # A change of the rendered config replaces the cluster; the name is
            # fixed, so the old one must go first.
            triggers=[content_hash(shell.stdin or "")],
            logging=command.local.Logging.STDERR,
            opts=pulumi.ResourceOptions(
                parent=self,
                delete_before_replace=True,
                additional_secret_outputs=["stdout"],
            ),
        )
        self.kubeconfig = pulumi.Output.secret(self.command.stdout)
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self.kubeconfig,
            context=settings.kube_context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"kubeconfig": self.kubeconfig})
