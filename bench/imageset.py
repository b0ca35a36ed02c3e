"""The synthetic image set: shaped like the starting design's ten images.

Sizes are the design's figures, taken as compressed bytes on the wire (layers
are random bytes, which gzip cannot shrink). Each image is a shared base layer
(an alpine-like 3 MB or a debian-like 30 MB one, the same blob in every image
that uses it, as in real images) plus a few layers of its own, largest first.
``scale`` multiplies every size, so ``--scale 0.02`` keeps the shape at 2 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from localdev.images import host_architecture
from tests.harness.images import SyntheticImage, make_image

MB = 1_000_000
#: Smallest layer payload after scaling, so every layer stays a real tar.gz of some size.
MIN_LAYER = 4096

#: Shared base layers: name -> size in MB.
BASES: dict[str, float] = {"alpine": 3, "debian": 30}


@dataclass(frozen=True)
class ImageSpec:
    """One image of the set."""

    repo: str
    """Repository on Docker Hub, e.g. ``library/postgres`` (pulled as ``docker.io/library/postgres:TAG``)."""
    tag: str
    size_mb: float
    """The starting design's size of the image, base included."""
    base: str
    """Key of :data:`BASES`."""
    split: tuple[float, ...]
    """How the image's own bytes (size minus base) divide into layers."""

    @property
    def ref(self) -> str:
        return f"docker.io/{self.repo}:{self.tag}"


#: The starting design's ten images (sizes from its README); tags are illustrative.
IMAGE_SET: tuple[ImageSpec, ...] = (
    ImageSpec("library/postgres", "16.4", 85, "debian", (0.72, 0.22, 0.06)),
    ImageSpec("library/redis", "7.4.0", 32, "alpine", (0.70, 0.24, 0.06)),
    ImageSpec("prom/prometheus", "v2.54.1", 210, "alpine", (0.72, 0.22, 0.06)),
    ImageSpec("grafana/grafana", "11.2.0", 315, "alpine", (0.64, 0.26, 0.08, 0.02)),
    ImageSpec("grafana/loki", "3.1.1", 78, "alpine", (0.73, 0.20, 0.07)),
    ImageSpec("grafana/promtail", "3.1.1", 65, "debian", (0.71, 0.23, 0.06)),
    ImageSpec("jaegertracing/all-in-one", "1.60.0", 98, "alpine", (0.74, 0.21, 0.05)),
    ImageSpec("otel/opentelemetry-collector-contrib", "0.108.0", 145, "alpine", (0.77, 0.18, 0.05)),
    ImageSpec("velero/velero", "v1.14.1", 125, "debian", (0.74, 0.21, 0.05)),
    ImageSpec("velero/velero-plugin-for-aws", "v1.10.1", 45, "alpine", (0.71, 0.24, 0.05)),
)


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
    def unique_bytes(self) -> int:
        """Every distinct blob once, plus every manifest: the least any puller must download."""
        blobs: dict[str, int] = {}
        for image in self.images:
            blobs.update({digest: len(blob) for digest, blob in image.blobs.items()})
        return sum(blobs.values()) + sum(len(image.manifest) for image in self.images)

    @property
    def per_repo_bytes(self) -> int:
        """Sum of the images' sizes, shared base layers counted once per image (per repository)."""
        return sum(image.total_size for image in self.images)

    @property
    def blob_count(self) -> int:
        return len({digest for image in self.images for digest in image.blobs})

    def describe(self) -> list[dict[str, object]]:
        """Per image: ref, layer count, bytes; for the JSON report."""
        return [
            {
                "ref": spec.ref,
                "nominal_mb": round(spec.size_mb * self.scale, 3),
                "base": spec.base,
                "layers": len(image.layers),
                "bytes": image.total_size,
                "manifest_digest": image.digest,
            }
            for spec, image in zip(self.specs, self.images, strict=True)
        ]


def build_image_set(scale: float, specs: Sequence[ImageSpec] = IMAGE_SET, architecture: str | None = None) -> ImageSet:
    """Build every image deterministically (same scale, same bytes)."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    arch = architecture or host_architecture()
    bases = {
        name: make_image(f"bench/base-{name}", "1", [_scaled(size, scale)], seed=1000 + index, architecture=arch).layers
        for index, (name, size) in enumerate(sorted(BASES.items()))
    }
    images = []
    for index, spec in enumerate(specs):
        own = spec.size_mb - BASES[spec.base]
        sizes = [_scaled(own * share, scale) for share in spec.split]
        images.append(make_image(spec.repo, spec.tag, sizes, seed=index + 1, shared_layers=bases[spec.base], architecture=arch))
    return ImageSet(specs=tuple(specs), images=images, scale=scale)
