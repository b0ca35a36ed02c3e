"""Offline checks of the manifests under ``k8s/``; each returns a list of problems (empty when fine).

Kept apart from the tests so the tests can also feed them broken examples and
see them fail.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import yaml

from localdev.errors import UsageError
from localdev.images import parse_reference

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "k8s"
KUBERNETES_VERSION = "1.37.0"
#: Registries the local pull-through caches mirror (docker.io by default; the rest in the dev stack).
ALLOWED_REGISTRIES = ("docker.io", "ghcr.io", "quay.io", "registry.k8s.io")
#: Kinds without a namespace (built-in ones; custom ones take their CRD's scope).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "CSIDriver",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
)
POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
#: Hosts a process listens on, not a reference to another service.
BIND_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "127.0.0.1", "localhost"})


@dataclass(frozen=True)
class Doc:
    """One object of one manifest file."""

    file: Path
    index: int
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind"))

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name"))

    @property
    def namespace(self) -> str | None:
        ns = (self.obj.get("metadata") or {}).get("namespace")
        return None if ns is None else str(ns)

    @property
    def where(self) -> str:
        return f"{self.file.name}#{self.index} {self.kind}/{self.name}"


def load_docs(directory: Path = K8S_DIR) -> list[Doc]:
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        for index, obj in enumerate(d for d in yaml.safe_load_all(path.read_text()) if d):
            docs.append(Doc(path, index, obj))
    return docs


def find(docs: list[Doc], kind: str, name: str, namespace: str | None = None) -> Doc:
    found = [d for d in docs if d.kind == kind and d.name == name and (namespace is None or d.namespace == namespace)]
    assert len(found) == 1, f"expected one {kind} {namespace}/{name}, found {len(found)}"
    return found[0]


def config_data(docs: list[Doc], name: str, namespace: str, key: str) -> str:
    return str(find(docs, "ConfigMap", name, namespace).obj["data"][key])


# --- schema validation -----------------------------------------------------------------------------------------------


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


@dataclass(frozen=True)
class CrdVersion:
    schema: dict[str, Any]
    namespaced: bool


def crd_index(docs: list[Doc]) -> dict[tuple[str, str, str], CrdVersion]:
    """(group, version, kind) → the CRD version's schema, for every CRD in ``docs``."""
    index = {}
    for doc in docs:
        if doc.kind != "CustomResourceDefinition":
            continue
        spec = doc.obj["spec"]
        for version in spec["versions"]:
            key = (spec["group"], version["name"], spec["names"]["kind"])
            index[key] = CrdVersion(version["schema"]["openAPIV3Schema"], spec["scope"] == "Namespaced")
    return index


def strict_json_schema(schema: Any) -> Any:
    """An openAPIV3Schema as JSON Schema, rejecting unknown fields like ``kubectl --validate=strict``.

    Handles ``nullable``, ``x-kubernetes-int-or-string`` and ``x-kubernetes-preserve-unknown-fields``.
    """
    if isinstance(schema, list):
        return [strict_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_json_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if "properties" in schema:
        out["properties"] = {k: strict_json_schema(v) for k, v in schema["properties"].items()}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validate_custom(obj: dict[str, Any], crds: Mapping[tuple[str, str, str], CrdVersion]) -> list[str]:
    """A custom resource against its CRD's schema (strict); problems as strings."""
    api_version = str(obj.get("apiVersion"))
    key = (group_of(api_version), api_version.rpartition("/")[2], str(obj.get("kind")))
    if key not in crds:
        return [f"no CRD in k8s/ defines {key}"]
    schema = strict_json_schema(crds[key].schema)
    # metadata is the API server's to check; keep the object's own fields strict.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]


def validate_object(obj: dict[str, Any], crds: Mapping[tuple[str, str, str], CrdVersion]) -> list[str]:
    """Strict validation: built-in kinds against Kubernetes' schema, custom ones against their CRD."""
    api_version = str(obj.get("apiVersion"))
    key = (group_of(api_version), api_version.rpartition("/")[2], str(obj.get("kind")))
    if key in crds:
        return validate_custom(obj, crds)
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'.'.join(map(str, err.path)) or '<root>'}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [err.message]
    return []


def namespace_problems(docs: list[Doc]) -> list[str]:
    crds = crd_index(docs)
    problems = []
    for doc in docs:
        api_version = str(doc.obj.get("apiVersion"))
        key = (group_of(api_version), api_version.rpartition("/")[2], doc.kind)
        namespaced = crds[key].namespaced if key in crds else doc.kind not in CLUSTER_SCOPED
        if namespaced and not doc.namespace:
            problems.append(f"{doc.where}: no explicit metadata.namespace")
        if not namespaced and doc.namespace:
            problems.append(f"{doc.where}: cluster-scoped but has a namespace")
    return problems


# --- pods, containers, images ----------------------------------------------------------------------------------------


def pod_spec(doc: Doc) -> dict[str, Any] | None:
    if doc.kind in POD_TEMPLATE_KINDS:
        return dict(doc.obj["spec"]["template"]["spec"])
    if doc.kind == "CronJob":
        return dict(doc.obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    if doc.kind == "Pod":
        return dict(doc.obj["spec"])
    return None


def pod_labels(doc: Doc) -> dict[str, str]:
    if doc.kind == "CronJob":
        return dict(doc.obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels") or {})
    if doc.kind == "Pod":
        return dict(doc.obj["metadata"].get("labels") or {})
    return dict(doc.obj["spec"]["template"]["metadata"].get("labels") or {})


def workloads(docs: list[Doc]) -> Iterator[tuple[Doc, dict[str, Any]]]:
    for doc in docs:
        spec = pod_spec(doc)
        if spec is not None:
            yield doc, spec


def containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """("container" | "initContainer", container) for every container of a pod spec."""
    for container in spec.get("initContainers") or []:
        yield "initContainer", container
    for container in spec.get("containers") or []:
        yield "container", container


def image_problems(ref: str, allowed: tuple[str, ...] = ALLOWED_REGISTRIES) -> list[str]:
    try:
        image = parse_reference(ref)
    except UsageError as err:
        return [err.line()]
    if not ref.startswith(f"{image.registry}/"):  # "grafana/grafana" would silently mean docker.io
        return [f"{ref!r} is not a fully qualified image reference (registry/repository:tag)"]
    problems = []
    if image.registry not in allowed:
        problems.append(f"{ref!r} comes from {image.registry}, which no cache mirrors (allowed: {', '.join(allowed)})")
    if image.digest is None and (image.tag is None or image.tag == "latest"):
        problems.append(f"{ref!r} is not pinned (a version tag or a digest, never latest)")
    return problems


def resource_problems(container: Mapping[str, Any]) -> list[str]:
    resources = container.get("resources") or {}
    return [
        f"{container.get('name')}: no resources.{section}.{res}"
        for section in ("requests", "limits")
        for res in ("cpu", "memory")
        if res not in (resources.get(section) or {})
    ]


def probe_problems(container: Mapping[str, Any]) -> list[str]:
    problems = [f"{container.get('name')}: no {probe}" for probe in ("readinessProbe", "livenessProbe") if probe not in container]
    ports = {p.get("name") for p in container.get("ports") or []} | {p.get("containerPort") for p in container.get("ports") or []}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        for action in ("httpGet", "tcpSocket", "grpc"):
            port = ((container.get(probe) or {}).get(action) or {}).get("port")
            if port is not None and port not in ports:
                problems.append(f"{container.get('name')}: {probe} port {port!r} is not a port of the container")
    return problems


# --- secrets ---------------------------------------------------------------------------------------------------------

_SECRET_WORDS = {"PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "CREDENTIALS", "APIKEY", "PASSPHRASE"}
_SECRET_PAIRS = {("API", "KEY"), ("ACCESS", "KEY"), ("PRIVATE", "KEY"), ("SECRET", "KEY"), ("CLIENT", "SECRET")}


def secretish_name(name: str) -> bool:
    """Whether a variable or field name suggests it holds a secret (``GF_SECURITY_ADMIN_PASSWORD``, ``secretKey``)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    tokens = [t for t in re.split(r"[^A-Za-z0-9]+", snake.upper()) if t]
    if not tokens:
        return False
    return (
        bool(_SECRET_WORDS & set(tokens))
        or any(pair in _SECRET_PAIRS for pair in itertools.pairwise(tokens))
        or tokens[-1] == "AUTH"
    )


def env_secret_problems(container: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    """Env vars named like secrets must come from a Secret, or name a file inside a mounted Secret."""
    secret_volumes = {v["name"] for v in spec.get("volumes") or [] if "secret" in v}
    secret_mounts = [m["mountPath"] for m in container.get("volumeMounts") or [] if m["name"] in secret_volumes]
    problems = []
    for env in container.get("env") or []:
        name = str(env["name"])
        if not secretish_name(name):
            continue
        if "secretKeyRef" in (env.get("valueFrom") or {}):
            continue
        value = env.get("value")
        if re.search(r"_(FILE|PATH)$", name) and isinstance(value, str):
            if any(value == m or value.startswith(m.rstrip("/") + "/") for m in secret_mounts):
                continue
            problems.append(f"{container.get('name')}: {name}={value!r} is not inside a mounted Secret")
            continue
        problems.append(f"{container.get('name')}: {name} does not come from a secretKeyRef")
    return problems


def _embedded(value: str) -> Any:
    """A ConfigMap value parsed as YAML (JSON included), or None when it is neither."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return None
    return parsed if isinstance(parsed, dict | list) else None


#: Last words of field names that point at a secret rather than hold one (secretName, credentials_file, …).
_REFERENCE_WORDS = {"NAME", "REF", "FILE", "PATH", "DIR", "TYPE", "KEYS", "MOUNT"}
_INI_SECRET_RE = re.compile(r"(?im)^[ \t]*([\w.-]*(?:password|passwd|secret|token)[\w.-]*)[ \t]*[=:][ \t]*(\S+)")
_RUNTIME_REFERENCE_RE = re.compile(r"\$\(?\{?[A-Za-z_][A-Za-z0-9_]*\}?\)?")


def _holds_secret(key: str) -> bool:
    words = [t for t in re.split(r"[^A-Z0-9]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).upper()) if t]
    return secretish_name(key) and bool(words) and words[-1] not in _REFERENCE_WORDS


def literal_secret_problems(node: Any, where: str) -> list[str]:
    """Fields named like secrets (password, secretKey, token, …) that carry a literal value.

    ConfigMap-style string values are searched too: parsed as YAML/JSON when they
    are, scanned line by line (``password = …``) when they are not.
    """
    problems = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict | list):
                problems += literal_secret_problems(value, f"{where}.{key}")
            elif _holds_secret(str(key)) and value not in (None, "", False, True):
                text = str(value)
                # A file path, or a reference resolved at run time ($(VAR), ${VAR}), holds no secret.
                if text.startswith("/") or _RUNTIME_REFERENCE_RE.fullmatch(text):
                    continue
                problems.append(f"{where}.{key}: literal value in a field named like a secret")
            elif isinstance(value, str) and "\n" in value:
                embedded = _embedded(value)
                if embedded is not None:
                    problems += literal_secret_problems(embedded, f"{where}.{key}")
                else:
                    for name, text in _INI_SECRET_RE.findall(value):
                        if not (text.startswith("/") or _RUNTIME_REFERENCE_RE.fullmatch(text)):
                            problems.append(f"{where}.{key}: {name} has a literal value")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            problems += literal_secret_problems(item, f"{where}[{index}]")
    return problems


def secret_object_problems(docs: list[Doc]) -> list[str]:
    return [
        f"{d.where}: a Secret with data in k8s/ (the Pulumi program creates Secrets)"
        for d in docs
        if d.kind == "Secret" and (d.obj.get("data") or d.obj.get("stringData"))
    ]


def secret_references(doc: Doc) -> Iterator[tuple[str, str, str | None]]:
    """(namespace, Secret name, key or None) for every Secret a workload reads."""
    spec = pod_spec(doc)
    if spec is None or doc.namespace is None:
        return
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            yield doc.namespace, volume["secret"]["secretName"], None
    for _, container in containers(spec):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                yield doc.namespace, ref["name"], ref["key"]
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                yield doc.namespace, source["secretRef"]["name"], None


# --- services and cross references -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    service: str
    port: int
    target: Any
    node_port: int | None


def service_ports(docs: list[Doc]) -> dict[tuple[str, str], dict[int, ServicePort]]:
    """(namespace, Service name) → port → the port's definition."""
    index: dict[tuple[str, str], dict[int, ServicePort]] = {}
    for doc in docs:
        if doc.kind != "Service" or doc.namespace is None:
            continue
        for port in doc.obj["spec"].get("ports") or []:
            target = port.get("targetPort", port["port"])
            entry = ServicePort(doc.namespace, doc.name, int(port["port"]), target, port.get("nodePort"))
            index.setdefault((doc.namespace, doc.name), {})[entry.port] = entry
    return index


_HOST_PORT_RE = re.compile(
    r"^(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?P<host>[A-Za-z0-9.-]*|\[[0-9a-fA-F:]*\]):(?P<port>[0-9]{1,5})(?:/.*)?$"
)


def endpoint_strings(node: Any) -> Iterator[str]:
    """Every string value below ``node`` that looks like ``host:port`` or a URL with a host."""
    if isinstance(node, dict):
        for value in node.values():
            yield from endpoint_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from endpoint_strings(value)
    elif isinstance(node, str) and (_HOST_PORT_RE.match(node) or re.match(r"^[a-z][a-z0-9+.-]*://[^/\s]+", node)):
        yield node


def split_endpoint(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` or a URL (default ports 80/443)."""
    match = _HOST_PORT_RE.match(text)
    if match:
        return match["host"], int(match["port"])
    url = urlsplit(text)
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def resolve_service(host: str, namespace: str) -> tuple[str, str] | None:
    """``name``, ``name.ns``, ``name.ns.svc`` or ``name.ns.svc.cluster.local`` → (namespace, name); None otherwise."""
    parts = host.split(".")
    if len(parts) == 1:
        return namespace, parts[0]
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == "svc") or parts[2:] == ["svc", "cluster", "local"]:
        return parts[1], parts[0]
    return None


def reference_problems(
    config: Any,
    namespace: str,
    services: Mapping[tuple[str, str], Mapping[int, ServicePort]],
    ignore: frozenset[str] = frozenset(),
) -> list[str]:
    """Every ``host:port`` / URL in a parsed config must be a Service port defined in k8s/ (bind addresses excepted)."""
    problems = []
    for text in endpoint_strings(config):
        host, port = split_endpoint(text)
        if host in BIND_HOSTS or host in ignore:
            continue
        target = resolve_service(host, namespace)
        if target is None:
            problems.append(f"{text!r}: {host} is not a Service name (name[.namespace[.svc[.cluster.local]]])")
        elif target not in services:
            problems.append(f"{text!r}: no Service {target[0]}/{target[1]} in k8s/")
        elif port not in services[target]:
            problems.append(f"{text!r}: Service {target[0]}/{target[1]} has no port {port}")
    return problems


def service_backends(doc: Doc, docs: list[Doc]) -> list[tuple[Doc, dict[str, Any]]]:
    """The workloads (and their pod specs) a Service selects."""
    selector = doc.obj["spec"].get("selector") or {}
    return [
        (w, spec)
        for w, spec in workloads(docs)
        if w.namespace == doc.namespace and selector and all(pod_labels(w).get(k) == v for k, v in selector.items())
    ]


def service_problems(docs: list[Doc]) -> list[str]:
    """Every Service selects a workload, and every targetPort is a port of its containers."""
    problems = []
    for doc in docs:
        if doc.kind != "Service":
            continue
        backends = service_backends(doc, docs)
        if not backends:
            problems.append(f"{doc.where}: selects no workload in k8s/")
            continue
        for port in doc.obj["spec"].get("ports") or []:
            target = port.get("targetPort", port["port"])
            for workload, spec in backends:
                ports = [p for _, c in containers(spec) for p in c.get("ports") or []]
                declared = {p.get("name") for p in ports} | {p.get("containerPort") for p in ports}
                if target not in declared:
                    problems.append(f"{doc.where}: targetPort {target!r} is no container port of {workload.where}")
    return problems


def container_port(spec: Mapping[str, Any], target: Any) -> int | None:
    """The numeric container port a Service targetPort (name or number) lands on."""
    for _, container in containers(spec):
        for port in container.get("ports") or []:
            if target in (port.get("name"), port.get("containerPort")):
                return int(port["containerPort"])
    return None


# --- Prometheus ------------------------------------------------------------------------------------------------------

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_K8S_SD_ROLES = {"node", "pod", "service", "endpoints", "endpointslice", "ingress"}
_K8S_SD_KEYS = {
    "role",
    "namespaces",
    "selectors",
    "api_server",
    "kubeconfig_file",
    "attach_metadata",
    "basic_auth",
    "authorization",
    "oauth2",
    "tls_config",
    "proxy_url",
    "follow_redirects",
    "enable_http2",
}


def kubernetes_sd_problems(config: Mapping[str, Any]) -> list[str]:
    """What promtool cannot check when built without Kubernetes discovery (as Debian builds it)."""
    problems = []
    for job in config.get("scrape_configs") or []:
        for sd in job.get("kubernetes_sd_configs") or []:
            if sd.get("role") not in _K8S_SD_ROLES:
                problems.append(f"{job['job_name']}: kubernetes_sd role {sd.get('role')!r}")
            if set(sd) - _K8S_SD_KEYS:
                problems.append(f"{job['job_name']}: unknown kubernetes_sd fields {sorted(set(sd) - _K8S_SD_KEYS)}")
            names = (sd.get("namespaces") or {}).get("names", [])
            if not isinstance(names, list):
                problems.append(f"{job['job_name']}: namespaces.names must be a list")
    return problems


def promtool_ready(config: Mapping[str, Any], workdir: Path, with_kubernetes_sd: bool) -> dict[str, Any]:
    """The config as promtool can check it on this machine.

    Files that only exist in the pod (service-account token and CA) are replaced by
    stand-ins; without Kubernetes discovery compiled in, each ``kubernetes_sd_configs``
    becomes a ``file_sd_configs`` so the rest (relabelling, TLS, auth) is still checked.
    """
    checked = copy.deepcopy(dict(config))
    stand_ins = workdir / "serviceaccount"
    stand_ins.mkdir(exist_ok=True)
    (stand_ins / "token").write_text("token\n")
    (stand_ins / "ca.crt").write_text("ca\n")
    sd_file = workdir / "targets.json"
    sd_file.write_text(json.dumps([{"targets": ["127.0.0.1:9"]}]))
    text = json.dumps(checked).replace(SERVICE_ACCOUNT_DIR, stand_ins.as_posix())
    checked = json.loads(text)
    if not with_kubernetes_sd:
        for job in checked.get("scrape_configs") or []:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job.setdefault("file_sd_configs", []).append({"files": [sd_file.as_posix()]})
    return checked


# --- OpenTelemetry Collector-style configs (the otel-collector and Jaeger v2) ----------------------------------------

OTELCOL_SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")
#: Component types Jaeger v2.20.0 builds in: cmd/jaeger/internal/components.go (the factories' type names).
JAEGER_V2_COMPONENTS: dict[str, frozenset[str]] = {
    "extensions": frozenset(
        {
            "healthcheckv2",
            "pprof",
            "zpages",
            "basicauth",
            "sigv4auth",
            "jaeger_query",
            "jaeger_storage",
            "remote_sampling",
            "expvar",
            "storage_cleaner",
            "remote_storage",
        }
    ),
    "receivers": frozenset({"otlp", "nop", "jaeger", "kafka", "zipkin"}),
    "exporters": frozenset(
        {"debug", "otlp", "otlp_grpc", "otlphttp", "otlp_http", "nop", "jaeger_storage_exporter", "kafka", "prometheus"}
    ),
    "processors": frozenset({"batch", "memory_limiter", "tail_sampling", "attributes", "filter", "adaptive_sampling"}),
    "connectors": frozenset({"forward", "spanmetrics"}),
}
#: Fields of the Jaeger-specific components, from their mapstructure tags at v2.20.0:
#: cmd/jaeger/internal/extension/jaegerquery/{config.go,internal/flags.go},
#: cmd/internal/storageconfig/config.go, internal/storage/v2/memory/config.go,
#: cmd/jaeger/internal/exporters/storageexporter/config.go.
JAEGER_V2_FIELDS: dict[str, frozenset[str]] = {
    "jaeger_query": frozenset(
        {
            "storage",
            "base_path",
            "ui",
            "bearer_token_propagation",
            "header_forwarding",
            "multi_tenancy",
            "max_clock_skew_adjust",
            "max_trace_size",
            "enable_tracing",
            "http",
            "grpc",
            "ai",
            "otlp_proxy",
        }
    ),
    "jaeger_query.storage": frozenset({"traces", "traces_archive", "metrics"}),
    "jaeger_storage": frozenset({"backends", "metric_backends"}),
    "jaeger_storage.backend": frozenset({"memory", "badger", "grpc", "cassandra", "elasticsearch", "opensearch", "clickhouse"}),
    "memory": frozenset({"max_traces"}),
    "jaeger_storage_exporter": frozenset({"trace_storage", "queue", "retry_on_failure"}),
}


def otelcol_problems(config: Mapping[str, Any], known: Mapping[str, frozenset[str]] | None = None) -> list[str]:
    """What an OpenTelemetry Collector build would refuse at start, as far as structure goes.

    Every pipeline and ``service.extensions`` entry must be a defined component;
    every defined component's type (the name before ``/``) must be one the build
    has, when ``known`` lists them; pipelines are ``traces``, ``metrics`` or ``logs``
    (optionally ``/name``) and each has a receiver and an exporter.
    """
    problems = []
    unknown_top = set(config) - {*OTELCOL_SECTIONS, "service"}
    if unknown_top:
        problems.append(f"unknown top-level sections {sorted(unknown_top)}")
    defined = {section: set(config.get(section) or {}) for section in OTELCOL_SECTIONS}
    if known is not None:
        for section, names in defined.items():
            for name in sorted(names):
                if name.split("/")[0] not in known.get(section, frozenset()):
                    problems.append(f"{section}.{name}: no such component type in this build")
    service = config.get("service") or {}
    for name in service.get("extensions") or []:
        if name not in defined["extensions"]:
            problems.append(f"service.extensions: {name} is not defined under extensions")
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines: none")
    for pipeline, spec in pipelines.items():
        if pipeline.split("/")[0] not in ("traces", "metrics", "logs"):
            problems.append(f"service.pipelines.{pipeline}: not a traces, metrics or logs pipeline")
        for section in ("receivers", "processors", "exporters"):
            for name in (spec or {}).get(section) or []:
                if name not in defined[section] and name not in defined["connectors"]:
                    problems.append(f"service.pipelines.{pipeline}.{section}: {name} is not defined")
        for section in ("receivers", "exporters"):
            if not (spec or {}).get(section):
                problems.append(f"service.pipelines.{pipeline}: no {section}")
    return problems


def jaeger_v2_problems(config: Mapping[str, Any]) -> list[str]:
    """Jaeger v2's own rules on top of :func:`otelcol_problems`: known fields, storage names that resolve."""
    problems = otelcol_problems(config, JAEGER_V2_COMPONENTS)
    extensions = config.get("extensions") or {}
    exporters = config.get("exporters") or {}

    def fields(where: str, node: Any, allowed_key: str) -> None:
        if not isinstance(node, dict):
            problems.append(f"{where}: expected a mapping")
            return
        extra = set(node) - JAEGER_V2_FIELDS[allowed_key]
        if extra:
            problems.append(f"{where}: unknown field(s) {sorted(extra)}")

    storage = extensions.get("jaeger_storage") or {}
    fields("extensions.jaeger_storage", storage, "jaeger_storage")
    backends = storage.get("backends") or {}
    for name, backend in backends.items():
        fields(f"extensions.jaeger_storage.backends.{name}", backend, "jaeger_storage.backend")
        if isinstance(backend, dict) and len(backend) != 1:
            problems.append(f"extensions.jaeger_storage.backends.{name}: exactly one storage type, got {sorted(backend)}")
        if isinstance(backend, dict) and "memory" in backend:
            fields(f"extensions.jaeger_storage.backends.{name}.memory", backend["memory"] or {}, "memory")
    for name, query in ((n, q) for n, q in extensions.items() if n.split("/")[0] == "jaeger_query"):
        fields(f"extensions.{name}", query, "jaeger_query")
        wanted = (query or {}).get("storage") or {}
        fields(f"extensions.{name}.storage", wanted, "jaeger_query.storage")
        if not wanted.get("traces"):
            problems.append(f"extensions.{name}.storage.traces is required")
        for role in ("traces", "traces_archive"):
            if wanted.get(role) and wanted[role] not in backends:
                problems.append(f"extensions.{name}.storage.{role}: {wanted[role]!r} is no jaeger_storage backend")
    for name, exporter in ((n, e) for n, e in exporters.items() if n.split("/")[0] == "jaeger_storage_exporter"):
        fields(f"exporters.{name}", exporter, "jaeger_storage_exporter")
        target = (exporter or {}).get("trace_storage")
        if target not in backends:
            problems.append(f"exporters.{name}.trace_storage: {target!r} is no jaeger_storage backend")
    if any(n.split("/")[0] in ("jaeger_query", "jaeger_storage_exporter") for n in [*extensions, *exporters]) and not storage:
        problems.append("extensions.jaeger_storage: required by jaeger_query and jaeger_storage_exporter")
    return problems
