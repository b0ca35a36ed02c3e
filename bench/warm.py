"""Warming a pull-through cache before the nodes pull, two ways.

* A full pull through the cache: the program's own ``localdev
  warm`` (:func:`program_warm_command`), or where that command is absent
  :func:`warm_by_pull`, which pulls every manifest and blob once, verifying
  digests. On distribution 2.8 each missed blob is fetched upstream twice (once
  for the client, once by the cache's own background store), so this costs
  about twice the image bytes; 3.0 fixed that (distribution PR #3569; docs/sources.md).
* :func:`warm_by_prefetch` asks the cache for every blob and drops each
  response after its headers. The cache's background store still fetches the
  whole blob once, while the copy streamed to the client stops when the
  client goes away. It waits until the cache's storage links each blob into
  its repository (the bench owns that directory; the program's ``warm`` reads
  the same links through ``--storage`` or the Docker API), and finishes with a
  full verified pull through the cache, which must come from its disk.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from localdev.settings import PROJECT_DIR
from tests.harness.images import MANIFEST_ACCEPT, SyntheticImage, pull_manifest_and_blobs


def warm_by_pull(cache_url: str, images: Iterable[SyntheticImage]) -> None:
    with httpx.Client(trust_env=False, timeout=600.0) as client:
        for image in images:
            got = pull_manifest_and_blobs(cache_url, image.repo, image.tag, client=client)
            if got["digest"] != image.digest:
                raise RuntimeError(f"cache served {image.ref} as {got['digest']}, expected {image.digest}")


def blob_link(storage: Path, repo: str, digest: str) -> Path:
    """Where distribution's filesystem storage records that ``repo`` holds blob ``digest``."""
    repositories = Path(storage) / "docker" / "registry" / "v2" / "repositories"
    return repositories / repo / "_layers" / "sha256" / digest.split(":", 1)[1] / "link"


def blob_links(storage: Path, images: Iterable[SyntheticImage]) -> list[Path]:
    return [blob_link(storage, image.repo, digest) for image in images for digest in image.blobs]


def blob_files(storage: Path, images: Iterable[SyntheticImage]) -> list[Path]:
    """Where distribution's filesystem storage keeps each distinct blob's bytes (any repository)."""
    root = Path(storage) / "docker" / "registry" / "v2" / "blobs" / "sha256"
    digests = sorted({digest.split(":", 1)[1] for image in images for digest in image.blobs})
    return [root / hexdigest[:2] / hexdigest / "data" for hexdigest in digests]


def wait_for_links(links: list[Path], timeout: float) -> float:
    """Wait until every file of ``links`` exists; return the seconds waited."""
    begin = time.monotonic()
    deadline = begin + timeout
    while True:
        missing = [link for link in links if not link.exists()]
        if not missing:
            return time.monotonic() - begin
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the cache stored {len(links) - len(missing)} of {len(links)} blobs within {timeout:.0f}s")
        time.sleep(0.1)


def warm_by_prefetch(cache_url: str, storage: Path, images: list[SyntheticImage], timeout: float, workers: int = 4) -> None:
    """Make the cache store every (repository, blob) pair, each blob crossing the link about once per repository.

    Distinct digests are prefetched in parallel; the repositories sharing one
    digest take turns, each waiting for the previous one's copy to be stored:
    2.8 tracks in-flight fetches per digest across repositories, and a second
    repository asking meanwhile is streamed the blob without storing it.
    """
    base = cache_url.rstrip("/")
    by_digest: dict[str, list[str]] = {}
    with httpx.Client(trust_env=False, timeout=120.0) as client:
        for image in images:
            resp = client.get(f"{base}/v2/{image.repo}/manifests/{image.tag}", headers={"Accept": MANIFEST_ACCEPT})
            resp.raise_for_status()
            for digest in image.blobs:
                by_digest.setdefault(digest, []).append(image.repo)
    sizes = {digest: len(blob) for image in images for digest, blob in image.blobs.items()}

    def prefetch(digest: str) -> None:
        with httpx.Client(trust_env=False, timeout=120.0) as client:
            for repo in by_digest[digest]:
                # Open the response, read nothing of the body, close the connection.
                with client.stream("GET", f"{base}/v2/{repo}/blobs/{digest}") as blob:
                    if blob.status_code != 200:
                        raise RuntimeError(f"cache answered {blob.status_code} for {repo}@{digest}")
                link = blob_link(storage, repo, digest)
                wait_for_links([link], timeout)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(prefetch, sorted(by_digest, key=lambda d: -sizes[d])))
    wait_for_links(blob_links(storage, images), timeout)
    warm_by_pull(cache_url, images)


def program_warm_command(cache_url: str, storage: Path, refs: Sequence[str]) -> list[str] | None:
    """The program's ``warm`` command for ``refs`` through one cache, or None where the program has none."""
    if importlib.util.find_spec("localdev.ops.warm") is None:
        return None
    return [
        sys.executable,
        "-m",
        "localdev.cli",
        "warm",
        "--registry",
        cache_url,
        "--storage",
        str(storage),
        "--no-manifests",
        *refs,
    ]


def run_program_warm(command: list[str], timeout: float) -> str:
    """Run the program's ``warm``; return its summary line. Raise if it fails."""
    try:
        res = subprocess.run(
            command, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"`{' '.join(command[1:4])}` took longer than {timeout:.0f}s") from exc
    if res.returncode != 0:
        raise RuntimeError(f"`{' '.join(command[1:4])}` failed ({res.returncode}):\n{res.stdout[-1500:]}{res.stderr[-1500:]}")
    lines = res.stdout.strip().splitlines()
    return lines[-1] if lines else ""
