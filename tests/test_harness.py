"""End-to-end checks of the test harness itself, with the real binaries."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.harness.containerd import CRI_PLUGIN, write_hosts_toml
from tests.harness.images import (
    DigestMismatchError,
    PushError,
    make_image,
    pull_manifest_and_blobs,
    push_image,
    push_with_skopeo,
)
from tests.harness.pytest_plugin import ContainerdFactory, RegistryFactory, RelayFactory
from tests.harness.registry import RegistryProcess, stored_blob
from tests.harness.relay import HttpRelay, _RequestParser

CONFIG_PATH_ONLY = '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{dir}"\n'
MIRRORS_TOO = '[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["http://x:5000"]\n'
DOCKER_IO_HOSTS_TOML = """server = "https://registry-1.docker.io"

[host."http://{host}"]
  capabilities = ["pull", "resolve"]
"""


def _client(timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=timeout)


def _proxy(make_registry: RegistryFactory, relay: HttpRelay, name: str = "proxy") -> RegistryProcess:
    return make_registry(name, env={"REGISTRY_PROXY_REMOTEURL": relay.url})


# ------------------------------------------------------------------- images
def test_make_image_is_deterministic_and_valid() -> None:
    a = make_image("library/testimg", "1", [100, 2000], seed=7)
    b = make_image("library/testimg", "1", [100, 2000], seed=7)
    c = make_image("library/testimg", "1", [100, 2000], seed=8)
    assert a == b
    assert a.digest != c.digest
    shared = make_image("other/img", "2", [300], seed=9, shared_layers=a.layers[:1])
    assert shared.layers[0] == a.layers[0]
    assert len(shared.layers) == 2
    assert a.total_size == sum(len(x) for x in a.layers) + len(a.config) + len(a.manifest)
    assert a.digest.startswith("sha256:") and len(a.digest) == 71


def test_push_and_verified_pull_roundtrip(upstream_registry: RegistryProcess) -> None:
    image = make_image("library/testimg", "1", [1000, 300_000], seed=1)
    push_image(upstream_registry.url, image)
    push_image(upstream_registry.url, image)  # second push: every blob skipped by HEAD
    got = pull_manifest_and_blobs(upstream_registry.url, image.repo, image.tag)
    assert got["digest"] == image.digest
    assert got["blobs"] == image.blobs
    by_digest = pull_manifest_and_blobs(upstream_registry.url, image.repo, image.digest)
    assert by_digest["manifest"] == image.manifest

    # The verifier catches a corrupt blob (same size, one byte flipped on disk).
    path = stored_blob(upstream_registry.storage, image.layer_digests[-1])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError):
        pull_manifest_and_blobs(upstream_registry.url, image.repo, image.tag)


def test_skopeo_push_to_plain_registry(upstream_registry: RegistryProcess, tmp_path: Path, skopeo_binary: str) -> None:
    image = make_image("team/app", "v1", [2000, 50_000], seed=2)
    result = push_with_skopeo(upstream_registry.host, image, tmp_path)
    assert result.returncode == 0, result.stderr
    got = pull_manifest_and_blobs(upstream_registry.url, image.repo, image.tag)
    assert got["digest"] == image.digest  # skopeo kept the manifest byte for byte
    assert got["blobs"] == image.blobs


def test_registry_env_override_restart_and_kill(make_registry: RegistryFactory) -> None:
    # The env a container would get: container-internal address and storage.
    env = {
        "REGISTRY_HTTP_ADDR": "0.0.0.0:5000",
        "REGISTRY_HTTP_DEBUG_ADDR": "0.0.0.0:5001",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/var/lib/registry",
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
    }
    registry = make_registry("forced", env=env)
    assert registry.debug_url is not None  # a debug port was chosen for the env's debug addr
    with _client() as client:
        assert client.get(f"{registry.debug_url}/debug/vars").status_code == 200
    image = make_image("library/testimg", "1", [5000], seed=3)
    push_image(registry.url, image)
    assert stored_blob(registry.storage, image.layer_digests[0]).exists()
    port = registry.port
    assert registry.kill() == -9
    registry.restart()
    assert registry.port == port
    assert pull_manifest_and_blobs(registry.url, image.repo, image.tag)["digest"] == image.digest
    assert registry.log_text().count("--- harness: start") == 2


# -------------------------------------------------------------- proxy mode
def test_proxy_cold_then_warm_pull_counts_upstream_requests(
    upstream_registry: RegistryProcess, make_registry: RegistryFactory, relay_factory: RelayFactory
) -> None:
    image = make_image("library/testimg", "1", [1000, 400_000], seed=4)
    push_image(upstream_registry.url, image)
    relay = relay_factory(upstream_registry)
    proxy = _proxy(make_registry, relay)
    relay.reset()

    got = pull_manifest_and_blobs(proxy.url, image.repo, image.tag)
    assert got["blobs"] == image.blobs
    relay.wait_quiet()  # 2.8 stores blobs in the background
    per_blob = Counter(p.rsplit("/", 1)[1] for m, p in relay.requests if m == "GET" and "/blobs/sha256:" in p)
    assert set(per_blob) == set(image.blobs), relay.requests
    counts = set(per_blob.values())
    assert len(counts) == 1 and counts <= {1, 2}, f"upstream GETs per missed blob on a cold pull: {dict(per_blob)}"
    print(f"docker-registry cold pull: {counts.pop()} upstream GET(s) per missed blob; {relay.manifest_gets()} manifest GET(s)")
    assert relay.manifest_gets() == 1, relay.requests
    for digest in image.blobs:
        assert stored_blob(proxy.storage, digest).exists()

    relay.reset()
    warm = pull_manifest_and_blobs(proxy.url, image.repo, image.tag)
    assert warm["digest"] == image.digest
    assert relay.blob_gets() == 0, relay.requests
    assert relay.manifest_gets() == 0, relay.requests
    assert relay.bytes_down < 2000, relay.requests  # HEAD (and /v2/ ping) only


def test_proxy_registry_refuses_pushes(
    upstream_registry: RegistryProcess,
    make_registry: RegistryFactory,
    relay_factory: RelayFactory,
    tmp_path: Path,
    skopeo_binary: str,
) -> None:
    proxy = _proxy(make_registry, relay_factory(upstream_registry))
    image = make_image("team/app", "v1", [1000], seed=5)
    with pytest.raises(PushError) as excinfo:
        push_image(proxy.url, image)
    assert excinfo.value.status == 405
    assert "UNSUPPORTED" in str(excinfo.value)
    result = push_with_skopeo(proxy.host, image, tmp_path)
    assert result.returncode != 0
    assert "unsupported" in result.stderr.lower(), result.stderr


def test_proxy_registry_exits_when_upstream_unreachable_at_start(
    upstream_registry: RegistryProcess, make_registry: RegistryFactory, relay_factory: RelayFactory
) -> None:
    relay = relay_factory(upstream_registry, mode="refuse")
    proxy = make_registry("proxy-offline", env={"REGISTRY_PROXY_REMOTEURL": relay.url}, wait=False)
    code = proxy.wait_exit(10)
    assert code is not None and code != 0, proxy.log_tail()
    assert "panic:" in proxy.log_text()
    assert "connection refused" in proxy.log_text()


# --------------------------------------------------------------- containerd
def test_containerd_cri_plugin_loads_with_config_path_only(containerd_factory: ContainerdFactory, tmp_path: Path) -> None:
    daemon = containerd_factory(CONFIG_PATH_ONLY.format(dir=tmp_path / "certs.d"))
    assert daemon.cri_loaded(), daemon.cri_error()
    assert daemon.cri_error() is None
    assert f"failed to load plugin {CRI_PLUGIN}" not in daemon.log_text()


def test_containerd_cri_plugin_fails_with_mirrors_and_config_path(containerd_factory: ContainerdFactory, tmp_path: Path) -> None:
    patch = CONFIG_PATH_ONLY.format(dir=tmp_path / "certs.d") + MIRRORS_TOO
    daemon = containerd_factory(patch)
    assert not daemon.cri_loaded()
    error = daemon.cri_error()
    assert error is not None and "`mirrors` cannot be set when `config_path` is provided" in error
    assert f"failed to load plugin {CRI_PLUGIN}" in daemon.log_text()


def test_containerd_pulls_docker_io_through_loopback_proxy(
    upstream_registry: RegistryProcess,
    make_registry: RegistryFactory,
    relay_factory: RelayFactory,
    containerd_factory: ContainerdFactory,
    tmp_path: Path,
) -> None:
    image = make_image("library/testimg", "1", [1000, 200_000], seed=6)
    push_image(upstream_registry.url, image)
    relay = relay_factory(upstream_registry)
    proxy = _proxy(make_registry, relay)
    hosts = tmp_path / "certs.d"
    (hosts / "docker.io").mkdir(parents=True)
    (hosts / "docker.io" / "hosts.toml").write_text(DOCKER_IO_HOSTS_TOML.format(host=proxy.host))
    daemon = containerd_factory(CONFIG_PATH_ONLY.format(dir=hosts))
    ref = "docker.io/library/testimg:1"
    relay.reset()

    # ctr: client-side resolver reading the hosts dir; no --plain-http needed.
    result = daemon.pull(ref, hosts)
    assert result.returncode == 0, result.stderr + result.stdout
    assert daemon.image_refs()[ref] == image.digest
    assert relay.manifest_gets() == 1, relay.requests  # the proxy's upstream was used
    assert "?ns=docker.io" in proxy.log_text()  # containerd talked to the mirror
    relay.wait_quiet()

    # CRI PullImage (as kubelet): the daemon uses config_path from the patch. Warm cache now.
    daemon.reset_images()
    relay.reset()
    image_id = daemon.cri_pull(ref, timeout=60)
    assert image_id == image.config_digest
    assert daemon.image_refs()[ref] == image.digest
    assert relay.blob_gets() == 0 and relay.manifest_gets() == 0, relay.requests

    # A file written after start is read at the next pull (no restart needed).
    write_hosts_toml(hosts, "docker.io", "https://registry-1.docker.io", [proxy.url])
    daemon.remove_image(ref)
    assert ref not in daemon.image_refs()
    assert daemon.pull(ref, hosts).returncode == 0


# -------------------------------------------------------------------- relay
def test_relay_records_requests_with_bodies_over_keepalive(
    upstream_registry: RegistryProcess, relay_factory: RelayFactory
) -> None:
    relay = relay_factory(upstream_registry)
    image = make_image("library/testimg", "1", [3000, 70_000], seed=10)
    with _client() as client:
        push_image(relay.url, image, client=client)
    methods = [m for m, _ in relay.requests]
    assert methods == ["HEAD", "POST", "PUT"] * 3 + ["PUT"], relay.requests
    assert len({r.connection for r in relay.records}) == 1  # one keep-alive connection
    relay.reset()
    got = pull_manifest_and_blobs(relay.url, image.repo, image.tag)
    assert relay.manifest_gets() == 1 and relay.blob_gets() == 3
    assert relay.bytes_down > sum(len(b) for b in got["blobs"].values())
    assert relay.count("get", "/manifests/1") == 1


def test_request_parser_handles_chunked_and_length_bodies() -> None:
    parser = _RequestParser()
    stream = (
        b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /"
        b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nGET\r\n0\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    heads = []
    for i in range(0, len(stream), 7):  # arbitrary split points
        heads += parser.feed(stream[i : i + 7])
    assert heads == [("PUT", "/a"), ("POST", "/b"), ("GET", "/c")]


def test_relay_refuse_mode(upstream_registry: RegistryProcess, relay_factory: RelayFactory) -> None:
    relay = relay_factory(upstream_registry)
    with _client(2.0) as client:
        assert client.get(f"{relay.url}/v2/").status_code == 200
        relay.mode = "refuse"
        with pytest.raises(httpx.ConnectError):
            client.get(f"{relay.url}/v2/")
        relay.mode = "pass"
        assert client.get(f"{relay.url}/v2/").status_code == 200


def test_relay_blackhole_mode(upstream_registry: RegistryProcess, relay_factory: RelayFactory) -> None:
    relay = relay_factory(upstream_registry, mode="blackhole")
    started = time.monotonic()
    with _client(0.5) as client, pytest.raises(httpx.ReadTimeout):
        client.get(f"{relay.url}/v2/")
    assert time.monotonic() - started < 3
    assert relay.requests == []  # never read
    relay.mode = "pass"
    with _client(5.0) as client:
        assert client.get(f"{relay.url}/v2/").status_code == 200


def test_relay_cut_after_bytes(upstream_registry: RegistryProcess, relay_factory: RelayFactory) -> None:
    image = make_image("library/testimg", "1", [1_000_000], seed=11)
    push_image(upstream_registry.url, image)
    layer = image.layer_digests[0]
    relay = relay_factory(upstream_registry, mode="cut_after_bytes", cut_after=100_000, cut_match=layer)
    url = f"{relay.url}/v2/{image.repo}/blobs/{layer}"
    with _client() as client:
        # a blob GET that does not match cut_match is not cut
        assert client.get(f"{relay.url}/v2/{image.repo}/blobs/{image.config_digest}").content == image.config
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(url)
    cut = [r for r in relay.records if r.cut]
    assert len(cut) == 1 and cut[0].bytes_down == 100_000
    assert relay.cuts == 1 and relay.mode == "pass"
    with _client() as client:
        assert client.get(url).content == image.layers[0]  # one-shot: the next GET is whole


def test_relay_bandwidth_and_latency(upstream_registry: RegistryProcess, relay_factory: RelayFactory) -> None:
    image = make_image("library/testimg", "1", [400_000], seed=12)
    push_image(upstream_registry.url, image)
    relay = relay_factory(upstream_registry, bandwidth_bps=2_000_000, latency_s=0.1)
    url = f"{relay.url}/v2/{image.repo}/blobs/{image.layer_digests[0]}"
    with _client() as client:
        started = time.monotonic()
        assert client.get(url).content == image.layers[0]
        elapsed = time.monotonic() - started
    expected = 0.1 + len(image.layers[0]) / 2_000_000
    assert expected * 0.9 <= elapsed <= expected + 1.5, f"took {elapsed:.3f}s, link model says {expected:.3f}s"
