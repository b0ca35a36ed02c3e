"""Platform workloads: one ConfigFile per manifest under ``k8s/``, and the Secrets they read.

Every edge comes from :func:`localdev.manifests.plan_manifests`; this module only
creates resources. Every ConfigFile also waits for ``WorkloadsArgs.depends_on``
(the caches wired into the nodes), so no image is pulled before the caches are in the path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Formatter
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from localdev.manifests import (
    GENERATED_CONFIG_MAPS,
    SECRET_CONFIG,
    SECRETS,
    GeneratedValue,
    SecretSpec,
    namespace_files,
    plan_manifests,
)


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
    ui_ports: Mapping[str, int] = field(default_factory=dict)
    """UI name → its port on 127.0.0.1 (``Settings.ui_ports``), for the ``urls`` output."""
    config_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """ConfigMaps rendered from the stack's settings (``localdev.render.render_workload_config_maps``),
    ``namespace/name`` → data; must cover :data:`GENERATED_CONFIG_MAPS` the manifests mount."""


class Workloads(pulumi.ComponentResource):
    """postgres, redis, the observability stack and velero, applied from ``k8s/``."""

    config_files: dict[str, k8s.yaml.v2.ConfigFile]
    """One ConfigFile per manifest file, keyed by file stem."""
    secrets: dict[str, k8s.core.v1.Secret]
    """The Secrets of :data:`SECRETS`, keyed ``namespace/name``."""
    config_maps: dict[str, k8s.core.v1.ConfigMap]
    """The rendered ConfigMaps, keyed ``namespace/name``."""
    urls: pulumi.Output[dict[str, str]]
    """Where the UIs answer on the laptop."""

    def __init__(self, name: str, args: WorkloadsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        unknown = sorted(set(args.secrets) - set(SECRET_CONFIG))
        if unknown:
            raise ValueError(f"unknown workload secret(s) {unknown}; known: {sorted(SECRET_CONFIG)}")
        plan = plan_manifests(args.manifests_dir)
        unknown_maps = sorted(set(args.config_maps) - GENERATED_CONFIG_MAPS)
        if unknown_maps:
            raise ValueError(f"unknown rendered ConfigMap(s) {unknown_maps}; known: {sorted(GENERATED_CONFIG_MAPS)}")
        mounted = {f"{ns}/{n}" for m in plan for ns, n in m.config_map_refs} & GENERATED_CONFIG_MAPS
        missing_maps = sorted(mounted - set(args.config_maps))
        if missing_maps:
            raise ValueError(f"the manifests mount {missing_maps}, which WorkloadsArgs.config_maps does not render")
        super().__init__("localdev:index:Workloads", name, None, opts)
        values = {key: self._secret_value(name, key, spec, args.secrets.get(key)) for key, spec in SECRET_CONFIG.items()}

        self.config_files = {}
        self.secrets = {}
        self.config_maps = {}
        ns_files = namespace_files(plan)
        for manifest in plan:
            # Secrets this file reads, created once their namespace's file has been applied.
            needed = sorted({f"{ns}/{secret}" for ns, secret, _ in manifest.secret_refs})
            for key in needed:
                if key not in self.secrets:
                    self.secrets[key] = self._secret(name, SECRETS[key], values, args, ns_files)
            # Rendered ConfigMaps it mounts, likewise.
            maps = sorted({f"{ns}/{n}" for ns, n in manifest.config_map_refs} & set(args.config_maps))
            for key in maps:
                if key not in self.config_maps:
                    self.config_maps[key] = self._config_map(name, key, args, ns_files)
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
                        *(self.config_maps[key] for key in maps),
                    ],
                ),
            )
        self.urls = pulumi.Output.from_input({ui: f"http://127.0.0.1:{port}" for ui, port in args.ui_ports.items()})
        self.register_outputs({"urls": self.urls})

    def _secret_value(self, name: str, key: str, spec: GeneratedValue, supplied: pulumi.Input[str] | None) -> pulumi.Output[str]:
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
            if given:  # its length was checked with every other setting (localdev.settings)
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

    def _config_map(self, name: str, key: str, args: WorkloadsArgs, ns_files: Mapping[str, str]) -> k8s.core.v1.ConfigMap:
        namespace, map_name = key.split("/", 1)
        owner = ns_files.get(namespace)
        return k8s.core.v1.ConfigMap(
            f"{name}-{namespace}-{map_name}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=map_name,
                namespace=namespace,
                labels={"app.kubernetes.io/part-of": "localdev", "app.kubernetes.io/managed-by": "pulumi"},
            ),
            data=dict(sorted(args.config_maps[key].items())),
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=[*args.depends_on, *([self.config_files[owner]] if owner else [])],
            ),
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
