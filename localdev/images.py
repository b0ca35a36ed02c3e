"""Image references and the images a directory of Kubernetes manifests runs.

References follow the distribution reference grammar with Docker's defaults:
a first path component that contains ``.`` or ``:`` or is ``localhost`` is a
registry host, anything else is on Docker Hub; Docker Hub names without a slash
live under ``library/``; no tag means ``latest``. So ``redis:7`` is
``docker.io/library/redis:7`` and ``ghcr.io/org/app@sha256:…`` keeps its host.
"""

from __future__ import annotations

import hashlib
import platform
import re
from dataclasses import dataclass

from localdev.errors import UsageError

DOCKER_HUB = "docker.io"
#: Other names of Docker Hub that images use; all mean ``docker.io``.
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]{1,5})?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$|^sha512:[0-9a-f]{128}$")
#: Images that must be named by digest: kind's node images (kind v0.33.0's release notes: a tag
#: alone may name an image built for another kind release).
DIGEST_REQUIRED = frozenset({(DOCKER_HUB, "kindest/node")})


@dataclass(frozen=True, order=True)
class ImageRef:
    """A normalised image reference."""

    registry: str
    """Registry host as images name it (``docker.io``, ``ghcr.io``, ``localhost:5001``)."""
    repository: str
    """Path inside the registry (``library/redis``)."""
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageRef:
    """Parse and normalise ``text``; raise :class:`UsageError` naming what is wrong."""
    original = text
    text = text.strip()
    if not text:
        raise UsageError("malformed image reference '': empty")
    if any(c.isspace() for c in text):
        raise UsageError(f"malformed image reference {original!r}: contains whitespace")
    name, digest = text, None
    if "@" in text:
        name, digest = text.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise UsageError(f"malformed image reference {original!r}: {digest!r} is not a sha256:<64 hex> digest")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise UsageError(f"malformed image reference {original!r}: {tag!r} is not a valid tag")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN_RE.match(first):
            raise UsageError(f"malformed image reference {original!r}: {first!r} is not a registry host")
        registry, path = first.lower(), rest
    else:
        registry, path = DOCKER_HUB, name
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not _PATH_RE.match(path):
        raise UsageError(
            f"malformed image reference {original!r}: {path!r} is not a repository name "
            "(lowercase letters, digits and . _ - separators)"
        )
    if len(registry) + 1 + len(path) > 255:
        raise UsageError(f"malformed image reference {original!r}: name longer than 255 characters")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest)


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``: the digest registries name content by."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


#: ``platform.machine()`` → OCI architecture.
_ARCHITECTURES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm/v7",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def host_architecture() -> str:
    """The OCI architecture of this machine (``amd64``, ``arm64``…): what kind's nodes run here."""
    machine = platform.machine().lower()
    return _ARCHITECTURES.get(machine, machine)
