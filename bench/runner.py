"""The scenarios: who pulls the image set, through what, and what it cost.

Every server listens on 127.0.0.1. Topology::

    containerd (ctr) --hosts.toml--> cache (docker-registry, proxy) --> relay (link model) --> upstream
                     \\--(no cache)--------------------------------------> relay ------------> upstream
                     \\--(local limit)----------------------------------------------------------> upstream

The upstream is a plain ``docker-registry`` holding the image set, standing in
for Docker Hub. The relay counts what crosses "the internet": bytes, manifest
GETs (what Docker Hub counts as pulls), manifest HEADs (not counted) and blob GETs.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.imageset import ImageSet
from bench.nodes import Node, NodePull, PullError, guard_env_proxy, pull_concurrently, start_nodes, stop_nodes
from bench.warm import blob_files, program_warm_command, run_program_warm, wait_for_links, warm_by_prefetch, warm_by_pull
from localdev.render import render_cache_env, render_hosts_toml, render_node_hosts
from localdev.settings import REGISTRY_API_PORT, Settings, parse_settings
from tests.harness.images import push_image
from tests.harness.registry import RegistryProcess
from tests.harness.relay import HttpRelay, RelayedRequest


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    nodes: int
    description: str


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "local",
        "plain local registry (limit)",
        1,
        "One node pulls the set straight from a plain registry on this machine: no link model, no proxy. "
        "The physical limit of a pull here.",
    ),
    Scenario(
        "no_cache",
        "no cache",
        1,
        "One node pulls the set from the upstream through the link (what a node does without localdev).",
    ),
    Scenario(
        "cold", "cold cache", 1, "One node pulls the set through an empty cache; the cache fetches everything through the link."
    ),
    Scenario(
        "warm", "warm cache", 1, "A fresh node pulls the set through the cache that already holds it; the upstream is online."
    ),
    Scenario(
        "warm_offline", "warm cache, upstream down", 1, "As warm cache, with the link refusing every connection (laptop offline)."
    ),
    Scenario("three_cold", "3 nodes, cold cache", 3, "Three fresh nodes pull the set at the same time through an empty cache."),
    Scenario(
        "three_warm",
        "3 nodes, warm cache",
        3,
        "Three fresh nodes pull the set at the same time through the cache the previous scenario filled.",
    ),
    Scenario(
        "three_warm_first_pull",
        "3 nodes, warm first (warm CLI)",
        3,
        "Through an empty cache: first the program's `localdev warm` pulls the set through the "
        "cache (the warm step), then three fresh nodes pull it at the same time.",
    ),
    Scenario(
        "three_warm_first_prefetch",
        "3 nodes, warm first (prefetch)",
        3,
        "Through an empty cache: first the cache is made to fetch every blob once (requests dropped after the "
        "headers, the cache's own background store completes; see bench/warm.py), then three fresh nodes pull.",
    ),
)
SCENARIO_KEYS = tuple(s.key for s in SCENARIOS)
#: Scenarios that move nothing big over the link; they are repeated and their median reported.
REPEATED = frozenset({"local", "warm", "warm_offline", "three_warm"})


@dataclass
class Options:
    scale: float
    bandwidth_mbit: float
    latency_ms: float
    repeats: int
    snapshotter: str
    workdir: Path
    scenarios: tuple[str, ...] = SCENARIO_KEYS
    keep: bool = False
    log: Callable[[str], None] = print


def upstream_stats(records: Sequence[RelayedRequest]) -> dict[str, int]:
    """What the relay saw, by kind of request. Bytes are response bytes, headers included."""
    stats = {
        "bytes": 0,
        "blob_bytes": 0,
        "manifest_bytes": 0,
        "manifest_gets": 0,
        "manifest_heads": 0,
        "blob_gets": 0,
        "blob_heads": 0,
        "other_requests": 0,
    }
    for rec in records:
        stats["bytes"] += rec.bytes_down
        if "/manifests/" in rec.path:
            stats["manifest_bytes"] += rec.bytes_down
            if rec.method == "GET":
                stats["manifest_gets"] += 1
            elif rec.method == "HEAD":
                stats["manifest_heads"] += 1
            else:
                stats["other_requests"] += 1
        elif "/blobs/sha256:" in rec.path:
            stats["blob_bytes"] += rec.bytes_down
            if rec.method == "GET":
                stats["blob_gets"] += 1
            elif rec.method == "HEAD":
                stats["blob_heads"] += 1
            else:
                stats["other_requests"] += 1
        else:
            stats["other_requests"] += 1
    return stats


def sum_stats(*parts: dict[str, int]) -> dict[str, int]:
    return {key: sum(p[key] for p in parts) for key in parts[0]}


def max_stats(parts: Sequence[dict[str, int]]) -> dict[str, int]:
    return {key: max(p[key] for p in parts) for key in parts[0]}


def node_hosts_files(settings: Settings, cache_url: str) -> dict[str, str]:
    """The nodes' hosts.toml files from ``render_node_hosts``, with one change.

    The only deviation from what the program writes into kind nodes: the cache's
    container alias (``http://<cluster>-cache-docker-io:5000``, resolvable on the
    kind network) is replaced by the cache's loopback URL.
    """
    mirror = settings.mirrors[0]
    alias = f"http://{settings.cache_name(mirror)}:{REGISTRY_API_PORT}"
    files = render_node_hosts(settings)
    docker = files[f"{mirror.host}/hosts.toml"]
    if docker.count(alias) != 1:
        raise RuntimeError(f"render_node_hosts no longer names the cache as {alias}:\n{docker}")
    files[f"{mirror.host}/hosts.toml"] = docker.replace(alias, cache_url)
    return files


def write_tree(directory: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


class Bench:
    def __init__(self, opts: Options, image_set: ImageSet) -> None:
        self.opts = opts
        self.images = image_set
        self.workdir = opts.workdir
        self.bandwidth_bps = opts.bandwidth_mbit * 1_000_000 / 8
        self.log = opts.log
        self.t0 = time.monotonic()
        self._cleanup: list[Callable[[], object]] = []
        self.upstream: RegistryProcess | None = None
        self.relay: HttpRelay | None = None
        self.settings: Settings | None = None
        # A pull for the set should take about set_bytes / bandwidth; allow far more, but not forever.
        link_seconds = image_set.per_repo_bytes / self.bandwidth_bps
        self.pull_timeout = 120 + 12 * link_seconds
        self.settle_timeout = 120 + 12 * link_seconds

    # --------------------------------------------------------------- helpers
    def say(self, text: str) -> None:
        self.log(f"[{time.monotonic() - self.t0:7.1f}s] {text}")

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Hold a closed loopback port and point the proxy variables at it (see guard_env_proxy)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        guard_env_proxy(sock.getsockname()[1])
        try:
            yield
        finally:
            sock.close()

    def setup(self) -> None:
        self.say(f"upstream: pushing {len(self.images.images)} images, {self.images.unique_bytes / 1e6:.1f} MB distinct")
        self.upstream = RegistryProcess(self.workdir, "upstream").start()
        self._cleanup.append(self.upstream.stop)
        with httpx.Client(trust_env=False, timeout=600.0) as client:
            for image in self.images.images:
                push_image(self.upstream.url, image, client=client)
        latency_s = self.opts.latency_ms / 1000
        self.relay = HttpRelay(self.upstream.host, bandwidth_bps=self.bandwidth_bps, latency_s=latency_s).start()
        self._cleanup.append(self.relay.stop)
        # The product's settings, with the docker.io cache's upstream pointed at the relay.
        self.settings = parse_settings({"mirrors": [f"docker.io=5000={self.relay.url}"]})

    def teardown(self) -> None:
        for step in reversed(self._cleanup):
            with contextlib.suppress(Exception):
                step()
        self._cleanup.clear()

    def new_cache(self, name: str) -> RegistryProcess:
        """A pull-through cache with the environment the product gives its container."""
        assert self.settings is not None and self.relay is not None
        self.relay.mode = "pass"  # 2.8 panics at start if its upstream is unreachable (distribution #4038)
        env = render_cache_env(self.settings, self.settings.mirrors[0])
        cache = RegistryProcess(self.workdir, name, env=env).start()
        self._cleanup.append(cache.stop)
        return cache

    def drop_cache(self, cache: RegistryProcess) -> None:
        cache.stop()
        if not self.opts.keep:
            shutil.rmtree(cache.dir, ignore_errors=True)

    def settle(self, cache: RegistryProcess | None, idle_s: float = 1.0) -> float:
        """Wait until the cache stored every blob and the link went quiet; return seconds waited.

        distribution keeps fetching in the background after a client got its
        blob (its own copy for the store), so the upstream figures are read only
        after this.
        """
        assert self.relay is not None
        begin = time.monotonic()
        if cache is not None and self.relay.mode == "pass":
            wait_for_links(blob_files(cache.storage, self.images.images), self.settle_timeout)
        last, since = self.relay.bytes_down, time.monotonic()
        deadline = begin + self.settle_timeout
        while time.monotonic() - since < idle_s:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the link did not go quiet within {self.settle_timeout:.0f}s")
            time.sleep(0.1)
            now = self.relay.bytes_down
            if now != last:
                last, since = now, time.monotonic()
        return time.monotonic() - begin - idle_s

    def check_pulled(self, nodes: Sequence[Node]) -> None:
        """Every node holds every image of the set at its exact manifest digest."""
        expected = {spec.ref: image.digest for spec, image in zip(self.images.specs, self.images.images, strict=True)}
        for node in nodes:
            got = node.image_digests()
            wrong = {ref: got.get(ref) for ref, digest in expected.items() if got.get(ref) != digest}
            if wrong:
                raise PullError(f"node {node.name} holds wrong or missing images: {wrong}")

    def pull_phase(self, label: str, hosts_dir: Path, count: int, cache: RegistryProcess | None) -> dict[str, Any]:
        """Fresh nodes pull the set (concurrently if several); measure time and upstream traffic."""
        assert self.relay is not None
        names = [f"{label}-node{i + 1}" for i in range(count)]
        nodes = start_nodes(self.workdir / "nodes", names, hosts_dir, self.opts.snapshotter)
        try:
            self.relay.reset()
            pulls: list[NodePull] = pull_concurrently(nodes, self.images.refs, self.pull_timeout)
            wall = max(p.finished for p in pulls) - min(p.started for p in pulls)
            settle_s = self.settle(cache)
            stats = upstream_stats(self.relay.records)
            self.check_pulled(nodes)
        finally:
            stop_nodes(nodes)
        return {
            "wall_s": round(wall, 3),
            "settle_s": round(settle_s, 3),
            "upstream": stats,
            "nodes": [{"node": p.node, "total_s": round(p.total_s, 3), "images_s": p.images} for p in pulls],
        }

    def warm_step(self, how: str, cache: RegistryProcess) -> dict[str, Any]:
        assert self.relay is not None
        self.relay.reset()
        begin = time.monotonic()
        summary = ""
        if how == "pull":
            command = program_warm_command(cache.url, cache.storage, self.images.refs)
            if command is not None:
                tool = "localdev warm --registry CACHE --storage DIR --no-manifests REFS..."
                summary = run_program_warm(command, self.settle_timeout * 2)
            else:
                tool = "bench.warm.warm_by_pull (the program has no warm command)"
                warm_by_pull(cache.url, self.images.images)
        else:
            tool = "bench.warm.warm_by_prefetch"
            warm_by_prefetch(cache.url, cache.storage, self.images.images, self.settle_timeout)
        wall = time.monotonic() - begin
        settle_s = self.settle(cache)
        stats = upstream_stats(self.relay.records)
        return {
            "how": how,
            "tool": tool,
            "output": summary,
            "wall_s": round(wall, 3),
            "settle_s": round(settle_s, 3),
            "upstream": stats,
        }

    # ------------------------------------------------------------- scenarios
    def run(self) -> list[dict[str, Any]]:
        with self._guard():
            try:
                self.setup()
                return self._run_scenarios()
            finally:
                self.teardown()

    def _record(
        self, scenario: Scenario, samples: list[dict[str, Any]], cache: RegistryProcess | None, warm: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        walls = [s["wall_s"] for s in samples]
        upstream = max_stats([s["upstream"] for s in samples])
        total = sum_stats(upstream, warm["upstream"]) if warm else upstream
        result: dict[str, Any] = {
            "key": scenario.key,
            "title": scenario.title,
            "description": scenario.description,
            "nodes": scenario.nodes,
            "wall_s": round(statistics.median(walls), 3),
            "wall_samples_s": walls,
            "upstream": upstream,
            "upstream_total": total,
            "upstream_over_image_bytes": round(total["bytes"] / self.images.unique_bytes, 4),
            "warm_step": warm,
            "samples": samples,
            "cache_metrics": _proxy_metrics(cache) if cache is not None else None,
        }
        extra = f", warm step {warm['wall_s']:.1f}s" if warm else ""
        self.say(
            f"{scenario.title}: {result['wall_s']:.2f}s{extra}; upstream {total['bytes'] / 1e6:.1f} MB "
            f"({result['upstream_over_image_bytes']:.2f}x image bytes), manifest GETs {total['manifest_gets']}, "
            f"HEADs {total['manifest_heads']}, blob GETs {total['blob_gets']}"
        )
        return result

    def _run_scenarios(self) -> list[dict[str, Any]]:
        assert self.upstream is not None and self.relay is not None and self.settings is not None
        upstream, relay, settings = self.upstream, self.relay, self.settings
        wanted = set(self.opts.scenarios)
        by_key = {s.key: s for s in SCENARIOS}
        results: list[dict[str, Any]] = []
        hosts = self.workdir / "hosts"

        def run(key: str, hosts_dir: Path, cache: RegistryProcess | None) -> None:
            scenario = by_key[key]
            count = self.opts.repeats if key in REPEATED else 1
            runs = f", {count} runs" if count > 1 else ""
            self.say(f"{scenario.title}: {scenario.nodes} node(s) pulling {len(self.images.refs)} images{runs}")
            samples = [self.pull_phase(key, hosts_dir, scenario.nodes, cache) for _ in range(count)]
            results.append(self._record(scenario, samples, cache))

        def direct() -> None:
            if "local" in wanted:
                files = {"docker.io/hosts.toml": render_hosts_toml(upstream.url, upstream.url)}
                run("local", write_tree(hosts / "local", files), None)
            if "no_cache" in wanted:
                # containerd 1.6 rejects a hosts.toml with only `server`, so the relay is also the one host entry.
                files = {"docker.io/hosts.toml": render_hosts_toml(relay.url, relay.url)}
                run("no_cache", write_tree(hosts / "no_cache", files), None)

        def single() -> None:
            cache = self.new_cache("cache-single")
            hosts_dir = write_tree(hosts / "cache-single", node_hosts_files(settings, cache.url))
            # warm and warm_offline need the cache filled: the cold scenario does that, so it always runs first.
            run("cold", hosts_dir, cache)
            if "warm" in wanted:
                run("warm", hosts_dir, cache)
            if "warm_offline" in wanted:
                relay.mode = "refuse"
                try:
                    run("warm_offline", hosts_dir, cache)
                finally:
                    relay.mode = "pass"
            self.drop_cache(cache)

        def three() -> None:
            cache = self.new_cache("cache-three")
            hosts_dir = write_tree(hosts / "cache-three", node_hosts_files(settings, cache.url))
            # three_warm needs the cache filled: the cold scenario does that, so it always runs first.
            run("three_cold", hosts_dir, cache)
            if "three_warm" in wanted:
                run("three_warm", hosts_dir, cache)
            self.drop_cache(cache)

        def warm_first(key: str, how: str) -> None:
            scenario = by_key[key]
            cache = self.new_cache(f"cache-{how}")
            hosts_dir = write_tree(hosts / f"cache-{how}", node_hosts_files(settings, cache.url))
            self.say(f"{scenario.title}: warm step ({how})")
            warm = self.warm_step(how, cache)
            self.say(f"{scenario.title}: {scenario.nodes} node(s) pulling {len(self.images.refs)} images")
            samples = [self.pull_phase(key, hosts_dir, scenario.nodes, cache)]
            results.append(self._record(scenario, samples, cache, warm=warm))
            self.drop_cache(cache)

        groups: list[tuple[set[str], Callable[[], None]]] = [
            ({"local", "no_cache"}, direct),
            ({"cold", "warm", "warm_offline"}, single),
            ({"three_cold", "three_warm"}, three),
            ({"three_warm_first_pull"}, lambda: warm_first("three_warm_first_pull", "pull")),
            ({"three_warm_first_prefetch"}, lambda: warm_first("three_warm_first_prefetch", "prefetch")),
        ]
        for keys, group in groups:
            if not keys & wanted:
                continue
            try:
                group()
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not lose the others' figures
                done = {r["key"] for r in results}
                for key in sorted(keys & wanted - done, key=SCENARIO_KEYS.index):
                    self.say(f"{by_key[key].title}: ERROR {type(exc).__name__}: {exc}")
                    results.append(
                        {
                            "key": key,
                            "title": by_key[key].title,
                            "description": by_key[key].description,
                            "nodes": by_key[key].nodes,
                            "error": f"{type(exc).__name__}: {exc}",
                        }
                    )
                relay.mode = "pass"
        return sorted(results, key=lambda r: SCENARIO_KEYS.index(r["key"]))


def _proxy_metrics(cache: RegistryProcess) -> dict[str, Any] | None:
    """distribution's own proxy counters (expvar ``registry.proxy``); in 2.8 ``Hits`` always equals ``Requests``."""
    if not cache.running or cache.debug_url is None:
        return None
    try:
        proxy = cache.debug_vars().get("registry", {}).get("proxy")
    except (httpx.HTTPError, ValueError):
        return None
    return proxy if isinstance(proxy, dict) else None
