"""``warm``: pull images through the caches so a laptop can go offline.

For each image: GET its manifest from the cache (for an index, the manifests of
the selected platforms), then GET every blob, streaming and discarding, so the
cache fetches and stores it. Blobs are fetched in parallel, one digest at a time
per worker (2.8.2 tracks in-flight fetches per digest across repositories, and a
second repository asking for the same digest meanwhile is served without being
stored).

Resumable: a blob the cache already holds is not fetched again. Knowing that
without making the cache fetch it is the delicate part, because in
docker-registry 2.8.2 (verified) a HEAD of a blob a pull-through cache lacks
answers 200 *and* makes it download the blob from upstream (twice). So:

* with storage access (the stack's containers through the Docker API, or
  ``--storage DIR``), the cache's ``_layers`` links say what it holds; nothing
  is sent to the cache for a held blob, and its counters are untouched;
* otherwise each blob is asked for with ``Range: bytes=0-0``: a stored blob is
  served by distribution's storage (206, ``Cache-Control``, quoted ETag) and
  costs one byte; a missing one is streamed from upstream (200 on 2.8.2) and is
  read to the end. Such a check counts as a hit in the cache's counters.

After fetching, each blob is checked again until the cache has committed it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from localdev.errors import OpsError, UsageError
from localdev.images import ImageRef, host_architecture, parse_reference
from localdev.manifests import images_from_manifests
from localdev.ops import dockerapi
from localdev.ops.output import Progress, Style, human_bytes
from localdev.ops.registry_api import Descriptor, Manifest, RegistryClient, RegistryError, normalise_url, served_from_storage
from localdev.ops.storage import ContainerStorage, LocalStorage, StorageReader, held_blobs, holds_blob
from localdev.settings import DEFAULT_CACHE_PORTS, FIRST_SUGGESTED_PORT, Settings

CHUNK = 1 << 16
#: How long to wait for a cache to commit a blob it streamed to us.
COMMIT_WAIT_S = 30.0


def host_default_platform() -> str:
    """linux/<this machine's architecture>: what kind's nodes run on this host."""
    return f"linux/{host_architecture()}"


def parse_platforms(text: str | None) -> list[str] | None:
    """``None``/empty → host platform; ``all`` → every platform (None returned); else a comma list."""
    if text is None or not text.strip():
        return [host_default_platform()]
    if text.strip() == "all":
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


def platform_matches(candidate: str | None, wanted: str) -> bool:
    if not candidate:
        return False
    parts, want = candidate.split("/"), wanted.split("/")
    return parts[: len(want)] == want


@dataclass
class WarmTarget:
    """Where an image is pulled through."""

    url: str
    label: str
    storage: StorageReader | None = None


@dataclass
class ImageJob:
    text: str
    ref: ImageRef | None
    target: WarmTarget | None = None
    error: str | None = None
    skipped: str | None = None
    manifests: list[Manifest] = field(default_factory=list)
    blobs: list[Descriptor] = field(default_factory=list)

    @property
    def repository(self) -> str:
        assert self.ref is not None
        return self.ref.repository


@dataclass
class BlobTask:
    target: WarmTarget
    repository: str
    digest: str
    size: int
    state: str = "unknown"
    """unknown → cached | fetched | failed."""
    error: str | None = None
    bytes_read: int = 0


@dataclass
class WarmResult:
    jobs: list[ImageJob]
    tasks: dict[tuple[str, str, str], BlobTask]

    def tasks_of(self, job: ImageJob) -> list[BlobTask]:
        if job.target is None or job.ref is None:
            return []
        seen: dict[str, BlobTask] = {}
        for blob in job.blobs:
            seen.setdefault(blob.digest, self.tasks[(job.target.url, job.repository, blob.digest)])
        return list(seen.values())

    @property
    def failed(self) -> list[ImageJob]:
        return [j for j in self.jobs if j.error or any(t.state == "failed" for t in self.tasks_of(j))]


def _select_children(index: Manifest, platforms: list[str] | None) -> list[Descriptor]:
    children = [c for c in index.children() if c.platform and not c.platform.startswith("unknown/")]
    if platforms is None:
        return children or index.children()
    chosen: list[Descriptor] = []
    for wanted in platforms:
        match = next((c for c in children if platform_matches(c.platform, wanted)), None)
        if match is None:
            available = ", ".join(sorted({c.platform or "?" for c in children})) or "none"
            raise RegistryError(f"the index has no {wanted} image (it has: {available})")
        if match not in chosen:
            chosen.append(match)
    return chosen


class Warmer:
    def __init__(self, *, jobs: int = 4, platforms: list[str] | None = None, timeout: float = 300.0) -> None:
        self.workers = max(1, jobs)
        self.platforms = platforms
        self.timeout = timeout
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def client(self, url: str) -> RegistryClient:
        with self._lock:
            if url not in self._clients:
                self._clients[url] = RegistryClient(url, timeout=self.timeout)
            return self._clients[url]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    # ------------------------------------------------------------ manifests
    def resolve(self, job: ImageJob) -> None:
        if job.target is None or job.ref is None or job.error or job.skipped:
            return
        client = self.client(job.target.url)
        try:
            top = client.manifest(job.repository, job.ref.reference)
            job.manifests.append(top)
            images = [top]
            if top.is_index:
                images = [client.manifest(job.repository, child.digest) for child in _select_children(top, self.platforms)]
                job.manifests.extend(images)
            for image in images:
                if image.is_index:
                    raise RegistryError(f"nested index {image.digest} is not supported")
                job.blobs.extend(image.blobs())
        except OpsError as err:
            job.error = err.line()

    # ---------------------------------------------------------------- blobs
    def fetch(self, task: BlobTask, progress: Progress) -> None:
        client = self.client(task.target.url)
        probe = task.target.storage is None
        try:
            with client.blob(task.repository, task.digest, first_byte_only=probe) as resp:
                if probe and served_from_storage(resp):
                    resp.read()
                    task.state = "cached"
                    progress.advance(task.size, items=1)
                    return
                hasher = hashlib.sha256()
                whole = resp.status_code == 200
                for chunk in resp.iter_raw(CHUNK):
                    if whole:
                        hasher.update(chunk)
                    task.bytes_read += len(chunk)
                    progress.advance(len(chunk))
            if whole and task.digest.startswith("sha256:") and f"sha256:{hasher.hexdigest()}" != task.digest:
                raise RegistryError(f"blob {task.digest[:19]} of {task.repository}: content does not match its digest")
            progress.advance(max(task.size - task.bytes_read, 0), items=1)
            task.state = "fetched"
        except OpsError as err:
            task.state, task.error = "failed", err.line()
            progress.advance(max(task.size - task.bytes_read, 0), items=1)
        except Exception as err:  # noqa: BLE001 - a broken stream must not kill the other workers
            task.state, task.error = "failed", f"blob {task.digest[:19]} of {task.repository}: {type(err).__name__}: {err}"
            progress.advance(max(task.size - task.bytes_read, 0), items=1)

    def stored(self, task: BlobTask) -> bool:
        """Has the cache committed ``task``'s blob? Never makes it fetch anything it holds."""
        if task.target.storage is not None:
            return holds_blob(task.target.storage, task.repository, task.digest)
        client = self.client(task.target.url)
        with client.blob(task.repository, task.digest, first_byte_only=True) as resp:
            # Not stored yet: close at once; the cache's own copy goes on.
            return served_from_storage(resp)

    def verify(self, tasks: list[BlobTask]) -> None:
        pending = [t for t in tasks if t.state == "fetched"]
        deadline = time.monotonic() + COMMIT_WAIT_S
        delay = 0.05
        while pending:
            time.sleep(delay)
            still = []
            for task in pending:
                try:
                    if not self.stored(task):
                        still.append(task)
                except OpsError as err:
                    task.state, task.error = "failed", err.line()
            pending = still
            if time.monotonic() > deadline:
                for task in pending:
                    task.state = "failed"
                    task.error = (
                        f"blob {task.digest[:19]} of {task.repository} was streamed but the cache did not store it "
                        f"within {COMMIT_WAIT_S:.0f}s (see the cache's log)"
                    )
                return
            delay = min(delay * 2, 2.0)

    # ------------------------------------------------------------------ run
    def run(self, jobs: list[ImageJob], err: TextIO) -> WarmResult:
        down: dict[str, str] = {}
        for target in {id(j.target): j.target for j in jobs if j.target is not None and not j.error}.values():
            assert target is not None
            try:
                self.client(target.url).ping()
            except OpsError as error:
                down[target.url] = f"{target.label}: {error.line()}"
        for job in jobs:
            if job.target is not None and job.target.url in down and not job.error:
                job.error = down[job.target.url]
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="warm-manifest") as pool:
            list(pool.map(self.resolve, jobs))
        tasks: dict[tuple[str, str, str], BlobTask] = {}
        for job in jobs:
            if job.error or job.skipped or job.target is None:
                continue
            for blob in job.blobs:
                key = (job.target.url, job.repository, blob.digest)
                tasks.setdefault(key, BlobTask(job.target, job.repository, blob.digest, blob.size))
        held: dict[tuple[str, str], set[str]] = {}
        for (url, repo, digest), task in tasks.items():
            if task.target.storage is None:
                continue
            if (url, repo) not in held:
                try:
                    held[(url, repo)] = held_blobs(task.target.storage, repo)
                except OpsError as error:
                    err.write(f"cannot read {task.target.storage.description}: {error.line()}; checking through the API\n")
                    task.target.storage = None
                    held[(url, repo)] = set()
            if digest in held[(url, repo)]:
                task.state = "cached"
        work = [t for t in tasks.values() if t.state == "unknown"]
        by_digest: dict[str, list[BlobTask]] = {}
        for task in work:
            by_digest.setdefault(task.digest, []).append(task)
        progress = Progress(len(work), sum(t.size for t in work), "warming", err)

        def run_group(group: list[BlobTask]) -> None:
            for task in group:
                self.fetch(task, progress)
                if task.state == "fetched" and len(group) > 1:
                    self.verify([task])  # let the cache commit before the next repository asks for this digest

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="warm-blob") as pool:
            list(pool.map(run_group, sorted(by_digest.values(), key=lambda g: -g[0].size)))
        progress.close()
        self.verify(work)
        return WarmResult(jobs, tasks)


def summarise(result: WarmResult, out: TextIO) -> None:
    style = Style(out)
    fetched_n = fetched_b = cached_n = cached_b = 0
    counted: set[tuple[str, str, str]] = set()
    for job in result.jobs:
        if job.skipped:
            out.write(f"{style.dim('-')} {job.text}: {job.skipped}\n")
            continue
        if job.error:
            out.write(f"{style.bad} {job.text}: {job.error}\n")
            continue
        tasks = result.tasks_of(job)
        failed = [t for t in tasks if t.state == "failed"]
        fetched = [t for t in tasks if t.state == "fetched"]
        cached = [t for t in tasks if t.state == "cached"]
        where = f" via {job.target.label}" if job.target else ""
        if failed:
            out.write(f"{style.bad} {job.text}{where}: {len(failed)} of {len(tasks)} blobs failed: {failed[0].error}\n")
        elif fetched:
            out.write(
                f"{style.ok} {job.text}{where}: fetched {len(fetched)} blobs ({human_bytes(sum(t.size for t in fetched))})"
                + (f", {len(cached)} already cached" if cached else "")
                + "\n"
            )
        else:
            size = human_bytes(sum(t.size for t in cached))
            out.write(f"{style.ok} {job.text}{where}: already cached ({len(cached)} blobs, {size})\n")
        for task in tasks:
            key = (task.target.url, task.repository, task.digest)
            if key in counted:
                continue
            counted.add(key)
            if task.state == "fetched":
                fetched_n, fetched_b = fetched_n + 1, fetched_b + task.size
            elif task.state == "cached":
                cached_n, cached_b = cached_n + 1, cached_b + task.size
    images = [j for j in result.jobs if not j.skipped]
    failed_n = len(result.failed)
    line = (
        f"{len(images)} image(s): fetched {fetched_n} blobs ({human_bytes(fetched_b)}), "
        f"already cached {cached_n} blobs ({human_bytes(cached_b)})"
    )
    if failed_n:
        line += f", {failed_n} image(s) failed"
    out.write(f"{style.bad if failed_n else style.ok} {line}\n")


def image_jobs(images: Sequence[str], manifests: Path | None, *, required: bool, err: TextIO) -> list[ImageJob]:
    """One job per distinct image: those given (bad ones refused here), then those of ``manifests``.

    An image found in a manifest that does not parse becomes a failed job naming
    where it was found, so one typo does not hide the rest. ``required``: a
    missing ``manifests`` directory is an error rather than a note.
    """
    jobs = [ImageJob(text, parse_reference(text)) for text in images]
    if manifests is not None:
        if manifests.is_dir() or required:
            for found in images_from_manifests(manifests):
                try:
                    jobs.append(ImageJob(found.image, parse_reference(found.image)))
                except UsageError as error:
                    jobs.append(ImageJob(found.image, None, error=f"{error.line()} (in {', '.join(found.sources)})"))
        else:
            print(f"no {manifests} directory: warming only the images given", file=err)
    unique: dict[object, ImageJob] = {}
    for job in jobs:
        unique.setdefault(job.ref if job.ref is not None else job.text, job)
    return list(unique.values())


def target_jobs(jobs: Sequence[ImageJob], registry: str, storage: Path | None, *, timeout: float) -> None:
    """Pull every job through the one registry at ``registry`` (``--registry``)."""
    url = normalise_url(registry)
    target = WarmTarget(url, url, LocalStorage(storage) if storage else None)
    with RegistryClient(url, timeout=min(timeout, 30.0)) as probe:
        probe.ping()  # a registry that is down is one line, not one per image
    for job in jobs:
        job.target = target if job.ref is not None else None


def stack_warm_targets(jobs: Sequence[ImageJob], settings: Settings, *, err: TextIO) -> None:
    """Send each job to the stack's cache for its registry; say what has none.

    With the Docker engine reachable, each cache's storage is read through its
    container, so a held blob is not even asked for.
    """
    try:
        client = dockerapi.connect()
    except OpsError as error:
        client = None
        print(f"{error.line()}: checking what the caches hold through their API instead", file=err)
    targets = {
        mirror.host: WarmTarget(
            f"http://127.0.0.1:{mirror.port}", f"{mirror.host} cache", _container_storage(client, settings.cache_name(mirror))
        )
        for mirror in settings.mirrors
    }
    push_hosts = {settings.push_host, f"127.0.0.1:{settings.push_port}"}
    for job in jobs:
        if job.ref is None:
            continue
        host = job.ref.registry
        if host in push_hosts:
            job.skipped = "lives in the push registry; nothing to warm"
        elif host in targets:
            job.target = targets[host]
        else:
            entry = host if host in DEFAULT_CACHE_PORTS else f"{host}={FIRST_SUGGESTED_PORT}"
            fix = f"{settings.add_mirror_command(entry)}, then pulumi up"
            job.error = f"no cache for {host} (fix: add {host} to mirrors: {fix})"


def _container_storage(client: Any, name: str) -> StorageReader | None:
    if client is None:
        return None
    import docker  # type: ignore[import-untyped]

    try:
        return ContainerStorage(client.containers.get(name))
    except docker.errors.DockerException:
        return None


def run_warm(
    jobs: list[ImageJob], *, jobs_in_parallel: int, platform: str | None, timeout: float, out: TextIO, err: TextIO
) -> int:
    """Warm ``jobs`` (progress on ``err``, the summary on ``out``); the exit status: 1 when any image failed."""
    warmer = Warmer(jobs=jobs_in_parallel, platforms=parse_platforms(platform), timeout=timeout)
    try:
        result = warmer.run(jobs, err)
    finally:
        warmer.close()
    summarise(result, out)
    return 1 if result.failed else 0
