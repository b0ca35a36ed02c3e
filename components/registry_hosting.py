"""The ``local-registry-hosting`` ConfigMap (KEP-1755), how Tilt and Skaffold find the push registry."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from localdev.render import render_registry_hosting
from localdev.settings import Settings


@dataclass
class LocalRegistryHostingArgs:
    """Inputs of the ConfigMap."""

    settings: Settings
    """Validated stack settings (push registry address)."""
    provider: k8s.Provider
    """Provider of the kind cluster."""


class LocalRegistryHosting(pulumi.ComponentResource):
    """ConfigMap ``kube-public/local-registry-hosting``."""

    config_map: k8s.core.v1.ConfigMap

    def __init__(self, name: str, args: LocalRegistryHostingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("localdev:index:LocalRegistryHosting", name, None, opts)
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-configmap",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="local-registry-hosting", namespace="kube-public"),
            data={"localRegistryHosting.v1": render_registry_hosting(args.settings)},
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        self.register_outputs({})
