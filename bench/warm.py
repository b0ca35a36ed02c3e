"""Warming the caches before the nodes pull, two ways.

* :func:`run_product_warm`: the warm step exactly as ``pulumi up`` runs it,
  the product's script (``localdev/scripts/warm-caches.sh``) under ``/bin/sh
  -c`` with the environment the program gives its Command
  (``render_warm_command``), from the project directory. One deviation: it reads
  what each cache holds from the cache's storage directory instead of through
  the Docker API (the bench's caches are processes, not containers); both
  read the same files and neither sends the cache a request. It reads every
  missed blob in full through the cache, once per repository; distribution
  3.x stores a blob from that one upstream stream, 2.8 also fetches it a
  second time for its own store (its double fetch, see bench/README.md).
* :func:`warm_by_prefetch` (not the product's method, not run by default):
  asks the cache for every blob and drops each response after its headers.
  2.8's background store still fetches the whole blob once while the copy
  streamed to the client stops; 3.x writes the client stream and the store
  from one upstream stream, so a client that hangs up leaves nothing stored
  and this method times out there. It waits until the cache's storage links
  each blob into its repository, and finishes with a full verified pull
  through the cache, which must come from its disk.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from localdev.ops.storage import V2, blob_path, layer_link_path
from localdev.render import render_warm_command, warm_targets
from localdev.settings import PROJECT_DIR, Settings, venv_python
from tests.harness.images import MANIFEST_ACCEPT, SyntheticImage, pull_manifest_and_blobs


def warm_by_pull(cache_url: str, images: Iterable[SyntheticImage]) -> None:
    with httpx.Client(trust_env=False, timeout=600.0) as client:
        for image in images:
            got = pull_manifest_and_blobs(cache_url, image.repo, image.tag, client=client)
            if got["digest"] != image.digest:
                raise RuntimeError(f"cache served {image.ref} as {got['digest']}, expected {image.digest}")


def blob_link(storage: Path, repo: str, digest: str) -> Path:
    """Where distribution's filesystem storage records that ``repo`` holds blob ``digest``."""
    return Path(storage) / V2 / layer_link_path(repo, digest)


def blob_links(storage: Path, images: Iterable[SyntheticImage]) -> list[Path]:
    return [blob_link(storage, image.repo, digest) for image in images for digest in image.blobs]


def blob_files(storage: Path, images: Iterable[SyntheticImage]) -> list[Path]:
    """Where distribution's filesystem storage keeps each distinct blob's bytes (any repository)."""
    digests = sorted({digest for image in images for digest in image.blobs})
    return [Path(storage) / V2 / blob_path(digest) for digest in digests]


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


def run_product_warm(settings: Settings, storages: Mapping[str, Path], timeout: float) -> dict[str, Any]:
    """Run the program's warm step against the caches of ``settings``; return what it printed.

    ``storages`` maps each registry host to its cache's storage directory
    (the one deviation, see the module docstring). Raises if the step fails:
    its exit status is 0 even when images are missing, so a failure here is
    the step itself breaking.
    """
    targets = warm_targets(settings, storage={host: f"dir:{path}" for host, path in storages.items()})
    shell = render_warm_command(settings, python=venv_python(), targets=targets)
    env = shell.environment
    command = ["/bin/sh", "-c", shell.create]
    begin = time.monotonic()
    try:
        res = subprocess.run(command, cwd=PROJECT_DIR, env={**os.environ, **env}, capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"the warm step took longer than {timeout:.0f}s") from exc
    if res.returncode != 0:
        raise RuntimeError(f"the warm step failed ({res.returncode}):\n{res.stdout[-1500:]}{res.stderr[-1500:]}")
    lines = res.stdout.strip().splitlines()
    return {
        "tool": "localdev/scripts/warm-caches.sh (sh -c, render_warm_command)",
        "env": {k: v for k, v in sorted(env.items())},
        "output": lines[-1] if lines else "",
        "progress": res.stderr.strip().splitlines()[-12:],
        "step_s": round(time.monotonic() - begin, 3),
    }
