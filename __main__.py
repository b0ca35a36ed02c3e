"""localdev: a kind cluster whose image pulls go through local pull-through caches.

Config in, components wired, outputs out. The order that matters is carried by
the dependency graph: no workload is applied before the caches are attached to
the kind network and wired into every node's containerd.
"""

from __future__ import annotations

import os
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components.kind_cluster import KindCluster, KindClusterArgs
from components.registry import Registry, cache_args, push_args
from components.registry_hosting import LocalRegistryHosting, LocalRegistryHostingArgs
from components.wiring import NetworkAttachment, NetworkAttachmentArgs, NodeMirrors, NodeMirrorsArgs
from components.workloads import Workloads, WorkloadsArgs
from localdev.manifests import SECRET_CONFIG
from localdev.preflight import missing_prerequisites
from localdev.render import render_workload_config_maps
from localdev.settings import ConfigError, Settings, parse_settings, read_stack


def load_settings() -> Settings:
    """The stack config, checked by the same function as ``localdev render`` before any resource is registered."""
    values = {**pulumi.runtime.config.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    secret_keys = set(pulumi.runtime.config.get_config_secret_keys_env()) | {
        k for k in values if pulumi.runtime.config.is_config_secret(k)
    }
    try:
        return parse_settings(values, secret_keys)
    except ConfigError as err:
        try:  # the key's line, when the value came from the stack file
            lines = read_stack(pulumi.get_stack(), Path(__file__).resolve().parent).lines
        except (ConfigError, OSError):
            lines = {}
        raise err.at(f"Pulumi.{pulumi.get_stack()}.yaml", lines) from None


try:
    settings = load_settings()
    if os.environ.get("LOCALDEV_SKIP_PREFLIGHT") != "1" and (problems := missing_prerequisites(settings.node_image)):
        raise pulumi.RunError("missing prerequisites:\n  " + "\n  ".join(problems))
except ConfigError as err:
    raise pulumi.RunError(str(err)) from None

config = pulumi.Config()
hub_password = config.get_secret("dockerHubPassword") if settings.docker_hub_username else None

registry_image = docker.RemoteImage("registry-image", name=settings.registry_image, keep_locally=True)
caches = {
    m.host: Registry(f"cache-{m.slug}", cache_args(settings, m, registry_image.image_id, hub_password)) for m in settings.mirrors
}
push = Registry("push-registry", push_args(settings, registry_image.image_id))
registries = [r.container for r in (*caches.values(), push)]

cluster = KindCluster("cluster", KindClusterArgs(settings=settings))
network = NetworkAttachment(
    "registries-network",
    NetworkAttachmentArgs(settings=settings, cluster=cluster.command, registries=registries),
)
node_mirrors = NodeMirrors("node-mirrors", NodeMirrorsArgs(settings=settings, cluster=cluster.command))
LocalRegistryHosting("local-registry-hosting", LocalRegistryHostingArgs(settings=settings, provider=cluster.provider))
workloads = Workloads(
    "workloads",
    WorkloadsArgs(
        provider=cluster.provider,
        manifests_dir=Path(__file__).resolve().parent / "k8s",
        depends_on=[node_mirrors.command, network.command],
        secrets={key: config.get_secret(key) for key in SECRET_CONFIG},
        ui_ports=settings.ui_ports,
        config_maps=render_workload_config_maps(settings),
    ),
)

pulumi.export("clusterName", settings.cluster_name)
pulumi.export("kubeContext", settings.kube_context)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("pushRegistry", settings.push_host)
pulumi.export("caches", {host: cache.endpoint for host, cache in caches.items()})
pulumi.export("uis", workloads.urls)
