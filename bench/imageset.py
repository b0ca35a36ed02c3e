"""The synthetic image set: the images the workloads in ``k8s/`` run, with synthetic bytes.

Which images, under which registry, repository and tag, comes from the
manifests themselves (:func:`workload_images`, the same analysis ``localdev
warm`` uses), so the set follows ``k8s/`` when an image changes or is added.
The bytes are synthetic: nothing here downloads an image, so each layer is
pseudo-random bytes (gzip cannot shrink them, so compressed size is the
nominal size). :data:`SHAPES` gives each repository an estimated compressed
size and the base layer it shares with others (the same blob in every image
that uses it, as in real images); a repository it does not know gets
:data:`DEFAULT_SHAPE`, and ``results.json`` says which ones did.
``scale`` multiplies every size, so ``--scale 0.02`` keeps the shape at 2 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from localdev.images import host_architecture
from tests.harness.images import SyntheticImage, make_image

MB = 1_000_000
#: Smallest layer payload after scaling, so every layer stays a real tar.gz of some size.
MIN_LAYER = 4096

#: Shared base layers: name -> compressed size in MB (estimates of the public base images' layers).
BASES: dict[str, float] = {"alpine": 3.6, "busybox": 2.2, "debian": 28.0, "distroless": 2.0}


@dataclass(frozen=True)
class Shape:
    """How one repository's image is built: its size and layers."""

    size_mb: float
    """Estimated compressed size for linux/amd64, base included (not measured: nothing is downloaded)."""
    base: str
    """Key of :data:`BASES`."""
    split: tuple[float, ...]
    """How the image's own bytes (size minus base) divide into layers."""


#: Estimated shapes by repository (registry host included). Unknown repositories get DEFAULT_SHAPE.
SHAPES: dict[str, Shape] = {
    "docker.io/library/postgres": Shape(95, "alpine", (0.86, 0.10, 0.04)),
    "docker.io/library/redis": Shape(17, "alpine", (0.80, 0.15, 0.05)),
    "docker.io/prom/prometheus": Shape(125, "busybox", (0.66, 0.30, 0.04)),
    "docker.io/grafana/grafana": Shape(190, "alpine", (0.64, 0.26, 0.08, 0.02)),
    "docker.io/grafana/loki": Shape(40, "alpine", (0.90, 0.10)),
    "docker.io/grafana/promtail": Shape(80, "debian", (0.71, 0.23, 0.06)),
    "docker.io/jaegertracing/all-in-one": Shape(33, "distroless", (0.95, 0.05)),
    "docker.io/jaegertracing/jaeger": Shape(38, "distroless", (0.95, 0.05)),
    "docker.io/otel/opentelemetry-collector-contrib": Shape(110, "distroless", (0.98, 0.02)),
    "docker.io/velero/velero": Shape(90, "distroless", (0.74, 0.21, 0.05)),
    "docker.io/velero/velero-plugin-for-aws": Shape(30, "busybox", (0.95, 0.05)),
    "docker.io/chrislusf/seaweedfs": Shape(60, "alpine", (0.92, 0.06, 0.02)),
}
DEFAULT_SHAPE = Shape(100, "debian", (0.72, 0.22, 0.06))


@dataclass(frozen=True)
class ImageSpec:
    """One image of the set."""

    registry: str
    """Registry host as the manifests name it (``docker.io``, ``quay.io``)."""
    repo: str
    """Repository inside that registry, e.g. ``library/postgres``."""
    tag: str
    shape: Shape
    estimated: bool
    """True when :data:`SHAPES` knows the repository, False when it got :data:`DEFAULT_SHAPE`."""
    sources: tuple[str, ...] = ()
    """Where the manifests use it (``file:Kind/name``)."""

    @property
    def ref(self) -> str:
        return f"{self.registry}/{self.repo}:{self.tag}"


def workload_images(manifests_dir: Path) -> tuple[ImageSpec, ...]:
    """Every image the manifests under ``manifests_dir`` run, as the product's ``warm`` finds them."""
    from localdev.images import parse_reference
    from localdev.manifests import images_from_manifests

    specs: dict[str, ImageSpec] = {}
    for found in images_from_manifests(manifests_dir):
        ref = parse_reference(found.image)
        # parse_reference leaves the tag empty only for a digest-only reference; a synthetic image cannot
        # have that digest, so a stand-in tag keeps the repository in the set.
        tag = ref.tag or "pinned"
        key = f"{ref.registry}/{ref.repository}"
        spec = ImageSpec(ref.registry, ref.repository, tag, SHAPES.get(key, DEFAULT_SHAPE), key in SHAPES,
                         tuple(found.sources))
        specs.setdefault(spec.ref, spec)
    if not specs:
        raise ValueError(f"no container image found in the manifests under {manifests_dir}")
    return tuple(specs.values())


def _scaled(megabytes: float, scale: float) -> int:
    return max(MIN_LAYER, int(megabytes * MB * scale))


@dataclass
class ImageSet:
    """The built images and the figures the report divides by."""

    specs: tuple[ImageSpec, ...]
    images: list[SyntheticImage]
    scale: float

    @property
    def refs(self) -> list[str]:
        return [spec.ref for spec in self.specs]

    @property
    def registries(self) -> list[str]:
        """Registry hosts of the set, sorted: one cache each, as the product runs them."""
        return sorted({spec.registry for spec in self.specs})

    @property
    def unique_bytes(self) -> int:
        """Every distinct blob once, plus every manifest: the least any puller must download."""
        blobs: dict[str, int] = {}
        for image in self.images:
            blobs.update({digest: len(blob) for digest, blob in image.blobs.items()})
        return sum(blobs.values()) + sum(len(image.manifest) for image in self.images)

    @property
    def per_repo_bytes(self) -> int:
        """Sum of the images' sizes, shared base layers counted once per image (per repository).

        What a pull-through cache must fetch at least: distribution links a blob
        into one repository at a time, so a base layer shared by two
        repositories crosses the link once for each.
        """
        return sum(image.total_size for image in self.images)

    @property
    def blob_count(self) -> int:
        return len({digest for image in self.images for digest in image.blobs})

    @property
    def repo_blob_pairs(self) -> int:
        """Distinct (repository, blob) pairs: the fewest blob GETs a cache must send upstream."""
        return len({(image.repo, digest) for image in self.images for digest in image.blobs})

    def describe(self) -> list[dict[str, object]]:
        """Per image: ref, shape, layer count, bytes; for the JSON report."""
        return [
            {
                "ref": spec.ref,
                "nominal_mb": round(spec.shape.size_mb * self.scale, 3),
                "base": spec.shape.base,
                "shape": "estimate" if spec.estimated else "default (repository not in bench/imageset.py SHAPES)",
                "layers": len(image.layers),
                "bytes": image.total_size,
                "manifest_digest": image.digest,
                "used_by": list(spec.sources),
            }
            for spec, image in zip(self.specs, self.images, strict=True)
        ]


def build_image_set(scale: float, specs: Sequence[ImageSpec], architecture: str | None = None) -> ImageSet:
    """Build every image deterministically (same specs and scale, same bytes).

    The upstream holds every registry's repositories side by side, so two
    hosts must not use the same repository path.
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    by_repo: dict[str, str] = {}
    for spec in specs:
        other = by_repo.setdefault(spec.repo, spec.registry)
        if other != spec.registry:
            raise ValueError(f"repository {spec.repo} is used on both {other} and {spec.registry}; the bench's one "
                             "upstream cannot hold both")
    arch = architecture or host_architecture()
    bases = {
        name: make_image(f"bench/base-{name}", "1", [_scaled(size, scale)], seed=1000 + index, architecture=arch).layers
        for index, (name, size) in enumerate(sorted(BASES.items()))
    }
    images = []
    for index, spec in enumerate(specs):
        own = max(spec.shape.size_mb - BASES[spec.shape.base], 0.1)
        sizes = [_scaled(own * share, scale) for share in spec.shape.split]
        images.append(make_image(spec.repo, spec.tag, sizes, seed=index + 1, shared_layers=bases[spec.shape.base],
                                 architecture=arch))
    return ImageSet(specs=tuple(specs), images=images, scale=scale)
