"""``stats``: what each cache holds, and what it saved, from its storage and its own counters.

Content (repositories, tags, bytes) is read from the registry's storage when
it can be (the stack's containers through the Docker API, or ``--storage DIR``),
because a pull-through cache's API cannot say which tags it holds: with its
upstream online, ``tags/list`` answers with the upstream's tags, and reading a
manifest it lacks makes it fetch it. Without storage access the HTTP API is
used: ``_catalog`` and ``tags/list`` (paginated) and the manifests by tag;
this is refused for a registry that rejects uploads with 405 (a pull-through
cache or a read-only registry), which then shows its repositories only.

Bytes are the *content size*: the sum of the sizes of every distinct blob
(config, layer) and manifest held, as recorded in the manifests. It is not
filesystem usage (no block rounding, no upload leftovers, no link files).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from localdev.errors import OpsError
from localdev.ops.metrics import ProxyMetrics, fetch_metrics
from localdev.ops.output import Style, human_bytes, percent
from localdev.ops.registry_api import RegistryClient, RegistryError
from localdev.ops.storage import Inventory, RepoContent, StorageReader, read_inventory
from localdev.settings import Settings


@dataclass
class Target:
    """One registry to report on."""

    name: str
    role: str
    """``cache``, ``push`` or ``registry`` (given with --registry)."""
    url: str
    metrics_url: str | None = None
    storage: StorageReader | None = None
    storage_error: str | None = None


@dataclass
class Report:
    target: Target
    inventory: Inventory | None = None
    content_error: str | None = None
    metrics: ProxyMetrics | None = None
    metrics_error: str | None = None
    notes: list[str] = field(default_factory=list)
    limited: bool = False
    """Only repositories are known (a pull-through cache read through its API)."""

    @property
    def ok(self) -> bool:
        return self.content_error is None and (self.target.metrics_url is None or self.metrics_error is None)

    def as_dict(self) -> dict[str, Any]:
        inv = self.inventory
        content: dict[str, Any] | None = None
        if inv is not None and self.limited:
            content = {
                "source": inv.source,
                "complete": False,
                "repository_count": len(inv.repositories),
                "tag_count": None,
                "manifest_count": None,
                "blob_count": None,
                "bytes": None,
                "repositories": [
                    {"name": r.name, "tags": None, "manifests": None, "blobs": None, "bytes": None} for r in inv.repositories
                ],
            }
        elif inv is not None:
            blobs = inv.unique_blobs()
            manifests = inv.unique_manifests()
            content = {
                "source": inv.source,
                "complete": not self.limited,
                "repository_count": len(inv.repositories),
                "tag_count": inv.tag_count,
                "manifest_count": len(manifests),
                "blob_count": len(blobs),
                "bytes": inv.content_bytes,
                "repositories": [
                    {
                        "name": r.name,
                        "tags": sorted(r.tags),
                        "manifests": len(r.manifests),
                        "blobs": len(r.blobs),
                        "bytes": sum(s for s in r.blobs.values() if s is not None) + sum(r.manifests.values()),
                    }
                    for r in inv.repositories
                ],
            }
        return {
            "name": self.target.name,
            "role": self.target.role,
            "url": self.target.url,
            "content": content,
            "content_error": self.content_error,
            "metrics": self.metrics.as_dict() if self.metrics else None,
            "metrics_error": self.metrics_error,
            "notes": list(self.notes) + (list(inv.notes) if inv else []),
        }


def inventory_via_api(client: RegistryClient) -> Inventory:
    """Repositories, tags and sizes through the HTTP API (plain registries only; see the module doc)."""
    repos = client.catalog()
    inventory = Inventory(source=f"HTTP API of {client.base}", repositories=[])
    if not repos:
        return inventory
    if client.upload_probe(repos[0]) is False:
        inventory.repositories = [RepoContent(name) for name in repos]
        raise _ProxyApiLimit(inventory)
    for name in repos:
        repo = RepoContent(name)
        for tag in client.tags(name):
            manifest = client.manifest(name, tag)
            repo.tags[tag] = manifest.digest
            pending = [manifest]
            while pending:
                current = pending.pop()
                if current.digest in repo.manifests:
                    continue
                repo.manifests[current.digest] = len(current.raw)
                if current.is_index:
                    pending.extend(client.manifest(name, child.digest) for child in current.children())
                else:
                    for blob in current.blobs():
                        repo.blobs[blob.digest] = blob.size
        inventory.repositories.append(repo)
    return inventory


class _ProxyApiLimit(Exception):
    def __init__(self, inventory: Inventory) -> None:
        super().__init__("pull-through cache")
        self.inventory = inventory


PROXY_API_NOTE = (
    "this registry refuses uploads (a pull-through cache or read-only): its tags/list answers with the upstream's "
    "tags and reading manifests would fetch them, so only repositories are shown; pass --storage DIR "
    "(its rootdirectory) for tags and bytes"
)


def collect(target: Target, *, timeout: float = 30.0) -> Report:
    report = Report(target)
    if target.storage is not None:
        try:
            report.inventory = read_inventory(target.storage)
        except OpsError as err:
            report.content_error = err.line()
    else:
        if target.storage_error:
            report.notes.append(target.storage_error)
        try:
            with RegistryClient(target.url, timeout=timeout) as client:
                report.inventory = inventory_via_api(client)
        except _ProxyApiLimit as limit:
            report.inventory = limit.inventory
            report.limited = True
            report.notes.append(PROXY_API_NOTE)
        except OpsError as err:
            report.content_error = err.line()
    if target.metrics_url:
        try:
            report.metrics = fetch_metrics(target.metrics_url, timeout=min(timeout, 10.0))
        except RegistryError as err:
            report.metrics_error = err.line()
    elif target.role == "registry":
        report.notes.append("metrics unavailable: pass --metrics-url URL (the registry's debug server) for hits and misses")
    return report


def stack_targets(settings: Settings, docker_client: Callable[[], Any] | None) -> tuple[list[Target], list[str]]:
    """The stack's caches (metrics at 127.0.0.1:<metrics_port>) and its push registry, and notes for all of them."""
    from localdev.ops.storage import ContainerStorage

    client = None
    docker_error = None
    if docker_client is not None:
        try:
            client = docker_client()
        except OpsError as err:
            docker_error = f"{err.line()}; content read through the HTTP API instead"
    notes = [docker_error] if docker_error else []
    specs: list[tuple[str, str, str, str | None, str]] = [
        (m.host, "cache", f"http://127.0.0.1:{m.port}", f"http://127.0.0.1:{m.metrics_port}", settings.cache_name(m))
        for m in settings.mirrors
    ]
    specs.append((settings.push_host, "push", f"http://127.0.0.1:{settings.push_port}", None, settings.push_name))
    targets = []
    for name, role, url, metrics_url, container_name in specs:
        target = Target(name, role, url, metrics_url)
        if client is not None:
            import docker  # type: ignore[import-untyped]

            try:
                target.storage = ContainerStorage(client.containers.get(container_name))
            except docker.errors.NotFound:
                target.storage_error = f"container {container_name} does not exist (fix: pulumi up)"
            except docker.errors.DockerException as err:
                target.storage_error = f"cannot inspect {container_name}: {err}"
        targets.append(target)
    return targets, notes


def render_json(reports: list[Report], notes: list[str] | None = None) -> str:
    return json.dumps(
        {"notes": list(notes or []), "registries": [r.as_dict() for r in reports]}, indent=2, sort_keys=False, ensure_ascii=False
    )


def render_table(reports: list[Report], style: Style, *, verbose: bool = False, notes: list[str] | None = None) -> str:
    header = ["REGISTRY", "REPOS", "TAGS", "CONTENT", "BLOB HITS", "MANIFEST HITS", "FROM UPSTREAM", "SAVED", "HUB PULLS SAVED"]
    rows: list[list[str]] = []
    footnotes: list[str] = []
    lines: list[str] = []

    def mark(note: str) -> str:
        if note not in footnotes:
            footnotes.append(note)
        return "¹²³⁴⁵⁶⁷⁸⁹"[footnotes.index(note) % 9]

    for report in reports:
        inv, met = report.inventory, report.metrics
        label = f"{report.target.name} ({report.target.role})" if report.target.role != "cache" else report.target.name
        if inv is None:
            content = ["?", "?", "?"]
        elif report.limited:
            content = [str(len(inv.repositories)), "?", "?"]
        else:
            content = [str(len(inv.repositories)), str(inv.tag_count), human_bytes(inv.content_bytes)]
        row = [label, *content]
        if met is None:
            row += ["-", "-", "-", "-", "-"]
        else:
            blob_hits = "n/a" if met.blob.hits is None else f"{met.blob.hits}/{met.blob.requests} {percent(met.blob.hit_ratio)}"
            man_hits = (
                "n/a"
                if met.manifest.hits is None
                else f"{met.manifest.hits}/{met.manifest.requests} {percent(met.manifest.hit_ratio)}"
            )
            pulled = met.blob.pulled_bytes
            from_upstream = human_bytes(None if pulled is None else pulled + (met.manifest.pulled_bytes or 0))
            saved = human_bytes(met.bytes_saved)
            pulls = "n/a" if met.pulls_saved is None else str(met.pulls_saved)
            for note in met.notes:
                label_mark = mark(note)
                blob_hits += label_mark if "blob" in note else ""
                man_hits += label_mark if "manifest" in note else ""
            row += [blob_hits, man_hits, from_upstream, saved, pulls]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines.append("  ".join(style.bold(h.ljust(w)) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for report in reports:
        problems = [p for p in (report.content_error, report.metrics_error) if p]
        for problem in problems:
            lines.append(f"{style.bad} {report.target.name}: {problem}")
        for note in report.notes + (report.inventory.notes if report.inventory else []):
            lines.append(f"{style.warn} {report.target.name}: {note}")
        if verbose and report.inventory is not None:
            for repo in report.inventory.repositories:
                size = sum(s for s in repo.blobs.values() if s is not None) + sum(repo.manifests.values())
                tags = ", ".join(sorted(repo.tags)) or "-"
                lines.append(f"    {report.target.name}/{repo.name}  tags: {tags}  {human_bytes(size)}")
    for note in notes or []:
        lines.append(f"{style.warn} {note}")
    for i, note in enumerate(footnotes):
        lines.append(style.dim(f"{'¹²³⁴⁵⁶⁷⁸⁹'[i % 9]} {note}"))
    lines.append(
        style.dim(
            "CONTENT = sum of distinct blob and manifest sizes (not disk usage). SAVED = blob bytes served − blob bytes "
            "pulled from upstream. HUB PULLS SAVED = manifest requests answered without an upstream GET."
        )
    )
    return "\n".join(lines)


def write_report(reports: list[Report], out: TextIO, *, as_json: bool, verbose: bool, notes: list[str] | None = None) -> None:
    if as_json:
        out.write(render_json(reports, notes) + "\n")
    else:
        out.write(render_table(reports, Style(out), verbose=verbose, notes=notes) + "\n")
