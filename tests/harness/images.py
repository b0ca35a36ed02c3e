"""Synthetic OCI images built in memory, and ways to push and pull them.

Nothing here downloads anything: layers are gzip-compressed tar archives that
each hold one file of pseudo-random bytes, generated from a seed.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from localdev.images import sha256_digest
from localdev.ops.registry_api import MANIFEST_ACCEPT, OCI_INDEX, OCI_MANIFEST

from .binaries import require_binary

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


class DigestMismatchError(AssertionError):
    """Content fetched from a registry does not match its digest."""


class PushError(RuntimeError):
    """A registry refused a push step; ``status`` is the HTTP status code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class SyntheticImage:
    """An OCI image held in memory.

    ``layers`` are the compressed layer blobs (gzip'd tars), ``config`` the
    image config JSON and ``manifest`` the OCI image manifest JSON, all exactly
    as they are stored in a registry.
    """

    repo: str
    tag: str
    layers: list[bytes]
    config: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        """Manifest digest, ``sha256:...``."""
        return sha256_digest(self.manifest)

    @property
    def config_digest(self) -> str:
        """Digest of the config blob."""
        return sha256_digest(self.config)

    @property
    def layer_digests(self) -> list[str]:
        """Digests of the layer blobs, in manifest order."""
        return [sha256_digest(layer) for layer in self.layers]

    @property
    def blobs(self) -> dict[str, bytes]:
        """Every blob (config and layers) by digest."""
        out = {self.config_digest: self.config}
        for layer in self.layers:
            out[sha256_digest(layer)] = layer
        return out

    @property
    def total_size(self) -> int:
        """Sum of the sizes of all blobs (config and layers) and the manifest."""
        return sum(len(b) for b in self.blobs.values()) + len(self.manifest)

    @property
    def ref(self) -> str:
        """``repo:tag`` (prefix it with a registry host to pull it)."""
        return f"{self.repo}:{self.tag}"


def make_layer(payload: bytes, filename: str) -> bytes:
    """Return a deterministic gzip'd tar holding one file ``filename``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name=filename)
        info.size = len(payload)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        tar.addfile(info, io.BytesIO(payload))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def make_image(
    repo: str,
    tag: str,
    layer_sizes: Sequence[int],
    seed: int,
    shared_layers: Sequence[bytes] = (),
    architecture: str = "amd64",
) -> SyntheticImage:
    """Build a deterministic synthetic OCI image.

    The image has ``shared_layers`` (compressed blobs taken from another
    synthetic image, so registries can deduplicate them) followed by one new
    layer per entry of ``layer_sizes``, each a gzip'd tar holding one file of
    that many pseudo-random bytes drawn from ``random.Random(seed)``. Random
    bytes do not compress, so a layer blob is a little larger than its size.
    The config is a valid OCI config (``os`` linux, ``architecture`` amd64 by
    default, ``rootfs.diff_ids`` = digests of the uncompressed tars), so
    containerd's ``ctr images pull`` unpacks it. Same arguments, same bytes.
    """
    rng = random.Random(seed)
    layers = list(shared_layers)
    for index, size in enumerate(layer_sizes):
        payload = rng.randbytes(size)
        layers.append(make_layer(payload, f"data/seed{seed}-layer{index}.bin"))
    diff_ids = [sha256_digest(gzip.decompress(layer)) for layer in layers]
    config_doc: dict[str, Any] = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"harness synthetic layer {i}"} for i in range(len(layers))],
    }
    config = json.dumps(config_doc, sort_keys=True, separators=(",", ":")).encode()
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": sha256_digest(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": OCI_LAYER_GZIP,
                "digest": sha256_digest(layer),
                "size": len(layer),
            }
            for layer in layers
        ],
    }
    manifest = json.dumps(manifest_doc, sort_keys=True, separators=(",", ":")).encode()
    return SyntheticImage(repo=repo, tag=tag, layers=layers, config=config, manifest=manifest)


# --------------------------------------------------------------------- push
def _client(client: httpx.Client | None) -> tuple[httpx.Client, bool]:
    if client is not None:
        return client, False
    return httpx.Client(trust_env=False, timeout=60.0), True


def push_blob(client: httpx.Client, registry_url: str, repo: str, blob: bytes) -> bool:
    """Push one blob (monolithic POST + PUT) unless HEAD says it exists.

    Return True if the blob was uploaded, False if it was already there.
    """
    base = registry_url.rstrip("/")
    digest = sha256_digest(blob)
    head = client.head(f"{base}/v2/{repo}/blobs/{digest}")
    if head.status_code == 200:
        return False
    start = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    if start.status_code != 202:
        raise PushError(
            f"POST {base}/v2/{repo}/blobs/uploads/ -> {start.status_code}: {start.text[:500]}",
            start.status_code,
        )
    location = httpx.URL(base + "/").join(start.headers["Location"])
    location = location.copy_merge_params({"digest": digest})
    put = client.put(
        location,
        content=blob,
        headers={"Content-Type": "application/octet-stream"},
    )
    if put.status_code != 201:
        raise PushError(
            f"PUT blob {digest} to {repo} -> {put.status_code}: {put.text[:500]}",
            put.status_code,
        )
    return True


def push_image(registry_url: str, image: SyntheticImage, client: httpx.Client | None = None) -> None:
    """Push ``image`` through the OCI distribution HTTP API.

    Blobs are pushed with monolithic uploads (POST then PUT ``?digest=``) after
    a HEAD that skips blobs the registry already has; then the manifest is PUT
    under ``image.tag``. Raise :class:`PushError` on any refusal (for example
    405 from a proxy-mode registry).
    """
    http, owned = _client(client)
    try:
        for blob in [image.config, *image.layers]:
            push_blob(http, registry_url, image.repo, blob)
        url = f"{registry_url.rstrip('/')}/v2/{image.repo}/manifests/{image.tag}"
        put = http.put(url, content=image.manifest, headers={"Content-Type": OCI_MANIFEST})
        if put.status_code != 201:
            raise PushError(f"PUT {url} -> {put.status_code}: {put.text[:500]}", put.status_code)
        got = put.headers.get("Docker-Content-Digest")
        if got is not None and got != image.digest:
            raise DigestMismatchError(f"registry says manifest is {got}, expected {image.digest}")
    finally:
        if owned:
            http.close()


def write_oci_layout(image: SyntheticImage, directory: Path) -> Path:
    """Write ``image`` as an OCI image layout directory tagged ``image.tag``."""
    blobs_dir = directory / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    for digest, blob in {**image.blobs, image.digest: image.manifest}.items():
        (blobs_dir / digest.split(":", 1)[1]).write_bytes(blob)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": image.digest,
                "size": len(image.manifest),
                "annotations": {"org.opencontainers.image.ref.name": image.tag},
            }
        ],
    }
    (directory / "index.json").write_text(json.dumps(index))
    return directory


def push_with_skopeo(
    registry_host: str, image: SyntheticImage, workdir: Path, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Push ``image`` with ``skopeo copy`` from an OCI layout; never raises on failure.

    Runs ``skopeo --insecure-policy copy --dest-tls-verify=false
    oci:DIR:TAG docker://HOST/REPO:TAG`` and returns the completed process (text
    output) so a test can assert a refused push. ``--insecure-policy`` keeps the
    host's ``/etc/containers/policy.json`` out of the picture. The only
    exception raised is ``subprocess.TimeoutExpired`` after ``timeout`` s.
    """
    skopeo = require_binary("skopeo")
    safe = image.repo.replace("/", "_")
    layout = write_oci_layout(image, Path(workdir) / f"oci-{safe}-{image.tag}")
    cmd = [
        skopeo,
        "--insecure-policy",
        "copy",
        "--dest-tls-verify=false",
        f"oci:{layout}:{image.tag}",
        f"docker://{registry_host}/{image.repo}:{image.tag}",
    ]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


# --------------------------------------------------------------------- pull
def _get_verified(client: httpx.Client, url: str, digest: str) -> bytes:
    resp = client.get(url)
    resp.raise_for_status()
    data = resp.content
    got = sha256_digest(data)
    if got != digest:
        raise DigestMismatchError(f"GET {url}: content digest {got} != expected {digest}")
    return data


def pull_manifest_and_blobs(registry_url: str, repo: str, ref: str, client: httpx.Client | None = None) -> dict[str, Any]:
    """Fetch a manifest and every blob it references, verifying every digest.

    ``ref`` is a tag or a digest. The manifest is checked against ``ref`` when
    it is a digest, and against the ``Docker-Content-Digest`` header when the
    registry sends one; each blob is checked against its descriptor. An index
    is followed into its child manifests. Raise :class:`DigestMismatchError`
    on any mismatch and ``httpx.HTTPStatusError`` on an error status.

    Return ``{"digest": str, "media_type": str, "manifest": bytes,
    "manifests": {digest: bytes}, "blobs": {digest: bytes}}``.
    """
    http, owned = _client(client)
    base = registry_url.rstrip("/")
    blobs: dict[str, bytes] = {}
    manifests: dict[str, bytes] = {}
    try:

        def fetch_manifest(reference: str) -> tuple[str, bytes, dict[str, Any]]:
            url = f"{base}/v2/{repo}/manifests/{reference}"
            resp = http.get(url, headers={"Accept": MANIFEST_ACCEPT})
            resp.raise_for_status()
            body = resp.content
            digest = sha256_digest(body)
            if reference.startswith("sha256:") and digest != reference:
                raise DigestMismatchError(f"GET {url}: manifest digest {digest} != {reference}")
            header = resp.headers.get("Docker-Content-Digest")
            if header is not None and header != digest:
                raise DigestMismatchError(f"GET {url}: header digest {header} != body {digest}")
            manifests[digest] = body
            doc: dict[str, Any] = json.loads(body)
            return digest, body, doc

        def fetch_tree(doc: dict[str, Any]) -> None:
            if "manifests" in doc:  # an index / manifest list
                for child in doc["manifests"]:
                    _, _, child_doc = fetch_manifest(child["digest"])
                    fetch_tree(child_doc)
                return
            for desc in [doc["config"], *doc.get("layers", [])]:
                digest = desc["digest"]
                if digest in blobs:
                    continue
                data = _get_verified(http, f"{base}/v2/{repo}/blobs/{digest}", digest)
                if len(data) != desc["size"]:
                    raise DigestMismatchError(f"blob {digest}: size {len(data)} != descriptor size {desc['size']}")
                blobs[digest] = data

        top_digest, top_body, top_doc = fetch_manifest(ref)
        fetch_tree(top_doc)
        return {
            "digest": top_digest,
            "media_type": top_doc.get("mediaType", ""),
            "manifest": top_body,
            "manifests": manifests,
            "blobs": blobs,
        }
    finally:
        if owned:
            http.close()
