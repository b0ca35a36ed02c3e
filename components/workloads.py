"""Platform workloads: the manifests under ``k8s/``, applied in dependency order, and the Secrets they read.

One ``kubernetes:yaml/v2:ConfigFile`` per manifest file. The provider orders CRDs
and Namespaces first *within* a file; across files this component adds the
edges, read from the manifests themselves (:func:`plan_manifests`):

* a file whose objects live in a namespace another file defines waits for that file;
* a file with custom resources waits for the file defining their CRD;
* a file that reads a Secret waits for that Secret, which waits for its namespace;
* :data:`RUNTIME_ORDER` adds the few edges no manifest field expresses.

Every ConfigFile also waits for ``WorkloadsArgs.depends_on`` (the caches wired
into the nodes), so no image is pulled before the caches are in the path.

No secret value is written in ``k8s/``: the manifests name the Secrets of
:data:`SECRETS`, which this component creates from secret config values, or from
generated random values when a value is unset or empty.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from string import Formatter
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from components.render import UI_PORTS

#: Namespaces that exist in every cluster; manifests may use them without defining them.
BUILTIN_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})

#: Ordering no manifest field expresses: manifest stem → stems it must wait for.
RUNTIME_ORDER: Mapping[str, tuple[str, ...]] = {
    # velero's default BackupStorageLocation needs its bucket: minio.yaml's Job creates it,
    # and Pulumi waits for that Job to complete.
    "velero": ("minio",),
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


#: Secret config values the workloads read (``WorkloadsArgs.secrets`` keys).
SECRET_CONFIG: Mapping[str, GeneratedValue] = {
    "postgresPassword": GeneratedValue(32),
    "redisPassword": GeneratedValue(32),
    "grafanaAdminPassword": GeneratedValue(24),
    # MinIO accepts access keys of 3-20 and secret keys of 8-40 characters.
    "minioRootUser": GeneratedValue(16, upper=False, min_length=3, max_length=20),
    "minioRootPassword": GeneratedValue(32, min_length=8, max_length=40),
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
        SecretSpec("velero", "minio-credentials", {"rootUser": "{minioRootUser}", "rootPassword": "{minioRootPassword}"}),
        # velero's object-store plugin reads an AWS shared-credentials file.
        SecretSpec(
            "velero",
            "cloud-credentials",
            {"cloud": "[default]\naws_access_key_id={minioRootUser}\naws_secret_access_key={minioRootPassword}\n"},
        ),
    )
}


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


def _read_manifest(path: Path) -> ManifestFile:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    namespaces: set[str] = set()
    crds: set[tuple[str, str]] = set()
    used_ns: set[str] = set()
    kinds: set[tuple[str, str]] = set()
    refs: set[tuple[str, str, str | None]] = set()
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
    return ManifestFile(
        stem=path.stem,
        path=path,
        namespaces=frozenset(namespaces),
        crds=frozenset(crds),
        used_namespaces=frozenset(used_ns),
        used_kinds=frozenset(kinds),
        secret_refs=frozenset(refs),
    )


def plan_manifests(manifests_dir: Path, secrets: Mapping[str, SecretSpec] = SECRETS) -> list[ManifestFile]:
    """Read every ``*.yaml`` under ``manifests_dir``; return them in apply order, each with its dependencies.

    The order is topological, ties broken by file name, so it is the same on every run.
    Raises ``ValueError`` for a namespace, CRD or Secret that nothing provides, and for a cycle.
    """
    files = {m.stem: m for m in (_read_manifest(p) for p in sorted(manifests_dir.glob("*.yaml")))}
    if not files:
        raise ValueError(f"no manifests (*.yaml) in {manifests_dir}")
    ns_owner = {ns: m.stem for m in files.values() for ns in m.namespaces}
    crd_owner = {crd: m.stem for m in files.values() for crd in m.crds}
    provided = {(s.namespace, s.name): set(s.values) for s in secrets.values()}
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
class WorkloadsArgs:
    """Inputs of the platform workloads."""

    provider: k8s.Provider
    """Kubernetes provider of the kind cluster."""
    manifests_dir: Path
    """The ``k8s/`` directory: one multi-document manifest file per service."""
    depends_on: Sequence[pulumi.Resource]
    """What must be in place before any image is pulled (node mirror wiring, network attachment)."""
    secrets: Mapping[str, pulumi.Input[str] | None]
    """Secret config values by :data:`SECRET_CONFIG` key; a missing, ``None`` or empty value is generated."""


class Workloads(pulumi.ComponentResource):
    """postgres, redis, the observability stack and velero, applied from ``k8s/``."""

    config_files: dict[str, k8s.yaml.v2.ConfigFile]
    """One ConfigFile per manifest file, keyed by file stem."""
    secrets: dict[str, k8s.core.v1.Secret]
    """The Secrets of :data:`SECRETS`, keyed ``namespace/name``."""
    urls: pulumi.Output[dict[str, str]]
    """Where the UIs answer on the laptop."""

    def __init__(self, name: str, args: WorkloadsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        unknown = sorted(set(args.secrets) - set(SECRET_CONFIG))
        if unknown:
            raise ValueError(f"unknown workload secret(s) {unknown}; known: {sorted(SECRET_CONFIG)}")
        for key, value in args.secrets.items():
            if isinstance(value, str) and value:
                _check_length(key, SECRET_CONFIG[key], value)
        plan = plan_manifests(args.manifests_dir)
        super().__init__("localdev:index:Workloads", name, None, opts)
        values = {key: self._secret_value(name, key, spec, args.secrets.get(key)) for key, spec in SECRET_CONFIG.items()}

        self.config_files = {}
        self.secrets = {}
        ns_files = namespace_files(plan)
        for manifest in plan:
            # Secrets this file reads, created once their namespace's file has been applied.
            needed = sorted({f"{ns}/{secret}" for ns, secret, _ in manifest.secret_refs})
            for key in needed:
                if key not in self.secrets:
                    self.secrets[key] = self._secret(name, SECRETS[key], values, args, ns_files)
            self.config_files[manifest.stem] = k8s.yaml.v2.ConfigFile(
                f"{name}-{manifest.stem}",
                file=_file_input(manifest.path),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=args.provider,
                    depends_on=[
                        *args.depends_on,
                        *(self.config_files[stem] for stem in manifest.depends_on),
                        *(self.secrets[key] for key in needed),
                    ],
                ),
            )
        self.urls = pulumi.Output.from_input({ui: f"http://127.0.0.1:{host}" for ui, (host, _) in UI_PORTS.items()})
        self.register_outputs({"urls": self.urls})

    def _secret_value(
        self, name: str, key: str, spec: GeneratedValue, supplied: pulumi.Input[str] | None
    ) -> pulumi.Output[str]:
        """The supplied value, or a generated one when it is unset or empty; always secret.

        The random value always exists, so setting or unsetting the config value
        swaps values without adding or removing resources.
        """
        generated = random.RandomPassword(
            f"{name}-{_kebab(key)}",
            length=spec.length,
            special=False,
            upper=spec.upper,
            opts=pulumi.ResourceOptions(parent=self),
        )

        def choose(pair: list[Any]) -> str:
            given, fallback = pair
            if given:
                _check_length(key, spec, str(given))
                return str(given)
            return str(fallback)

        return pulumi.Output.secret(pulumi.Output.all(supplied if supplied is not None else "", generated.result).apply(choose))

    def _secret(
        self,
        name: str,
        spec: SecretSpec,
        values: Mapping[str, pulumi.Output[str]],
        args: WorkloadsArgs,
        ns_files: Mapping[str, str],
    ) -> k8s.core.v1.Secret:
        def render(template: str) -> pulumi.Output[str]:
            needed = [f for _, f, _, _ in Formatter().parse(template) if f]
            filled = pulumi.Output.all(*(values[k] for k in needed)).apply(
                lambda got: template.format(**dict(zip(needed, got, strict=True)))
            )
            return pulumi.Output.secret(filled)

        owner = ns_files.get(spec.namespace)
        return k8s.core.v1.Secret(
            f"{name}-{spec.namespace}-{spec.name}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=spec.name,
                namespace=spec.namespace,
                labels={"app.kubernetes.io/part-of": "localdev", "app.kubernetes.io/managed-by": "pulumi"},
            ),
            type="Opaque",
            string_data={key: render(template) for key, template in sorted(spec.values.items())},
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=[*args.depends_on, *([self.config_files[owner]] if owner else [])],
            ),
        )


def _check_length(key: str, spec: GeneratedValue, value: str) -> None:
    if not spec.min_length <= len(value) <= spec.max_length:
        raise ValueError(
            f"config '{key}' must be {spec.min_length}-{spec.max_length} characters long (got {len(value)}). "
            f"Fix: pulumi config set --secret {key} VALUE, or remove it to generate one"
        )


def _kebab(key: str) -> str:
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in key)


def _file_input(path: Path) -> str:
    """The path as the provider should read it: relative to the program's directory when inside it.

    A relative path keeps the ConfigFile's inputs the same on every checkout.
    """
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path(os.getcwd()).resolve()).as_posix()
    except ValueError:
        return str(resolved)
