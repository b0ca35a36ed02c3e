"""Pure renderers: kind config, containerd patch, hosts.toml, registry environments, scripts.

No Pulumi import and no clock, randomness or dict-order dependence: the program
and ``localdev render`` call these same functions, so what a
preview shows is exactly what ``render`` writes, byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from localdev.settings import REGISTRY_API_PORT, REGISTRY_DEBUG_PORT, Mirror, Settings

#: Where every node's containerd looks for per-registry hosts.toml files.
CERTS_DIR = "/etc/containerd/certs.d"

#: NodePorts of the services users open in a browser; their host ports are settings (``Settings.ui_ports``).
UI_NODE_PORTS = {"grafana": 30300, "prometheus": 30900, "jaeger": 31686}

#: The shell scripts the program runs (its Commands, the caches' entrypoint), read as they are:
#: what `pulumi up` runs and what a user reads are the same bytes.
SCRIPTS_DIR = Path(__file__).parent / "scripts"
#: Where the script lives inside the container.
CACHE_ENTRYPOINT_PATH = "/usr/local/bin/localdev-registry-entrypoint"
#: The registry:3 image's config file, passed to the entrypoint as its argument.
REGISTRY_CONFIG_PATH = "/etc/distribution/config.yml"

#: Environment keys whose values never appear in rendered files or logs.
SECRET_ENV_KEYS = frozenset({"REGISTRY_PROXY_PASSWORD"})


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings as YAML literal blocks, so configs read as they will be applied."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def dump_yaml(data: object) -> str:
    """Deterministic YAML: keys in insertion order, multi-line strings as blocks."""
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False)


def render_containerd_patch() -> str:
    """The node containerd patch: ``config_path`` only.

    A ``mirrors`` table next to ``config_path`` makes containerd refuse
    to load its CRI plugin (docs/architecture.md), so mirrors live in hosts.toml files.
    """
    return f'[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{CERTS_DIR}"\n'


def render_kind_config(settings: Settings) -> str:
    """kind's Cluster config: nodes, the containerd patch, UI ports on 127.0.0.1."""
    control_plane: dict[str, object] = {"role": "control-plane", "image": settings.node_image}
    nodes = [dict(control_plane) for _ in range(settings.control_planes)]
    nodes[0]["extraPortMappings"] = [
        {"containerPort": node_port, "hostPort": settings.ui_ports[ui], "listenAddress": "127.0.0.1", "protocol": "TCP"}
        for ui, node_port in UI_NODE_PORTS.items()
    ]
    nodes += [{"role": "worker", "image": settings.node_image} for _ in range(settings.workers)]
    config = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": settings.cluster_name,
        "networking": {"apiServerAddress": "127.0.0.1"},
        "containerdConfigPatches": [render_containerd_patch()],
        "nodes": nodes,
    }
    return dump_yaml(config)


def render_hosts_toml(server: str | None, host_url: str, capabilities: tuple[str, ...] = ("pull", "resolve")) -> str:
    """One ``certs.d/<host>/hosts.toml``: try ``host_url`` first, fall back to ``server``."""
    caps = ", ".join(json.dumps(c) for c in capabilities)
    head = f"server = {json.dumps(server)}\n\n" if server else ""
    return f"{head}[host.{json.dumps(host_url)}]\n  capabilities = [{caps}]\n"


def render_node_hosts(settings: Settings) -> dict[str, str]:
    """Every hosts.toml a node needs, keyed by path relative to ``CERTS_DIR``."""
    files = {
        f"{mirror.host}/hosts.toml": render_hosts_toml(
            server=mirror.remote_url, host_url=f"http://{settings.cache_name(mirror)}:{REGISTRY_API_PORT}"
        )
        for mirror in settings.mirrors
    }
    # The push registry has no upstream to fall back to, and must accept pushes.
    files[f"{settings.push_host}/hosts.toml"] = render_hosts_toml(
        server=None,
        host_url=f"http://{settings.push_name}:{REGISTRY_API_PORT}",
        capabilities=("pull", "resolve", "push"),
    )
    return dict(sorted(files.items()))


def _registry_common_env() -> dict[str, str]:
    return {
        # Every request at debug level fills the container log; info keeps requests and errors.
        "REGISTRY_LOG_LEVEL": "info",
        "REGISTRY_HTTP_DEBUG_ADDR": f"0.0.0.0:{REGISTRY_DEBUG_PORT}",
        "REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED": "true",
        "REGISTRY_HTTP_DEBUG_PROMETHEUS_PATH": "/metrics",
        # registry:3 otherwise tries to export traces to localhost:4318 and logs each failure.
        "OTEL_TRACES_EXPORTER": "none",
    }


def render_cache_env(settings: Settings, mirror: Mirror, *, with_credentials: bool = False) -> dict[str, str]:
    """Environment of a pull-through cache container.

    With ``with_credentials`` the upstream username is included and the password
    is a placeholder key whose value the caller supplies as a secret.
    """
    env = {
        "REGISTRY_PROXY_REMOTEURL": mirror.remote_url,
        "REGISTRY_PROXY_TTL": settings.proxy_ttl,
        # Expired content is only removed when deletes are enabled.
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
        # The entrypoint's offline fallback (docs/offline.md): how long an upstream
        # probe may take, and how often the upstream is probed again.
        "LOCALDEV_PROBE_TIMEOUT_SECONDS": "5",
        "LOCALDEV_RECHECK_SECONDS": "30",
        **_registry_common_env(),
    }
    if with_credentials:
        env["REGISTRY_PROXY_USERNAME"] = settings.docker_hub_username
        env["REGISTRY_PROXY_PASSWORD"] = ""
    return dict(sorted(env.items()))


def render_push_env(settings: Settings) -> dict[str, str]:
    """Environment of the plain push registry (no proxy: a proxy refuses pushes)."""
    return dict(sorted({"REGISTRY_STORAGE_DELETE_ENABLED": "true", **_registry_common_env()}.items()))


def render_cache_entrypoint() -> str:
    """The exact script a cache container runs as its entrypoint."""
    return read_script("registry-entrypoint.sh")


def render_env_file(env: Mapping[str, str]) -> str:
    """KEY=VALUE lines, secret values masked."""
    return "".join(f"{k}={'********' if k in SECRET_ENV_KEYS else v}\n" for k, v in sorted(env.items()))


def render_registry_hosting(settings: Settings) -> str:
    """``localRegistryHosting.v1`` of the ``local-registry-hosting`` ConfigMap (KEP-1755).

    ``hostFromContainerRuntime`` is the name Tilt and Skaffold write into pod specs, so it must be
    one the nodes' containerd has a ``certs.d/<name>/hosts.toml`` for: ``localhost:PORT``
    (:func:`render_node_hosts`). Any other name is pulled over HTTPS and fails against the plain
    HTTP push registry.
    """
    return dump_yaml(
        {
            "host": settings.push_host,
            "hostFromContainerRuntime": settings.push_host,
            "hostFromClusterNetwork": f"{settings.push_name}:{REGISTRY_API_PORT}",
            "help": "https://kind.sigs.k8s.io/docs/user/local-registry/",
        }
    )


def content_hash(*parts: str) -> str:
    """Stable short hash of rendered text; a change of any part replaces what it triggers."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ShellCommand:
    """A script of :data:`SCRIPTS_DIR` and what it runs with, the inputs of one local Command."""

    create: str
    """Script run (``/bin/sh -c``) on create."""
    environment: dict[str, str]
    """Its parameters; the delete script gets the same ones."""
    delete: str | None = None
    """Script run on delete, with the inputs of the last create."""
    stdin: str | None = None
    """Text on the create script's standard input."""


def read_script(name: str) -> str:
    """The exact text of ``localdev/scripts/NAME``."""
    return (SCRIPTS_DIR / name).read_text()


def read_node_check_script(name: str) -> str:
    """``localdev/scripts/NAME`` after ``cri-config-path.sh``, whose function it calls on each node."""
    return read_script("cri-config-path.sh") + read_script(name)


def render_kind_cluster_command(settings: Settings) -> ShellCommand:
    """Create (or adopt) the cluster from the rendered config on stdin; print its kubeconfig.

    Refuses a cluster whose nodes' effective containerd config does not read ``CERTS_DIR``.
    """
    return ShellCommand(
        create=read_node_check_script("kind-create.sh"),
        delete=read_script("kind-delete.sh"),
        environment={"CLUSTER_NAME": settings.cluster_name, "CERTS_DIR": CERTS_DIR},
        stdin=render_kind_config(settings),
    )


def render_node_wiring_command(settings: Settings) -> ShellCommand:
    """Write every hosts.toml of :func:`render_node_hosts` into every node."""
    files = "\n".join(f"{rel} {base64.b64encode(text.encode()).decode()}" for rel, text in render_node_hosts(settings).items())
    return ShellCommand(
        create=read_node_check_script("wire-nodes.sh"),
        environment={"CLUSTER_NAME": settings.cluster_name, "CERTS_DIR": CERTS_DIR, "HOSTS_FILES": files},
    )


def registry_containers(settings: Settings) -> list[str]:
    """Every registry container this stack runs: the caches (sorted by upstream host), then the push registry."""
    return [settings.cache_name(m) for m in settings.mirrors] + [settings.push_name]


def render_network_attachment_command(settings: Settings) -> ShellCommand:
    """Join every registry container to the ``kind`` network under its own name; detach on delete."""
    return ShellCommand(
        create=read_script("attach-network.sh"),
        delete=read_script("detach-network.sh"),
        environment={"CONTAINERS": " ".join(registry_containers(settings))},
    )


#: Files inside the pod that hold the service account's credentials.
_SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
#: In-cluster Services Prometheus scrapes by name: job → target (k8s/ defines each Service and port).
_SERVICE_TARGETS = (
    # The collector's own telemetry.
    ("otel-collector", "otel-collector.observability.svc.cluster.local:8888", False),
    # Metrics applications push to the collector over OTLP, re-exposed by its prometheus exporter:
    # keep the applications' own labels.
    ("otel-collector-exporter", "otel-collector.observability.svc.cluster.local:8889", True),
    ("loki", "loki.observability.svc.cluster.local:3100", False),
    # Jaeger v2's own telemetry (service.telemetry.metrics in its config).
    ("jaeger", "jaeger.observability.svc.cluster.local:8888", False),
    ("grafana", "grafana.observability.svc.cluster.local:3000", False),
)


def _kubelet_job(name: str, metrics_path: str | None) -> dict[str, object]:
    # Straight to each node's kubelet (:10250); kind's kubelet serving certificates are
    # self-signed, hence insecure_skip_verify.
    job: dict[str, object] = {"job_name": name, "scheme": "https"}
    if metrics_path:
        job["metrics_path"] = metrics_path
    job |= {
        "authorization": {"credentials_file": f"{_SERVICE_ACCOUNT}/token"},
        "tls_config": {"insecure_skip_verify": True},
        "kubernetes_sd_configs": [{"role": "node"}],
        "relabel_configs": [
            {"action": "labelmap", "regex": "__meta_kubernetes_node_label_(.+)"},
            {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "node"},
        ],
    }
    return job


def render_prometheus_config(settings: Settings) -> str:
    """``prometheus.yml`` for this stack: the cluster, the platform Services, and this stack's registry caches.

    The caches are docker containers on the ``kind`` network, not pods, so they are
    scraped by container name (``settings.cache_name``) at their debug port, one
    target per configured mirror and labelled with its upstream; the push registry
    too. Pods reach them only if CoreDNS's upstream (the node's resolver, Docker's
    embedded DNS on the kind network) answers for container names; where it does
    not, the targets are simply down (``up == 0``).
    """
    caches = [
        {"targets": [f"{settings.cache_name(m)}:{REGISTRY_DEBUG_PORT}"], "labels": {"upstream": m.host}}
        for m in sorted(settings.mirrors, key=lambda m: m.host)
    ]
    config = {
        "global": {
            "scrape_interval": "30s",
            "scrape_timeout": "10s",
            "evaluation_interval": "30s",
            "external_labels": {"cluster": settings.cluster_name},
        },
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]},
            # The API server (the "kubernetes" Service in "default").
            {
                "job_name": "kubernetes-apiservers",
                "scheme": "https",
                "authorization": {"credentials_file": f"{_SERVICE_ACCOUNT}/token"},
                "tls_config": {"ca_file": f"{_SERVICE_ACCOUNT}/ca.crt"},
                "kubernetes_sd_configs": [{"role": "endpointslice", "namespaces": {"names": ["default"]}}],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_service_name", "__meta_kubernetes_endpointslice_port_name"],
                        "action": "keep",
                        "regex": "kubernetes;https",
                    }
                ],
            },
            _kubelet_job("kubelet", None),
            _kubelet_job("kubernetes-cadvisor", "/metrics/cadvisor"),
            # Any pod annotated prometheus.io/scrape: "true" (port and path from
            # prometheus.io/port and prometheus.io/path).
            {
                "job_name": "kubernetes-pods",
                "kubernetes_sd_configs": [{"role": "pod"}],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                        "action": "keep",
                        "regex": "true",
                    },
                    {"source_labels": ["__meta_kubernetes_pod_phase"], "action": "drop", "regex": "Pending|Succeeded|Failed"},
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                        "action": "replace",
                        "target_label": "__metrics_path__",
                        "regex": "(.+)",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                        "action": "replace",
                        "regex": "(.+);(\\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
                ],
            },
            *(
                {"job_name": job, **({"honor_labels": True} if honor else {}), "static_configs": [{"targets": [target]}]}
                for job, target, honor in _SERVICE_TARGETS
            ),
            {"job_name": "registry-caches", "metrics_path": "/metrics", "static_configs": caches},
            {
                "job_name": "push-registry",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"{settings.push_name}:{REGISTRY_DEBUG_PORT}"]}],
            },
        ],
    }
    return dump_yaml(config)


def render_workload_config_maps(settings: Settings) -> dict[str, dict[str, str]]:
    """ConfigMaps the workloads mount that depend on the stack, keyed ``namespace/name`` → data.

    The Workloads component creates them; ``k8s/`` only names them
    (``localdev.manifests.GENERATED_CONFIG_MAPS``).
    """
    return {"observability/prometheus-config": {"prometheus.yml": render_prometheus_config(settings)}}


# ------------------------------------------------------------------------------------------ the warm step
#: Manifests whose images the warm step fills the caches with, relative to the project directory.
WARM_MANIFESTS = "k8s"
#: Parallel blob downloads of the warm step: enough to fill a home link, few enough to leave the laptop usable.
WARM_JOBS = 4


def warm_targets(settings: Settings, storage: Mapping[str, str] | None = None) -> list[str]:
    """One ``HOST=URL=STORAGE`` per cache, as ``localdev warm --cache`` takes them.

    URL is the cache's port on 127.0.0.1. STORAGE is where ``warm`` reads what
    the cache already holds without asking it: ``container:NAME`` through the
    Docker API (the program's), unless ``storage`` gives another for the host
    (``dir:PATH``: the benchmark's registry processes).
    """
    chosen = storage or {}
    targets = []
    for mirror in settings.mirrors:
        where = chosen.get(mirror.host, f"container:{settings.cache_name(mirror)}")
        targets.append(f"{mirror.host}=http://127.0.0.1:{mirror.port}={where}")
    return targets


def render_warm_command(settings: Settings, *, python: str, targets: list[str] | None = None) -> ShellCommand:
    """Fill the caches with every workload image before any node pulls (``localdev warm`` with ``python``).

    ``python`` is relative to the project directory, where the Command runs
    (:func:`localdev.settings.venv_python`), so the inputs name no path of
    this machine. Nothing to undo on delete: what the caches hold stays, as
    after any pull.
    """
    return ShellCommand(
        create=read_script("warm-caches.sh"),
        environment={
            "LOCALDEV_PYTHON": python,
            "WARM_CACHES": "\n".join(targets if targets is not None else warm_targets(settings)),
            "WARM_JOBS": str(WARM_JOBS),
            "WARM_MANIFESTS": WARM_MANIFESTS,
        },
    )
