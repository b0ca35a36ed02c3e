"""Stand-ins for kind nodes: one real containerd each, pulling with ``ctr``.

Every node gets a fresh containerd root, so its content store is empty and
every pull really transfers. The daemon's config carries the product's
containerd patch (``render_containerd_patch``), with ``/etc/containerd/certs.d``
pointed at the node's hosts directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localdev.render import CERTS_DIR, render_containerd_patch
from tests.harness.containerd import Containerd

#: Like kubelet's CRI default (``max_concurrent_downloads = 3``); ctr's own default is unlimited.
MAX_CONCURRENT_DOWNLOADS = 3
#: Text that would show a pull leaving loopback for the real Docker Hub.
REAL_DOCKER_HUB = "registry-1.docker.io"


class PullError(RuntimeError):
    """A node failed to pull an image (the benchmark stops: its figures would be wrong)."""


def default_snapshotter() -> str:
    """``overlayfs`` (what kind nodes use) where the kernel has it, else ``native``."""
    try:
        with open("/proc/filesystems") as fh:
            return "overlayfs" if any(line.split()[-1] == "overlay" for line in fh if line.strip()) else "native"
    except OSError:
        return "native"


@dataclass
class NodePull:
    """What one node did in one scenario."""

    node: str
    started: float
    finished: float = 0.0
    images: dict[str, float] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.finished - self.started


class Node:
    """A containerd daemon standing in for one kind node."""

    def __init__(self, workdir: Path, name: str, hosts_dir: Path, snapshotter: str) -> None:
        self.name = name
        self.dir = Path(workdir) / name
        self.hosts_dir = hosts_dir
        self.snapshotter = snapshotter
        patch = render_containerd_patch().replace(CERTS_DIR, str(hosts_dir))
        self.containerd = Containerd(self.dir, config_patch=patch, cri_snapshotter=snapshotter)

    def start(self) -> Node:
        self.containerd.start(timeout=30)
        error = self.containerd.cri_error()
        if error is not None:
            raise PullError(f"node {self.name}: containerd refused the node config patch: {error}")
        return self

    def pull(self, ref: str, timeout: float) -> float:
        """``ctr images pull`` one reference; return its wall time in seconds."""
        begin = time.monotonic()
        try:
            res = self.containerd.ctr(
                "images",
                "pull",
                "--snapshotter",
                self.snapshotter,
                "--max-concurrent-downloads",
                str(MAX_CONCURRENT_DOWNLOADS),
                "--hosts-dir",
                str(self.hosts_dir),
                ref,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise PullError(f"node {self.name}: pulling {ref} took longer than {timeout:.0f}s") from exc
        elapsed = time.monotonic() - begin
        if REAL_DOCKER_HUB in res.stderr:
            raise PullError(f"node {self.name}: pulling {ref} tried the real Docker Hub:\n{res.stderr[-2000:]}")
        if res.returncode != 0:
            raise PullError(f"node {self.name}: ctr images pull {ref} failed ({res.returncode}):\n{res.stderr[-2000:]}")
        return elapsed

    def pull_all(self, refs: Sequence[str], timeout_each: float) -> NodePull:
        """Pull ``refs`` one after another, as kubelet does by default (serialized image pulls)."""
        record = NodePull(node=self.name, started=time.monotonic())
        for ref in refs:
            record.images[ref] = round(self.pull(ref, timeout_each), 4)
        record.finished = time.monotonic()
        return record

    def image_digests(self) -> dict[str, str]:
        return self.containerd.image_refs()

    def stop(self) -> None:
        """Stop containerd and delete its root: the next node starts with an empty content store."""
        self.containerd.stop()
        _unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def _unmount_under(path: Path) -> None:
    """Unmount anything a killed unpack left mounted below ``path`` (deepest first)."""
    prefix = str(path.resolve()) + "/"
    try:
        with open("/proc/mounts") as fh:
            mounts = [line.split()[1] for line in fh]
    except OSError:
        return
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["umount", "-l", mount], check=False, timeout=10, capture_output=True)


def start_nodes(workdir: Path, names: Sequence[str], hosts_dir: Path, snapshotter: str) -> list[Node]:
    """Start several nodes (in parallel: containerd takes about a second to come up)."""
    nodes = [Node(workdir, name, hosts_dir, snapshotter) for name in names]
    errors: list[BaseException] = []

    def run(node: Node) -> None:
        try:
            node.start()
        except BaseException as exc:  # reported below, after every thread ends
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(node,), daemon=True) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors or any(thread.is_alive() for thread in threads):
        stop_nodes(nodes)
        raise errors[0] if errors else PullError("containerd did not start within 60s")
    return nodes


def stop_nodes(nodes: Sequence[Node]) -> None:
    for node in nodes:
        with contextlib.suppress(Exception):
            node.stop()


def pull_concurrently(nodes: Sequence[Node], refs: Sequence[str], timeout_each: float) -> list[NodePull]:
    """Every node pulls ``refs`` at the same time (released together by a barrier)."""
    barrier = threading.Barrier(len(nodes))
    results: dict[str, NodePull] = {}
    errors: list[BaseException] = []

    def run(node: Node) -> None:
        try:
            barrier.wait(timeout=30)
            results[node.name] = node.pull_all(refs, timeout_each)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(node,), daemon=True) for node in nodes]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_each * len(refs) + 60
    for thread in threads:
        thread.join(timeout=max(1.0, deadline - time.monotonic()))
    if errors:
        raise errors[0]
    if len(results) != len(nodes):
        raise PullError("a node did not finish its pulls in time")
    return [results[node.name] for node in nodes]


def guard_env_proxy(port: int) -> None:
    """Send any request for a non-loopback host to a closed loopback port.

    containerd falls back to the real Docker Hub if a hosts.toml is unusable;
    with these variables such a request fails at once on 127.0.0.1 instead of
    leaving the machine. Loopback addresses are never proxied by Go's clients.
    """
    proxy = f"http://127.0.0.1:{port}"
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ[key] = proxy
    for key in ("NO_PROXY", "no_proxy"):
        os.environ[key] = "127.0.0.1,localhost"
