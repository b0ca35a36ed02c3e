"""Stack settings: parsed and validated once, before any resource exists.

The schema (keys, types, defaults, descriptions) lives in ``Pulumi.yaml`` only;
this module reads it, so the Pulumi CLI, the program under mocks and the
``render`` command all see the same defaults. No Pulumi import: the CLI uses it too.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localdev.errors import UsageError
from localdev.images import parse_reference

PROJECT_DIR = Path(__file__).resolve().parent.parent

#: Port the registry listens on inside its container (the image's default).
REGISTRY_API_PORT = 5000
#: distribution's debug server (expvar and Prometheus /metrics) inside the container.
REGISTRY_DEBUG_PORT = 5001
#: A cache's metrics are published on 127.0.0.1 at its port plus this offset.
METRICS_PORT_OFFSET = 100

#: Registries whose API is not served at https://HOST.
KNOWN_REMOTES = {"docker.io": "https://registry-1.docker.io"}
#: Default cache ports for well-known registries; any other host needs HOST=PORT.
DEFAULT_CACHE_PORTS = {
    "docker.io": 5000,
    "ghcr.io": 5002,
    "quay.io": 5003,
    "registry.k8s.io": 5004,
    "gcr.io": 5005,
    "mcr.microsoft.com": 5006,
    "public.ecr.aws": 5007,
}

_HOST_RE = re.compile(
    r"^(?=.{1,253}(:|$))([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,5})?$"
)
_CLUSTER_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_DURATION_RE = re.compile(r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")


class ConfigError(ValueError):
    """A stack setting is wrong; the message names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key
        super().__init__(f"config '{key}': {problem}. Fix: {fix}")


@dataclass(frozen=True)
class Mirror:
    """One upstream registry and the local cache in front of it."""

    host: str
    """Registry host as images name it, e.g. ``docker.io`` or ``ghcr.io``."""
    remote_url: str
    """Base URL the cache pulls from (``REGISTRY_PROXY_REMOTEURL``)."""
    port: int
    """Port of the cache's API on 127.0.0.1."""
    metrics_port: int
    """Port of the cache's debug server (``/metrics``, ``/debug/vars``) on 127.0.0.1."""

    @property
    def slug(self) -> str:
        """The host as a name fragment: ``registry.k8s.io`` → ``registry-k8s-io``."""
        return re.sub(r"[^a-z0-9]+", "-", self.host)


@dataclass(frozen=True)
class Settings:
    """Everything the program and the renderers need, validated."""

    cluster_name: str
    node_image: str
    control_planes: int
    workers: int
    mirrors: tuple[Mirror, ...]
    push_port: int
    registry_image: str
    proxy_ttl: str
    retain_caches: bool
    docker_hub_username: str

    def cache_name(self, mirror: Mirror) -> str:
        """Container name of a cache; also its alias on the kind network."""
        return f"{self.cluster_name}-cache-{mirror.slug}"

    @property
    def push_name(self) -> str:
        """Container name of the push registry; also its alias on the kind network."""
        return f"{self.cluster_name}-registry"

    @property
    def push_host(self) -> str:
        """How nodes and users name the push registry in image references."""
        return f"localhost:{self.push_port}"

    @property
    def kube_context(self) -> str:
        return f"kind-{self.cluster_name}"


def load_schema(project_dir: Path = PROJECT_DIR) -> dict[str, dict[str, Any]]:
    """The ``config:`` block of Pulumi.yaml: key → {type, default, description}."""
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    return dict(project.get("config") or {})


def project_name(project_dir: Path = PROJECT_DIR) -> str:
    return str(yaml.safe_load((project_dir / "Pulumi.yaml").read_text())["name"])


def _coerce(key: str, kind: str, value: Any) -> Any:
    """Config reaches us as YAML values (stack file) or strings (Pulumi runtime)."""
    if kind == "string":
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {value!r}", f"pulumi config set {key} VALUE")
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            return int(value)
        raise ConfigError(key, f"expected a whole number, got {value!r}", f"pulumi config set {key} 2")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(key, f"expected true or false, got {value!r}", f"pulumi config set {key} true")
    if kind == "array":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise ConfigError(key, f"not a list ({err})", f"pulumi config set --path '{key}[0]' VALUE") from err
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ConfigError(key, f"expected a list of strings, got {value!r}", f"pulumi config set --path '{key}[0]' VALUE")
    raise ConfigError(key, f"Pulumi.yaml declares unsupported type {kind!r}", "declare string, integer, boolean or array")


def _port(key: str, value: Any) -> int:
    port = _coerce(key, "integer", value)
    if not 1024 <= port <= 65535:
        raise ConfigError(key, f"port {port} is outside 1024-65535", "choose an unprivileged port such as 5010")
    return int(port)


def parse_mirror(entry: str) -> Mirror:
    """Parse one ``mirrors`` entry: ``HOST``, ``HOST=PORT`` or ``HOST=PORT=REMOTE_URL``."""
    key = "mirrors"
    parts = entry.strip().split("=", 2)
    host = parts[0].strip().lower()
    if not _HOST_RE.match(host):
        raise ConfigError(
            key,
            f"{entry!r} does not start with a registry host",
            "write entries as HOST, HOST=PORT or HOST=PORT=URL, e.g. ghcr.io=5002",
        )
    if len(parts) > 1 and parts[1].strip():
        port = _port(f"{key} ({host})", parts[1].strip())
    elif host in DEFAULT_CACHE_PORTS:
        port = DEFAULT_CACHE_PORTS[host]
    else:
        raise ConfigError(key, f"{host} has no default cache port", f"give one: {host}=5010")
    remote = parts[2].strip() if len(parts) > 2 else KNOWN_REMOTES.get(host, f"https://{host}")
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?", remote):
        raise ConfigError(
            key,
            f"remote URL {remote!r} of {host} is not a scheme://host[:port] base URL",
            f"use e.g. {host}={port}=https://{host}",
        )
    return Mirror(host=host, remote_url=remote.rstrip("/"), port=port, metrics_port=port + METRICS_PORT_OFFSET)


def _check_pinned(key: str, image: str) -> None:
    try:
        ref = parse_reference(image)
    except UsageError as err:
        raise ConfigError(key, f"{image!r} is not an image reference ({err})", "use NAME:TAG, e.g. registry:3.0.0") from None
    if ref.digest is None and ref.tag in (None, "latest"):
        raise ConfigError(key, f"{image!r} is not pinned", "name a version tag (or a digest), never latest")


def parse_settings(
    values: Mapping[str, Any],
    *,
    schema: Mapping[str, Mapping[str, Any]] | None = None,
    project: str | None = None,
) -> Settings:
    """Validate stack config and apply Pulumi.yaml defaults.

    ``values`` maps keys, bare (``workers``) or namespaced (``localdev:workers``),
    to values. Keys of other namespaces (``kubernetes:…``) are not ours and pass.
    """
    schema = load_schema() if schema is None else schema
    project = project_name() if project is None else project
    given: dict[str, Any] = {}
    for raw_key, value in values.items():
        namespace, _, key = raw_key.rpartition(":")
        if namespace and namespace != project:
            continue
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(schema))}"
            raise ConfigError(key, "unknown setting", f"remove it with `pulumi config rm {key}`; {hint}")
        given[key] = value
    cfg = {
        key: _coerce(key, str(spec.get("type", "string")), given.get(key, spec.get("default"))) for key, spec in schema.items()
    }

    cluster = cfg["clusterName"]
    if not _CLUSTER_RE.match(cluster):
        raise ConfigError(
            "clusterName",
            f"{cluster!r} is not a valid kind cluster name",
            "use 1-32 lowercase letters, digits and dashes, e.g. localdev",
        )
    _check_pinned("nodeImage", cfg["nodeImage"])
    _check_pinned("registryImage", cfg["registryImage"])
    if cfg["controlPlanes"] not in (1, 3):
        raise ConfigError(
            "controlPlanes",
            f"{cfg['controlPlanes']} control-plane nodes cannot form a healthy etcd quorum here",
            "use 1, or 3 for HA testing",
        )
    if not 0 <= cfg["workers"] <= 10:
        raise ConfigError("workers", f"{cfg['workers']} workers is outside 0-10", "use a number from 0 to 10")
    if not _DURATION_RE.match(cfg["proxyTtl"]):
        raise ConfigError("proxyTtl", f"{cfg['proxyTtl']!r} is not a Go duration", "use e.g. 720h, 168h or 0 (never expire)")
    if bool(cfg["dockerHubUsername"]) != bool(cfg["dockerHubPassword"]):
        raise ConfigError(
            "dockerHubPassword",
            "dockerHubUsername and dockerHubPassword must be set together",
            "set both (the password with --secret) or neither",
        )

    # Sorted, so reordering the list in a stack file changes nothing downstream.
    mirrors = tuple(sorted((parse_mirror(entry) for entry in cfg["mirrors"]), key=lambda m: m.host))
    if not mirrors:
        raise ConfigError("mirrors", "no registry to cache", "keep at least docker.io")
    push_port = _port("pushRegistryPort", cfg["pushRegistryPort"])
    seen_hosts: set[str] = set()
    ports: dict[int, str] = {push_port: "pushRegistryPort"}
    for mirror in mirrors:
        if mirror.host in seen_hosts:
            raise ConfigError("mirrors", f"{mirror.host} is listed twice", "keep one entry per registry")
        seen_hosts.add(mirror.host)
        for port, what in (
            (mirror.port, f"the {mirror.host} cache"),
            (mirror.metrics_port, f"the {mirror.host} cache's metrics"),
        ):
            if port in ports:
                raise ConfigError(
                    "mirrors",
                    f"{what} and {ports[port]} both want 127.0.0.1:{port}",
                    f"give {mirror.host} another port: {mirror.host}=PORT",
                )
            ports[port] = what
    return Settings(
        cluster_name=cluster,
        node_image=cfg["nodeImage"],
        control_planes=cfg["controlPlanes"],
        workers=cfg["workers"],
        mirrors=mirrors,
        push_port=push_port,
        registry_image=cfg["registryImage"],
        proxy_ttl=cfg["proxyTtl"],
        retain_caches=cfg["retainCaches"],
        docker_hub_username=cfg["dockerHubUsername"],
    )


def stack_values(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The ``config:`` block of ``Pulumi.<stack>.yaml`` (empty when there is none).

    Encrypted values (``{secure: …}``) are replaced by a placeholder: rendering
    never needs a secret's value, only whether one is set.
    """
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise ConfigError(
            "--stack", f"{path.name} does not exist", f"create it with `pulumi stack init {stack}` or pick an existing stack"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    return {
        key: ("<secret>" if isinstance(value, dict) and "secure" in value else value)
        for key, value in (raw.get("config") or {}).items()
    }
