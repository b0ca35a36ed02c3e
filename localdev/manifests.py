"""What the manifests under ``k8s/`` define and need: apply order, the Secrets they read, the images they run.

Pure analysis of the YAML, kept apart from :mod:`components.workloads` (which only
creates resources from it) so the ``localdev`` command, the tests and the program
read the manifests the same way.

Ordering, across files (the provider orders CRDs and Namespaces first *within* a file):

* a file whose objects live in a namespace another file defines waits for that file;
* a file with custom resources waits for the file defining their CRD;
* a file that reads a Secret waits for that Secret, which waits for its namespace;
* :data:`RUNTIME_ORDER` adds the few edges no manifest field expresses.

No secret value is written in ``k8s/``: the manifests name the Secrets of
:data:`SECRETS`, created from secret config values or generated random values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from string import Formatter
from typing import Any

import yaml

from localdev.errors import UsageError

#: Namespaces that exist in every cluster; manifests may use them without defining them.
BUILTIN_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})

#: Ordering no manifest field expresses: manifest stem → stems it must wait for.
RUNTIME_ORDER: Mapping[str, tuple[str, ...]] = {
    # velero's default BackupStorageLocation names the backup store: seaweedfs.yaml's StatefulSet
    # serves it (and makes its bucket at start), and Pulumi waits for the StatefulSet to be ready.
    "velero": ("seaweedfs",),
}


@dataclass(frozen=True)
class GeneratedValue:
    """How a secret config value is generated when it is unset (``None`` or empty)."""

    length: int
    """Number of characters (letters and digits only: safe in URLs and credentials files)."""
    upper: bool = True
    """Whether upper-case letters may appear."""
    min_length: int = 1
    """Shortest value accepted from config."""
    max_length: int = 256
    """Longest value accepted from config."""
    secret: bool = True
    """Whether the value must be stored encrypted (``pulumi config set --secret``); a user name need not be."""


#: Secret config values the workloads read (``WorkloadsArgs.secrets`` keys).
SECRET_CONFIG: Mapping[str, GeneratedValue] = {
    "postgresPassword": GeneratedValue(32),
    "redisPassword": GeneratedValue(32),
    "grafanaAdminPassword": GeneratedValue(24),
    # The backup store's S3 identity (docs/backup-store.md). AWS-style lengths: access key ids
    # of 16-128 characters, secret keys of at least 8 (SeaweedFS itself takes any non-empty pair).
    "backupStoreAccessKey": GeneratedValue(20, min_length=16, max_length=128, secret=False),
    "backupStoreSecretKey": GeneratedValue(40, min_length=8, max_length=128),
}


@dataclass(frozen=True)
class SecretSpec:
    """A Kubernetes Secret the manifests reference; each value is a template over :data:`SECRET_CONFIG` keys."""

    namespace: str
    name: str
    values: Mapping[str, str]
    """Secret key → ``str.format`` template, e.g. ``{"password": "{postgresPassword}"}``."""

    @property
    def config_keys(self) -> list[str]:
        """The secret config values the templates use, sorted."""
        return sorted({f for t in self.values.values() for _, f, _, _ in Formatter().parse(t) if f})


#: The Secrets the component creates, keyed ``namespace/name``.
SECRETS: Mapping[str, SecretSpec] = {
    f"{s.namespace}/{s.name}": s
    for s in (
        SecretSpec("data", "postgres-credentials", {"password": "{postgresPassword}"}),
        SecretSpec("data", "redis-credentials", {"password": "{redisPassword}"}),
        SecretSpec("observability", "grafana-admin", {"password": "{grafanaAdminPassword}"}),
        SecretSpec(
            "velero",
            "backup-store-credentials",
            {"accessKeyId": "{backupStoreAccessKey}", "secretAccessKey": "{backupStoreSecretKey}"},
        ),
        # velero's object-store plugin reads an AWS shared-credentials file.
        SecretSpec(
            "velero",
            "cloud-credentials",
            {"cloud": "[default]\naws_access_key_id={backupStoreAccessKey}\naws_secret_access_key={backupStoreSecretKey}\n"},
        ),
    )
}


#: ConfigMaps the manifests mount that the program renders from the stack's settings
#: (``localdev.render.render_workload_config_maps``) instead of defining them in ``k8s/``, keyed ``namespace/name``.
GENERATED_CONFIG_MAPS = frozenset({"observability/prometheus-config"})


@dataclass(frozen=True)
class ManifestFile:
    """What one file under ``k8s/`` defines and needs, as far as ordering goes."""

    stem: str
    path: Path
    namespaces: frozenset[str]
    """Namespaces the file defines."""
    crds: frozenset[tuple[str, str]]
    """(group, kind) of the CRDs the file defines."""
    used_namespaces: frozenset[str]
    """Namespaces the file's objects live in."""
    used_kinds: frozenset[tuple[str, str]]
    """(group, kind) of every object in the file."""
    secret_refs: frozenset[tuple[str, str, str | None]]
    """(namespace, Secret name, key or None for the whole Secret) the file's pods read."""
    config_map_refs: frozenset[tuple[str, str]] = field(default=frozenset())
    """(namespace, ConfigMap name) the file's pods mount or read."""
    config_maps: frozenset[tuple[str, str]] = field(default=frozenset())
    """(namespace, ConfigMap name) the file defines."""
    depends_on: tuple[str, ...] = field(default=())
    """Stems of the files it waits for, filled in by :func:`plan_manifests`."""


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _secret_refs(node: Any, namespace: str) -> Iterator[tuple[str, str, str | None]]:
    """Every Secret reference below ``node``: secretKeyRef, envFrom secretRef, secret volumes."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "secretKeyRef" and isinstance(value, dict):
                yield namespace, str(value["name"]), str(value["key"])
            elif key == "secretRef" and isinstance(value, dict) and "name" in value:
                yield namespace, str(value["name"]), None
            elif key == "secret" and isinstance(value, dict) and "secretName" in value:
                yield namespace, str(value["secretName"]), None
            else:
                yield from _secret_refs(value, namespace)
    elif isinstance(node, list):
        for item in node:
            yield from _secret_refs(item, namespace)


def _config_map_refs(node: Any, namespace: str) -> Iterator[tuple[str, str]]:
    """Every ConfigMap reference below ``node``: configMap volumes, envFrom configMapRef, configMapKeyRef."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("configMap", "configMapRef", "configMapKeyRef") and isinstance(value, dict) and "name" in value:
                yield namespace, str(value["name"])
            else:
                yield from _config_map_refs(value, namespace)
    elif isinstance(node, list):
        for item in node:
            yield from _config_map_refs(item, namespace)


def _read_manifest(path: Path) -> ManifestFile:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    namespaces: set[str] = set()
    crds: set[tuple[str, str]] = set()
    used_ns: set[str] = set()
    kinds: set[tuple[str, str]] = set()
    refs: set[tuple[str, str, str | None]] = set()
    map_refs: set[tuple[str, str]] = set()
    maps: set[tuple[str, str]] = set()
    for doc in docs:
        kind, group = str(doc["kind"]), _group(str(doc["apiVersion"]))
        kinds.add((group, kind))
        namespace = (doc.get("metadata") or {}).get("namespace")
        if kind == "Namespace":
            namespaces.add(str(doc["metadata"]["name"]))
        elif kind == "CustomResourceDefinition":
            crds.add((str(doc["spec"]["group"]), str(doc["spec"]["names"]["kind"])))
        if namespace:
            used_ns.add(str(namespace))
            refs.update(_secret_refs(doc.get("spec"), str(namespace)))
            map_refs.update(_config_map_refs(doc.get("spec"), str(namespace)))
            if kind == "ConfigMap":
                maps.add((str(namespace), str(doc["metadata"]["name"])))
    return ManifestFile(
        stem=path.stem,
        path=path,
        namespaces=frozenset(namespaces),
        crds=frozenset(crds),
        used_namespaces=frozenset(used_ns),
        used_kinds=frozenset(kinds),
        secret_refs=frozenset(refs),
        config_map_refs=frozenset(map_refs),
        config_maps=frozenset(maps),
    )


def plan_manifests(
    manifests_dir: Path,
    secrets: Mapping[str, SecretSpec] = SECRETS,
    generated_config_maps: frozenset[str] = GENERATED_CONFIG_MAPS,
) -> list[ManifestFile]:
    """Read every ``*.yaml`` under ``manifests_dir``; return them in apply order, each with its dependencies.

    The order is topological, ties broken by file name, so it is the same on every run.
    Raises ``ValueError`` for a namespace, CRD, Secret or ConfigMap that nothing provides, and for a cycle.
    """
    files = {m.stem: m for m in (_read_manifest(p) for p in sorted(manifests_dir.glob("*.yaml")))}
    if not files:
        raise ValueError(f"no manifests (*.yaml) in {manifests_dir}")
    ns_owner = {ns: m.stem for m in files.values() for ns in m.namespaces}
    crd_owner = {crd: m.stem for m in files.values() for crd in m.crds}
    provided = {(s.namespace, s.name): set(s.values) for s in secrets.values()}
    defined_maps = {ref for m in files.values() for ref in m.config_maps}
    generated_maps = {tuple(key.split("/", 1)) for key in generated_config_maps}
    clashing = sorted(f"{ns}/{name}" for ns, name in defined_maps & generated_maps)
    if clashing:
        raise ValueError(f"ConfigMap(s) {clashing} are rendered by the program; remove them from {manifests_dir}")
    planned: dict[str, ManifestFile] = {}
    for stem, m in files.items():
        deps: set[str] = set(RUNTIME_ORDER.get(stem, ()))
        for ns in m.used_namespaces - BUILTIN_NAMESPACES:
            if ns not in ns_owner:
                raise ValueError(f"{m.path.name}: namespace {ns!r} is defined by no file in {manifests_dir}")
            deps.add(ns_owner[ns])
        deps.update(crd_owner[k] for k in m.used_kinds if k in crd_owner)
        for ns, name, key in sorted(m.secret_refs, key=str):
            if (ns, name) not in provided:
                raise ValueError(f"{m.path.name}: Secret {ns}/{name} is not one the Workloads component creates")
            if key is not None and key not in provided[(ns, name)]:
                raise ValueError(f"{m.path.name}: Secret {ns}/{name} has no key {key!r}")
        missing_maps = sorted(f"{ns}/{name}" for ns, name in m.config_map_refs - defined_maps - generated_maps)
        if missing_maps:
            raise ValueError(
                f"{m.path.name}: ConfigMap {missing_maps[0]} is defined by no file in {manifests_dir} and not rendered"
            )
        deps.discard(stem)
        unknown = deps - set(files)
        if unknown:
            raise ValueError(f"{m.path.name}: waits for missing manifests {sorted(unknown)}")
        for ns, secret, _ in m.secret_refs:
            if ns_owner.get(ns) == stem:
                raise ValueError(
                    f"{m.path.name}: reads Secret {ns}/{secret} of a namespace it defines itself; define the namespace elsewhere"
                )
        planned[stem] = replace(m, depends_on=tuple(sorted(deps)))

    ordered: list[ManifestFile] = []
    done: set[str] = set()
    while len(ordered) < len(planned):
        ready = [s for s in sorted(planned) if s not in done and set(planned[s].depends_on) <= done]
        if not ready:
            raise ValueError(f"manifest dependency cycle among {sorted(set(planned) - done)}")
        ordered.append(planned[ready[0]])
        done.add(ready[0])
    return ordered


def namespace_files(plan: Sequence[ManifestFile]) -> dict[str, str]:
    """Namespace → stem of the file defining it."""
    return {ns: m.stem for m in plan for ns in m.namespaces}


@dataclass
class ManifestImage:
    """An image string found in a Kubernetes manifest, and where."""

    image: str
    sources: list[str] = field(default_factory=list)


#: Keys of a pod spec whose entries are containers with an ``image``.
CONTAINER_KEYS = ("initContainers", "containers", "ephemeralContainers")


def _images_in(node: Any) -> Iterator[str]:
    """Every ``image`` of every container list in ``node``, at any depth.

    A pod spec sits at a different path in each workload kind (Pod: ``spec``,
    Deployment/StatefulSet/DaemonSet/ReplicaSet/Job: ``spec.template.spec``,
    CronJob: ``spec.jobTemplate.spec.template.spec``, ``kind: List``: under
    ``items``, and custom resources elsewhere), so the walk looks for container
    lists wherever they are rather than hard-coding the kinds.
    """
    if isinstance(node, dict):
        for key in CONTAINER_KEYS:  # init containers first, as the kubelet pulls them
            for container in node.get(key) or [] if isinstance(node.get(key), list) else []:
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    yield container["image"]
        for key, value in node.items():
            if key not in CONTAINER_KEYS:
                yield from _images_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _images_in(item)


def manifest_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml"))


def images_from_manifests(directory: Path) -> list[ManifestImage]:
    """Images referenced by the ``*.yaml``/``*.yml`` files under ``directory``, in first-seen order."""
    if not directory.is_dir():
        raise UsageError(f"manifests directory {directory} does not exist", fix="pass --manifests DIR")
    found: dict[str, ManifestImage] = {}
    for path in manifest_files(directory):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise UsageError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from err
        flat: list[Any] = []
        for doc in docs:
            is_list = isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list)
            flat.extend(doc["items"] if is_list else [doc])
        for index, doc in enumerate(flat):
            kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
            name = (doc.get("metadata") or {}).get("name", f"#{index}") if isinstance(doc, dict) else f"#{index}"
            for image in _images_in(doc):
                entry = found.setdefault(image, ManifestImage(image))
                source = f"{path.name}:{kind}/{name}"
                if source not in entry.sources:
                    entry.sources.append(source)
    return list(found.values())
