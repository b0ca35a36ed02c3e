"""What a registry holds, read from its storage instead of its HTTP API.

Why not the API: a pull-through cache answers ``/v2/<repo>/tags/list`` with
its *upstream's* tag list whenever the upstream is reachable (verified with
docker-registry 2.8.2; 3.x does the same), and a GET or HEAD of a manifest or
blob it lacks makes it fetch that from upstream. Reading storage is exact, has
no side effects, sends nothing upstream, leaves the hit/miss counters alone,
and works while the registry is stopped.

Layout (distribution's filesystem driver, rooted at ``rootdirectory``)::

    docker/registry/v2/repositories/<repo>/_manifests/tags/<tag>/current/link     → manifest digest
    docker/registry/v2/repositories/<repo>/_manifests/revisions/sha256/<hex>/link → a manifest it holds
    docker/registry/v2/repositories/<repo>/_layers/sha256/<hex>/link              → a blob it holds
    docker/registry/v2/blobs/sha256/<hex[:2]>/<hex>/data                          → the content

Two readers: :class:`LocalStorage` (a directory on this machine) and
:class:`ContainerStorage` (a container's volume, through the Docker API's
archive endpoint, which also works on a stopped container).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from localdev.errors import OpsError, UsageError

V2 = "docker/registry/v2"
#: Where the registry:3 (and registry:2) image keeps its data.
CONTAINER_ROOT = "/var/lib/registry"

_TAG_LINK = re.compile(r"^repositories/(?P<repo>.+?)/_manifests/tags/(?P<tag>[^/]+)/current/link$")
_REVISION_LINK = re.compile(r"^repositories/(?P<repo>.+?)/_manifests/revisions/sha256/(?P<hex>[0-9a-f]{64})/link$")
_LAYER_LINK = re.compile(r"^repositories/(?P<repo>.+?)/_layers/sha256/(?P<hex>[0-9a-f]{64})/link$")


def blob_path(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart[:2]}/{hexpart}/data"


def layer_link_path(repository: str, digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"repositories/{repository}/_layers/{algo}/{hexpart}/link"


class StorageReader(Protocol):
    description: str

    def links(self, under: str) -> dict[str, str]:
        """Every ``link`` file under ``under`` (relative to the v2 root): path → content. Skips ``_uploads``."""
        ...

    def read(self, rel: str) -> bytes | None:
        """A file's bytes, or None when it does not exist."""
        ...

    def size(self, rel: str) -> int | None: ...


class LocalStorage:
    """A registry's ``rootdirectory`` on this machine."""

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise UsageError(f"storage directory {root} does not exist", fix="pass the registry's rootdirectory to --storage")
        self.root = root
        self.v2 = root / V2
        self.description = f"storage {root}"

    def links(self, under: str) -> dict[str, str]:
        base = self.v2 / under
        out: dict[str, str] = {}
        if not base.is_dir():
            return out
        for path in base.rglob("link"):
            rel = path.relative_to(self.v2).as_posix()
            if "/_uploads/" in rel:
                continue
            try:
                out[rel] = path.read_text().strip()
            except OSError:
                continue  # removed while we walked
        return out

    def read(self, rel: str) -> bytes | None:
        try:
            return (self.v2 / rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def size(self, rel: str) -> int | None:
        try:
            return (self.v2 / rel).stat().st_size
        except OSError:
            return None


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks (the Docker archive stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class ContainerStorage:
    """A registry container's storage, read with ``GET /containers/{id}/archive`` (``docker cp``)."""

    def __init__(self, container: Any, root: str = CONTAINER_ROOT) -> None:
        self.container = container
        self.root = root.rstrip("/")
        self.description = f"volume of container {getattr(container, 'name', container)}"

    def _archive(self, rel: str) -> tuple[Iterable[bytes], dict[str, Any] | None] | None:
        import docker  # type: ignore[import-untyped]

        path = f"{self.root}/{V2}/{rel}"
        try:
            chunks, stat = self.container.get_archive(path)
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as err:
            from localdev.ops.dockerapi import short_docker_error

            raise OpsError(f"cannot read {path} from container {self.container.name}: {short_docker_error(err)}") from err
        return chunks, stat

    def links(self, under: str) -> dict[str, str]:
        got = self._archive(under)
        out: dict[str, str] = {}
        if got is None:
            return out
        prefix = under.rsplit("/", 1)[0] + "/" if "/" in under else ""
        with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(got[0]), 1 << 16), mode="r|") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if not member.isfile() or not name.endswith("/link") or "/_uploads/" in f"/{name}":
                    continue
                handle = tar.extractfile(member)
                if handle is not None:
                    out[prefix + name] = handle.read().decode(errors="replace").strip()
        return out

    def read(self, rel: str) -> bytes | None:
        got = self._archive(rel)
        if got is None:
            return None
        with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(got[0]), 1 << 16), mode="r|") as tar:
            for member in tar:
                if member.isfile():
                    handle = tar.extractfile(member)
                    return handle.read() if handle is not None else None
        return None

    def size(self, rel: str) -> int | None:
        got = self._archive(rel)
        if got is None or not got[1]:
            return None
        close = getattr(got[0], "close", None)
        if close is not None:
            close()
        size = got[1].get("size")
        return int(size) if isinstance(size, int) else None


@dataclass
class RepoContent:
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    """Tag → manifest digest, for tags whose manifest the registry holds."""
    manifests: dict[str, int] = field(default_factory=dict)
    """Manifest (and index) digests held → size."""
    blobs: dict[str, int | None] = field(default_factory=dict)
    """Blob digests held (configs, layers) → size, None when unknown."""


@dataclass
class Inventory:
    source: str
    repositories: list[RepoContent]
    notes: list[str] = field(default_factory=list)

    def unique_blobs(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for repo in self.repositories:
            for digest, size in repo.blobs.items():
                if out.get(digest) is None:
                    out[digest] = size
        return out

    def unique_manifests(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for repo in self.repositories:
            out.update(repo.manifests)
        return out

    @property
    def tag_count(self) -> int:
        return sum(len(r.tags) for r in self.repositories)

    @property
    def content_bytes(self) -> int:
        """Sum of the sizes of every distinct blob and manifest held (content size, not disk usage)."""
        blobs = self.unique_blobs()
        return sum(s for s in blobs.values() if s is not None) + sum(self.unique_manifests().values())


def referenced_sizes(raw: bytes) -> dict[str, int]:
    """Digest → size of every descriptor a manifest (or index) names."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    out: dict[str, int] = {}
    if not isinstance(doc, dict):
        return out
    entries = [doc.get("config"), *(doc.get("layers") or []), *(doc.get("manifests") or [])]
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("digest"), str) and isinstance(entry.get("size"), int):
            out[entry["digest"]] = entry["size"]
    return out


def read_inventory(reader: StorageReader) -> Inventory:
    """Repositories, tags, manifests and blobs the storage holds, with sizes."""
    links = reader.links("repositories")
    repos: dict[str, RepoContent] = {}
    tag_links: list[tuple[str, str, str]] = []
    for rel, target in sorted(links.items()):
        if m := _REVISION_LINK.match(rel):
            repos.setdefault(m["repo"], RepoContent(m["repo"])).manifests[f"sha256:{m['hex']}"] = 0
        elif m := _LAYER_LINK.match(rel):
            repos.setdefault(m["repo"], RepoContent(m["repo"])).blobs[f"sha256:{m['hex']}"] = None
        elif m := _TAG_LINK.match(rel):
            tag_links.append((m["repo"], m["tag"], target))
    sizes: dict[str, int] = {}
    raw_cache: dict[str, bytes | None] = {}
    for repo in repos.values():
        for digest in list(repo.manifests):
            if digest not in raw_cache:
                raw_cache[digest] = reader.read(blob_path(digest))
            raw = raw_cache[digest]
            if raw is None:
                del repo.manifests[digest]  # a link without content: not really held
                continue
            repo.manifests[digest] = len(raw)
            sizes.update(referenced_sizes(raw))
    unknown = 0
    for repo in repos.values():
        for digest in repo.blobs:
            size = sizes.get(digest)
            if size is None:
                size = reader.size(blob_path(digest))
            if size is None:
                unknown += 1
            repo.blobs[digest] = size
    for repo_name, tag, digest in tag_links:
        tagged = repos.get(repo_name)
        if tagged is not None and digest in tagged.manifests:
            tagged.tags[tag] = digest
    inventory = Inventory(source=reader.description, repositories=sorted(repos.values(), key=lambda r: r.name))
    if unknown:
        inventory.notes.append(
            f"{unknown} blob(s) of unknown size (held, but named by no manifest held) are left out of the byte count"
        )
    return inventory


def held_blobs(reader: StorageReader, repository: str) -> set[str]:
    """Digests of the blobs ``repository`` holds (its ``_layers`` links)."""
    out = set()
    for rel in reader.links(f"repositories/{repository}/_layers"):
        if m := _LAYER_LINK.match(rel):
            out.add(f"sha256:{m['hex']}")
    return out


def holds_blob(reader: StorageReader, repository: str, digest: str) -> bool:
    return reader.read(layer_link_path(repository, digest)) is not None
