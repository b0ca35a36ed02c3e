"""The scenarios: who pulls the image set, through what, and what it cost.

Every server listens on 127.0.0.1. Topology::

    containerd (ctr) --hosts.toml--> caches (one per registry host, proxy) --> relay (link model) --> upstream
                     \\--(no cache)-----------------------------------------------> relay ------------> upstream
                     \\--(local limit)-------------------------------------------------------------------> upstream

The upstream is a plain registry holding the image set (every registry host's
repositories side by side), standing in for Docker Hub, quay.io and the rest
behind one internet link. The relay counts what crosses that link: bytes,
manifest GETs (what Docker Hub counts as pulls), manifest HEADs (not counted)
and blob GETs, per (repository, blob).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.imageset import ImageSet
from bench.nodes import Node, NodePull, PullError, guard_env_proxy, pull_concurrently, start_nodes, stop_nodes
from bench.warm import blob_files, run_product_warm, wait_for_links, warm_by_prefetch
from localdev.render import render_cache_env, render_hosts_toml, render_node_hosts
from localdev.settings import REGISTRY_API_PORT, Settings, parse_settings
from tests.harness.images import SyntheticImage, push_image
from tests.harness.net import free_port
from tests.harness.registry import RegistryProcess
from tests.harness.relay import HttpRelay, RelayedRequest


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    nodes: int
    description: str


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("local", "plain local registry (limit)", 1,
             "One node pulls the set straight from a plain registry on this machine: no link model, no proxy. "
             "The physical limit of a pull here."),
    Scenario("no_cache", "no cache", 1,
             "One node pulls the set from the upstream through the link (what a node does without localdev)."),
    Scenario("cold", "cold cache", 1,
             "One node pulls the set through empty caches; the caches fetch everything through the link."),
    Scenario("warm", "warm cache", 1,
             "A fresh node pulls the set through the caches that already hold it; the upstream is online."),
    Scenario("warm_offline", "warm cache, upstream down", 1,
             "As warm cache, with the link refusing every connection (laptop offline)."),
    Scenario("three_cold", "3 nodes, cold cache", 3,
             "Three fresh nodes pull the set at the same time through empty caches."),
    Scenario("three_warm", "3 nodes, warm cache", 3,
             "Three fresh nodes pull the set at the same time through the caches the previous scenario filled."),
    Scenario("up_order", "3 nodes, pulumi up order", 3,
             "The product's order: empty caches, then the warm step exactly as `pulumi up` runs it (its script, "
             "its environment), then three fresh nodes pull the set at the same time."),
    Scenario("up_order_one", "1 node, pulumi up order", 1,
             "As `up_order` with one node: what the warm step costs a single-node cluster."),
    Scenario("three_warm_first_prefetch", "3 nodes, prefetch first (not the product's)", 3,
             "Not run by default. Empty caches are made to fetch every blob once by requests dropped after the "
             "headers (bench/warm.py), then three nodes pull. Works only on distribution 2.8, whose background "
             "store goes on after the client hangs up; 3.x stores nothing this way. The product does not use it."),
)
SCENARIO_KEYS = tuple(s.key for s in SCENARIOS)
#: What runs without --scenarios: everything but the method the product does not use.
DEFAULT_KEYS = tuple(k for k in SCENARIO_KEYS if k != "three_warm_first_prefetch")
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
    scenarios: tuple[str, ...] = DEFAULT_KEYS
    keep: bool = False
    registry_bin: str | None = None
    """The distribution binary every registry process runs (None: Debian's ``docker-registry`` on PATH)."""
    log: Callable[[str], None] = print


def _blob_pair(path: str) -> tuple[str, str] | None:
    """(repository, digest) of a ``/v2/<repo>/blobs/<digest>`` path, else None."""
    match = _BLOB_PATH.match(path.split("?", 1)[0])
    return (match["repo"], match["digest"]) if match else None


_BLOB_PATH = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")


def upstream_stats(records: Sequence[RelayedRequest]) -> dict[str, int]:
    """What the relay saw, by kind of request. Bytes are response bytes, headers included.

    ``blob_get_pairs`` counts the distinct (repository, blob) pairs GET upstream
    and ``max_gets_per_pair`` the most GETs any one pair got: 1 means each blob
    crossed once per repository that asked for it.
    """
    stats = {
        "bytes": 0,
        "blob_bytes": 0,
        "manifest_bytes": 0,
        "manifest_gets": 0,
        "manifest_heads": 0,
        "blob_gets": 0,
        "blob_heads": 0,
        "other_requests": 0,
        "blob_get_pairs": 0,
        "max_gets_per_pair": 0,
    }
    per_pair: Counter[tuple[str, str]] = Counter()
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
                pair = _blob_pair(rec.path)
                if pair is not None:
                    per_pair[pair] += 1
            elif rec.method == "HEAD":
                stats["blob_heads"] += 1
            else:
                stats["other_requests"] += 1
        else:
            stats["other_requests"] += 1
    stats["blob_get_pairs"] = len(per_pair)
    stats["max_gets_per_pair"] = max(per_pair.values(), default=0)
    return stats


def max_stats(parts: Sequence[dict[str, int]]) -> dict[str, int]:
    return {key: max(p[key] for p in parts) for key in parts[0]}


def node_hosts_files(settings: Settings, cache_urls: Mapping[str, str]) -> dict[str, str]:
    """The nodes' hosts.toml files from ``render_node_hosts``, with one change.

    The only deviation from what the program writes into kind nodes: each
    cache's container alias (``http://<cluster>-cache-<host>:5000``, resolvable
    on the kind network) is replaced by that cache's loopback URL.
    """
    files = render_node_hosts(settings)
    for mirror in settings.mirrors:
        alias = f"http://{settings.cache_name(mirror)}:{REGISTRY_API_PORT}"
        rel = f"{mirror.host}/hosts.toml"
        if files[rel].count(alias) != 1:
            raise RuntimeError(f"render_node_hosts no longer names the cache as {alias}:\n{files[rel]}")
        files[rel] = files[rel].replace(alias, cache_urls[mirror.host])
    return files


def write_tree(directory: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


Caches = dict[str, RegistryProcess]
"""One pull-through cache per registry host of the set, as the product runs them."""


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

    def registry(self, name: str, env: Mapping[str, str] | None = None, port: int | None = None) -> RegistryProcess:
        return RegistryProcess(self.workdir, name, env=env, port=port, binary=self.opts.registry_bin)

    def setup(self) -> None:
        self.say(f"upstream: pushing {len(self.images.images)} images, {self.images.unique_bytes / 1e6:.1f} MB distinct")
        self.upstream = self.registry("upstream").start()
        self._cleanup.append(self.upstream.stop)
        with httpx.Client(trust_env=False, timeout=600.0) as client:
            for image in self.images.images:
                push_image(self.upstream.url, image, client=client)
        latency_s = self.opts.latency_ms / 1000
        self.relay = HttpRelay(self.upstream.host, bandwidth_bps=self.bandwidth_bps, latency_s=latency_s).start()
        self._cleanup.append(self.relay.stop)
        # The product's settings: a cache per registry host of the set, each on its own loopback port and
        # pulling from the relay (one upstream holds every host's repositories, behind one link).
        mirrors = [f"{host}={free_port()}={self.relay.url}" for host in self.images.registries]
        self.settings = parse_settings({"mirrors": mirrors})

    def teardown(self) -> None:
        for step in reversed(self._cleanup):
            with contextlib.suppress(Exception):
                step()
        self._cleanup.clear()

    def new_caches(self, name: str) -> Caches:
        """Empty pull-through caches, each with the environment the product gives its container."""
        assert self.settings is not None and self.relay is not None
        self.relay.mode = "pass"  # 2.8 and 3.x exit at start if their upstream is unreachable
        caches: Caches = {}
        for mirror in self.settings.mirrors:
            env = render_cache_env(self.settings, mirror)
            cache = self.registry(f"{name}-{mirror.slug}", env=env, port=mirror.port).start()
            self._cleanup.append(cache.stop)
            caches[mirror.host] = cache
        return caches

    def drop_caches(self, caches: Caches) -> None:
        for cache in caches.values():
            cache.stop()
            if not self.opts.keep:
                shutil.rmtree(cache.dir, ignore_errors=True)

    def images_of(self, host: str) -> list[SyntheticImage]:
        return [image for spec, image in zip(self.images.specs, self.images.images, strict=True) if spec.registry == host]

    def settle(self, caches: Caches | None, idle_s: float = 1.0) -> float:
        """Wait until the caches stored every blob and the link went quiet; return seconds waited.

        distribution 2.8 keeps fetching in the background after a client got
        its blob (its own copy for the store), so the upstream figures are read
        only after this.
        """
        assert self.relay is not None
        begin = time.monotonic()
        if caches and self.relay.mode == "pass":
            for host, cache in caches.items():
                wait_for_links(blob_files(cache.storage, self.images_of(host)), self.settle_timeout)
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

    def pull_phase(self, label: str, hosts_dir: Path, count: int, caches: Caches | None) -> dict[str, Any]:
        """Fresh nodes pull the set (concurrently if several); measure time and upstream traffic."""
        assert self.relay is not None
        names = [f"{label}-node{i + 1}" for i in range(count)]
        nodes = start_nodes(self.workdir / "nodes", names, hosts_dir, self.opts.snapshotter)
        try:
            self.relay.reset()
            pulls: list[NodePull] = pull_concurrently(nodes, self.images.refs, self.pull_timeout)
            wall = max(p.finished for p in pulls) - min(p.started for p in pulls)
            settle_s = self.settle(caches)
            records = self.relay.records
            self.check_pulled(nodes)
        finally:
            stop_nodes(nodes)
        return {
            "wall_s": round(wall, 3),
            "settle_s": round(settle_s, 3),
            "upstream": upstream_stats(records),
            "nodes": [{"node": p.node, "total_s": round(p.total_s, 3), "images_s": p.images} for p in pulls],
            "_records": records,
        }

    def warm_step(self, how: str, caches: Caches) -> dict[str, Any]:
        """Fill the empty caches before any node pulls; the link's figures are kept apart from the nodes'."""
        assert self.relay is not None and self.settings is not None
        self.relay.reset()
        begin = time.monotonic()
        if how == "product":
            step = run_product_warm(self.settings, {host: c.storage for host, c in caches.items()},
                                    self.settle_timeout * 2)
        else:
            for host, cache in caches.items():
                warm_by_prefetch(cache.url, cache.storage, self.images_of(host), self.settle_timeout)
            step = {"tool": "bench.warm.warm_by_prefetch", "output": ""}
        wall = time.monotonic() - begin
        settle_s = self.settle(caches)
        records = self.relay.records
        return {"how": how, **step, "wall_s": round(wall, 3), "settle_s": round(settle_s, 3),
                "upstream": upstream_stats(records), "_records": records}

    # ------------------------------------------------------------- scenarios
    def run(self) -> list[dict[str, Any]]:
        with self._guard():
            try:
                self.setup()
                return self._run_scenarios()
            finally:
                self.teardown()

    def _record(self, scenario: Scenario, samples: list[dict[str, Any]], caches: Caches | None,
                warm: dict[str, Any] | None = None) -> dict[str, Any]:
        walls = [s["wall_s"] for s in samples]
        upstream = max_stats([s["upstream"] for s in samples])
        node_records = [s.pop("_records") for s in samples]
        # Per-pair figures are recounted over both phases: a pair the warm step and a node both GET counts 2.
        total = upstream_stats([*warm.pop("_records"), *node_records[0]]) if warm else upstream
        total_wall = walls[0] + warm["wall_s"] + warm["settle_s"] if warm else None
        result: dict[str, Any] = {
            "key": scenario.key,
            "title": scenario.title,
            "description": scenario.description,
            "nodes": scenario.nodes,
            "wall_s": round(statistics.median(walls), 3),
            "wall_samples_s": walls,
            "total_wall_s": round(total_wall, 3) if total_wall is not None else None,
            "upstream": upstream,
            "upstream_total": total,
            "upstream_over_image_bytes": round(total["bytes"] / self.images.unique_bytes, 4),
            "link_s": round(total["bytes"] / self.bandwidth_bps, 3),
            "warm_step": warm,
            "samples": samples,
            "cache_metrics": {host: _proxy_metrics(c) for host, c in caches.items()} if caches else None,
        }
        extra = f", warm step {warm['wall_s']:.1f}s (+{warm['settle_s']:.1f}s settling)" if warm else ""
        self.say(
            f"{scenario.title}: {result['wall_s']:.2f}s{extra}; upstream {total['bytes'] / 1e6:.1f} MB "
            f"({result['upstream_over_image_bytes']:.2f}x image bytes), manifest GETs {total['manifest_gets']}, "
            f"HEADs {total['manifest_heads']}, blob GETs {total['blob_gets']} for {total['blob_get_pairs']} "
            f"(repository, blob) pairs"
        )
        return result

    def _run_scenarios(self) -> list[dict[str, Any]]:
        assert self.upstream is not None and self.relay is not None and self.settings is not None
        upstream, relay, settings = self.upstream, self.relay, self.settings
        wanted = set(self.opts.scenarios)
        by_key = {s.key: s for s in SCENARIOS}
        results: list[dict[str, Any]] = []
        hosts = self.workdir / "hosts"

        def run(key: str, hosts_dir: Path, caches: Caches | None) -> None:
            scenario = by_key[key]
            count = self.opts.repeats if key in REPEATED else 1
            runs = f", {count} runs" if count > 1 else ""
            self.say(f"{scenario.title}: {scenario.nodes} node(s) pulling {len(self.images.refs)} images{runs}")
            samples = [self.pull_phase(key, hosts_dir, scenario.nodes, caches) for _ in range(count)]
            results.append(self._record(scenario, samples, caches))

        def caches_for(name: str) -> tuple[Caches, Path]:
            caches = self.new_caches(name)
            urls = {host: cache.url for host, cache in caches.items()}
            return caches, write_tree(hosts / name, node_hosts_files(settings, urls))

        def direct() -> None:
            # containerd 1.6 rejects a hosts.toml with only `server`, so the target is also the one host entry.
            def files(url: str) -> dict[str, str]:
                return {f"{host}/hosts.toml": render_hosts_toml(url, url) for host in self.images.registries}

            if "local" in wanted:
                run("local", write_tree(hosts / "local", files(upstream.url)), None)
            if "no_cache" in wanted:
                run("no_cache", write_tree(hosts / "no_cache", files(relay.url)), None)

        def single() -> None:
            caches, hosts_dir = caches_for("cache-single")
            # warm and warm_offline need the caches filled: the cold scenario does that, so it always runs first.
            run("cold", hosts_dir, caches)
            if "warm" in wanted:
                run("warm", hosts_dir, caches)
            if "warm_offline" in wanted:
                relay.mode = "refuse"
                try:
                    run("warm_offline", hosts_dir, caches)
                finally:
                    relay.mode = "pass"
            self.drop_caches(caches)

        def three() -> None:
            caches, hosts_dir = caches_for("cache-three")
            # three_warm needs the caches filled: the cold scenario does that, so it always runs first.
            run("three_cold", hosts_dir, caches)
            if "three_warm" in wanted:
                run("three_warm", hosts_dir, caches)
            self.drop_caches(caches)

        def warm_first(key: str, how: str) -> None:
            scenario = by_key[key]
            caches, hosts_dir = caches_for(f"cache-{key}")
            self.say(f"{scenario.title}: warm step ({how})")
            warm = self.warm_step(how, caches)
            self.say(f"{scenario.title}: {scenario.nodes} node(s) pulling {len(self.images.refs)} images")
            samples = [self.pull_phase(key, hosts_dir, scenario.nodes, caches)]
            results.append(self._record(scenario, samples, caches, warm=warm))
            self.drop_caches(caches)

        groups: list[tuple[set[str], Callable[[], None]]] = [
            ({"local", "no_cache"}, direct),
            ({"cold", "warm", "warm_offline"}, single),
            ({"three_cold", "three_warm"}, three),
            ({"up_order"}, lambda: warm_first("up_order", "product")),
            ({"up_order_one"}, lambda: warm_first("up_order_one", "product")),
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
                    results.append({"key": key, "title": by_key[key].title, "description": by_key[key].description,
                                    "nodes": by_key[key].nodes, "error": f"{type(exc).__name__}: {exc}"})
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
