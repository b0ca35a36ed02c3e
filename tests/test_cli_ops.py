"""Issue 5: ``warm`` and ``stats`` against real registries on loopback, and bad input.

The upstream is Debian's docker-registry (distribution 2.8.2) with synthetic
images pushed to it; the cache is the same binary in proxy mode with the exact
environment ``render_cache_env()`` gives the cache containers, its
``REGISTRY_PROXY_REMOTEURL`` pointed at an :class:`HttpRelay` that counts what
goes upstream. The CLI runs as a subprocess, as a user runs it; no test may see
a Traceback. ``status`` is tested in tests/test_cli_status.py (fake Docker API).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from localdev.cli import build_parser, load_stack_settings
from localdev.errors import UsageError
from localdev.images import ImageRef, parse_reference
from localdev.manifests import images_from_manifests
from localdev.ops.metrics import from_prometheus
from localdev.ops.output import Progress
from localdev.ops.registry_api import OCI_INDEX, OCI_MANIFEST, AuthRequired, RegistryClient, parse_challenge
from localdev.render import render_cache_env
from localdev.settings import parse_settings
from tests.harness import HttpRelay, RegistryProcess, SyntheticImage, make_image, pull_manifest_and_blobs, push_image
from tests.harness.net import free_port

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("LOCALDEV_DEBUG", "LOCALDEV_STACK")}
    environ.update({"NO_COLOR": "1", **(env or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "localdev.cli", *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=timeout
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


# ----------------------------------------------------------------------- images
A1 = make_image("library/alpha", "1", [120_000, 80_000], seed=1)
A2 = make_image("library/alpha", "2", [60_000], seed=2, shared_layers=A1.layers[:1])
B1 = make_image("team/beta", "v1", [90_000], seed=3)


def unique_bytes(*images: SyntheticImage) -> int:
    blobs: dict[str, int] = {}
    for image in images:
        blobs.update({d: len(b) for d, b in image.blobs.items()})
        blobs[image.digest] = len(image.manifest)
    return sum(blobs.values())


class Stack:
    """An upstream with A1, A2 and B1, a relay in front of it, and a cache (proxy) behind the relay."""

    def __init__(self, upstream: RegistryProcess, relay: HttpRelay, cache: RegistryProcess) -> None:
        self.upstream, self.relay, self.cache = upstream, relay, cache

    def expvar(self) -> dict[str, Any]:
        return self.cache.debug_vars()["registry"]["proxy"]


@pytest.fixture
def stack(make_registry: Any, relay_factory: Any) -> Stack:
    upstream = make_registry("upstream")
    for image in (A1, A2, B1):
        push_image(upstream.url, image)
    relay = relay_factory(upstream)
    settings = parse_settings({})
    env = {**render_cache_env(settings, settings.mirrors[0]), "REGISTRY_PROXY_REMOTEURL": relay.url}
    cache = make_registry("cache", env=env)  # the env's REGISTRY_HTTP_DEBUG_ADDR gets it a debug port
    assert cache.debug_url is not None
    return Stack(upstream, relay, cache)


# ------------------------------------------------------------------------- warm
def test_warm_fills_the_cache_and_is_resumable(stack: Stack) -> None:
    first = cli("warm", "--no-manifests", "--registry", stack.cache.url, "-j", "3", "alpha:1", "docker.io/team/beta:v1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"✓ alpha:1 via {stack.cache.url}: fetched 3 blobs" in first.stdout
    assert f"✓ docker.io/team/beta:v1 via {stack.cache.url}: fetched 2 blobs" in first.stdout
    assert "fetched 5 blobs" in first.stdout.splitlines()[-1]
    assert stack.relay.manifest_gets() == 2

    # A pull through the cache now fetches nothing upstream (only the tag HEAD check).
    stack.relay.reset()
    pull_manifest_and_blobs(stack.cache.url, "library/alpha", "1")
    pull_manifest_and_blobs(stack.cache.url, "team/beta", "v1")
    assert (stack.relay.blob_gets(), stack.relay.manifest_gets()) == (0, 0), stack.relay.requests

    second = cli("warm", "--no-manifests", "--registry", stack.cache.url, "alpha:1", "docker.io/team/beta:v1")
    assert second.returncode == 0
    assert f"✓ alpha:1 via {stack.cache.url}: already cached (3 blobs, " in second.stdout
    assert "already cached (2 blobs, " in second.stdout
    assert "fetched 0 blobs (0 B), already cached 5 blobs" in second.stdout.splitlines()[-1]
    assert (stack.relay.blob_gets(), stack.relay.manifest_gets()) == (0, 0)

    # alpha:2 shares a layer with alpha:1: only its config and new layer are fetched.
    third = cli("warm", "--no-manifests", "--registry", stack.cache.url, "alpha:2")
    assert third.returncode == 0
    assert "fetched 2 blobs" in third.stdout and "1 already cached" in third.stdout
    assert stack.relay.manifest_gets() == 1


def test_warm_with_storage_access_asks_the_cache_nothing_for_held_blobs(stack: Stack) -> None:
    args = (
        "warm",
        "--no-manifests",
        "--registry",
        stack.cache.url,
        "--storage",
        str(stack.cache.storage),
        "alpha:1",
        "team/beta:v1",
    )
    assert cli(*args).returncode == 0
    before = stack.expvar()["blobs"]["Requests"]
    again = cli(*args)
    assert again.returncode == 0
    assert "already cached 5 blobs" in again.stdout
    assert stack.expvar()["blobs"]["Requests"] == before  # no blob request at all: the counters stay honest
    assert stack.relay.blob_gets() == 10  # 5 blobs, each fetched twice upstream by 2.8.2 (docs/cli.md)


def test_warm_reads_images_from_kubernetes_manifests(stack: Stack, tmp_path: Path) -> None:
    manifests = tmp_path / "k8s"
    (manifests / "sub").mkdir(parents=True)
    pod_spec = {
        "initContainers": [{"name": "init", "image": "alpha:1"}],
        "containers": [{"name": "app", "image": "docker.io/team/beta:v1"}],
    }
    docs = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"spec": pod_spec}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"image": "not/an:image"}},
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly"},
            "spec": {
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "library/alpha:2"}]}}}}
            },
        },
    ]
    (manifests / "app.yaml").write_text(yaml.safe_dump_all(docs))
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "alpha:1"}]}}],
    }
    (manifests / "sub" / "pod.yml").write_text(yaml.safe_dump(listed))
    (manifests / "README.txt").write_text("image: ignored/because:not-yaml")

    found = images_from_manifests(manifests)
    assert [f.image for f in found] == ["alpha:1", "docker.io/team/beta:v1", "library/alpha:2"]
    assert found[0].sources == ["app.yaml:Deployment/web", "pod.yml:Pod/p"]

    proc = cli("warm", "--registry", stack.cache.url, "--manifests", str(manifests))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(" via ")[0] for line in lines[:-1]] == ["✓ alpha:1", "✓ docker.io/team/beta:v1", "✓ library/alpha:2"]
    assert lines[-1].startswith("✓ 3 image(s): fetched 7 blobs")


def test_warm_reports_unusable_manifest_images_with_their_file(stack: Stack, tmp_path: Path) -> None:
    pod = {"kind": "Pod", "metadata": {"name": "templated"}, "spec": {"containers": [{"name": "c", "image": "$(IMAGE)"}]}}
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    proc = cli("warm", "--registry", stack.cache.url, "--manifests", str(tmp_path), "alpha:1")
    assert proc.returncode == 1
    assert "✗ $(IMAGE): malformed image reference '$(IMAGE)'" in proc.stdout and "(in pod.yaml:Pod/templated)" in proc.stdout
    assert f"✓ alpha:1 via {stack.cache.url}: fetched 3 blobs" in proc.stdout


def test_warm_maps_images_to_the_stacks_caches(tmp_path: Path) -> None:
    """Mapping for the dev stack (no Docker daemon and no cache runs here): no cache for gcr.io, push images skipped."""
    settings = load_stack_settings("dev")
    assert "gcr.io" not in {m.host for m in settings.mirrors}
    proc = cli(
        "warm",
        "--stack",
        "dev",
        "--no-manifests",
        "gcr.io/distroless/static:nonroot",
        f"{settings.push_host}/team/app:dev",
        env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"},
    )
    assert proc.returncode == 1
    assert (
        "✗ gcr.io/distroless/static:nonroot: no cache for gcr.io (fix: add gcr.io to mirrors: "
        f"pulumi config set --path 'mirrors[{len(settings.mirrors)}]' gcr.io, then pulumi up)"
    ) in proc.stdout
    assert f"- {settings.push_host}/team/app:dev: lives in the push registry; nothing to warm" in proc.stdout
    assert "checking what the caches hold through their API instead" in proc.stderr


def test_the_projects_own_manifests_parse() -> None:
    found = images_from_manifests(ROOT / "k8s")
    assert found, "k8s/ names no image"
    for entry in found:
        ref = parse_reference(entry.image)
        assert ref.tag or ref.digest


def push_index(registry: RegistryProcess, repo: str, tag: str, images: dict[str, SyntheticImage]) -> None:
    for image in images.values():
        push_image(registry.url, image)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": im.digest,
                "size": len(im.manifest),
                "platform": {"os": "linux", "architecture": arch},
            }
            for arch, im in images.items()
        ],
    }
    resp = httpx.put(
        f"{registry.url}/v2/{repo}/manifests/{tag}", content=json.dumps(index).encode(), headers={"Content-Type": OCI_INDEX}
    )
    assert resp.status_code == 201, resp.text


def test_warm_takes_the_requested_platform_of_an_index(stack: Stack) -> None:
    images = {
        "amd64": make_image("team/multi", "amd64", [50_000], seed=11, architecture="amd64"),
        "arm64": make_image("team/multi", "arm64", [70_000], seed=12, architecture="arm64"),
    }
    push_index(stack.upstream, "team/multi", "1.0", images)
    proc = cli("warm", "--no-manifests", "--registry", stack.cache.url, "--platform", "linux/arm64", "team/multi:1.0")
    assert proc.returncode == 0, proc.stdout
    assert "fetched 2 blobs" in proc.stdout
    fetched = {path.rsplit("/", 1)[1] for method, path in stack.relay.requests if method == "GET" and "/blobs/" in path}
    assert fetched == set(images["arm64"].blobs)

    wrong = cli("warm", "--no-manifests", "--registry", stack.cache.url, "--platform", "linux/s390x", "team/multi:1.0")
    assert wrong.returncode == 1
    assert "the index has no linux/s390x image (it has: linux/amd64, linux/arm64)" in wrong.stdout


# ------------------------------------------------------------------------ stats
def test_stats_reports_content_and_counters(stack: Stack) -> None:
    assert cli("warm", "--no-manifests", "--registry", stack.cache.url, "alpha:1", "team/beta:v1").returncode == 0
    pull_manifest_and_blobs(stack.cache.url, "library/alpha", "1")  # a warm pull: one manifest hit

    proc = cli(
        "stats",
        "--registry",
        stack.cache.url,
        "--metrics-url",
        str(stack.cache.debug_url),
        "--storage",
        str(stack.cache.storage),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(proc.stdout)["registries"]
    content = report["content"]
    assert content["complete"] is True
    assert content["repositories"] == [
        {"name": "library/alpha", "tags": ["1"], "manifests": 1, "blobs": 3, "bytes": A1.total_size},
        {"name": "team/beta", "tags": ["v1"], "manifests": 1, "blobs": 2, "bytes": B1.total_size},
    ]
    assert (content["repository_count"], content["tag_count"], content["bytes"]) == (2, 2, unique_bytes(A1, B1))

    metrics = report["metrics"]
    assert metrics["source"] == "expvar"
    manifest = metrics["manifest"]
    assert manifest["misses"] == stack.relay.manifest_gets() == 2
    assert manifest["pulled_bytes"] == len(A1.manifest) + len(B1.manifest)
    assert (manifest["requests"], manifest["hits"], metrics["docker_hub_pulls_saved"]) == (3, 1, 1)
    blob = metrics["blob"]
    assert (blob["hits"], blob["misses"], blob["pulled_bytes"], metrics["bytes_saved"]) == (None, None, None, None)
    assert blob["requests"] >= stack.relay.blob_gets() >= 5  # 2.8 counts every upstream copy as a request
    assert any("2.8 never counts blob misses" in n for n in metrics["notes"])
    assert any("Hits = Requests" in n for n in metrics["notes"])

    # Without storage access, a pull-through cache shows repositories only, and nothing goes upstream.
    stack.relay.reset()
    proc = cli("stats", "--registry", stack.cache.url, "--metrics-url", str(stack.cache.debug_url), "--json")
    assert proc.returncode == 0
    [report] = json.loads(proc.stdout)["registries"]
    assert report["content"]["complete"] is False
    assert [r["name"] for r in report["content"]["repositories"]] == ["library/alpha", "team/beta"]
    assert report["content"]["tag_count"] is None
    assert any("--storage DIR" in n for n in report["notes"])
    assert (stack.relay.blob_gets(), stack.relay.manifest_gets()) == (0, 0)

    table = cli(
        "stats",
        "--registry",
        stack.cache.url,
        "--metrics-url",
        str(stack.cache.debug_url),
        "--storage",
        str(stack.cache.storage),
        "-v",
    )
    assert table.returncode == 0
    assert "REGISTRY" in table.stdout and "HUB PULLS SAVED" in table.stdout
    assert "/library/alpha  tags: 1" in table.stdout
    assert "¹ distribution 2.8 reports Hits = Requests" in table.stdout


def test_stats_of_a_plain_registry_through_its_api(stack: Stack) -> None:
    proc = cli("stats", "--registry", stack.upstream.url, "--json")
    assert proc.returncode == 0
    [report] = json.loads(proc.stdout)["registries"]
    repos = {r["name"]: r for r in report["content"]["repositories"]}
    assert repos["library/alpha"]["tags"] == ["1", "2"]
    assert repos["team/beta"]["tags"] == ["v1"]
    assert report["content"]["bytes"] == unique_bytes(A1, A2, B1)
    assert report["metrics"] is None and any("metrics unavailable" in n for n in report["notes"])
    # The upload probe that tells a plain registry from a cache is cancelled at once: 2.8.2 keeps only the
    # session's empty hash state (purged with stale uploads), no data and no start marker.
    leftovers = [p.name for p in stack.upstream.storage.rglob("_uploads/**/*") if p.is_file()]
    assert leftovers in ([], ["0"])


def test_prometheus_counters_of_distribution_3() -> None:
    text = "\n".join(
        [
            "# HELP registry_proxy_hits_total The number of total hits",
            "# TYPE registry_proxy_hits_total counter",
            'registry_proxy_hits_total{type="blob"} 30',
            'registry_proxy_hits_total{type="manifest"} 12',
            'registry_proxy_misses_total{type="blob"} 10',
            'registry_proxy_misses_total{type="manifest"} 3',
            'registry_proxy_requests_total{type="blob"} 40',
            'registry_proxy_requests_total{type="manifest"} 15',
            'registry_proxy_pulled_bytes_total{type="blob"} 1e+06',
            'registry_proxy_pushed_bytes_total{type="blob"} 4e+06',
            'registry_proxy_pulled_bytes_total{type="manifest"} 3000',
            'registry_http_requests_total{code="200",handler="blob",method="get"} 99',
        ]
    )
    metrics = from_prometheus(text, "http://127.0.0.1:5100/metrics")
    assert metrics is not None
    assert (metrics.blob.hits, metrics.blob.misses, metrics.blob.requests) == (30, 10, 40)
    assert metrics.blob.hit_ratio == 0.75
    assert metrics.bytes_saved == 3_000_000
    assert metrics.pulls_saved == 12
    assert metrics.notes == []
    assert from_prometheus("registry_http_requests_total 1\n", "x") is None


# ---------------------------------------------------------------- bad input
@pytest.fixture
def dead_port() -> int:
    return free_port()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["warm", "--no-manifests", "--registry", "{cache}", "Alpha/UPPER::x"],
            2,
            "error: malformed image reference 'Alpha/UPPER::x'",
        ),
        (
            ["warm", "--no-manifests", "--registry", "{dead}", "alpha:1"],
            1,
            "error: cannot reach the registry at {dead} (connection refused)",
        ),
        (["warm", "--no-manifests", "--registry", "{cache}", "alpha@sha256:1234"], 2, "is not a sha256:<64 hex> digest"),
        (["warm", "--storage", "/tmp", "alpha:1"], 2, "error: --storage goes with --registry URL"),
        (
            ["warm", "--registry", "{cache}", "--manifests", "/nonexistent/k8s"],
            2,
            "error: --manifests /nonexistent/k8s: no such directory",
        ),
        (["warm", "--registry", "{cache}", "--manifests", "{badyaml}"], 2, "bad.yaml line 2: not valid YAML"),
        (["warm", "-j", "0", "alpha:1"], 2, "error: localdev warm: argument --jobs/-j: '0': use a whole number from 1 to 64"),
        (
            ["stats", "--registry", "ftp://example.com"],
            2,
            "error: registry URL 'ftp://example.com': scheme must be http or https",
        ),
        (["stats", "--metrics-url", "http://127.0.0.1:1"], 2, "error: --metrics-url and --storage go with --registry URL"),
        (["stats", "--stack", "nope"], 2, "error: --stack: there is no Pulumi.nope.yaml"),
    ],
)
def test_bad_input_is_one_line_and_the_right_exit_code(
    stack: Stack, dead_port: int, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    bad = tmp_path / "badyaml"
    bad.mkdir()
    (bad / "bad.yaml").write_text("kind: Pod\n  spec: [\n")
    fill = {"cache": stack.cache.url, "dead": f"http://127.0.0.1:{dead_port}", "badyaml": str(bad)}
    proc = cli(*[a.format(**fill) for a in args])
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message.format(**fill) in lines[0]


def test_unknown_image_and_registry_down_in_stats(stack: Stack, dead_port: int) -> None:
    proc = cli("warm", "--no-manifests", "--registry", stack.cache.url, "nothere:1", "alpha:1")
    assert proc.returncode == 1
    assert f"✗ nothere:1: library/nothere:1: not found at {stack.cache.url} (MANIFEST_UNKNOWN: manifest unknown)" in proc.stdout
    assert f"✓ alpha:1 via {stack.cache.url}: fetched 3 blobs" in proc.stdout
    assert proc.stdout.splitlines()[-1].endswith("1 image(s) failed")

    down = cli("stats", "--registry", f"http://127.0.0.1:{dead_port}", "--json")
    assert down.returncode == 1
    [report] = json.loads(down.stdout)["registries"]
    assert (
        report["content_error"]
        == f"cannot reach the registry at http://127.0.0.1:{dead_port} (connection refused): is it running?"
    )


# -------------------------------------------------------------------- auth
class _TokenRegistry(BaseHTTPRequestHandler):
    """A registry that wants a bearer token for everything, and a token service refusing ``private/*``."""

    token_requests: list[dict[str, list[str]]] = []  # noqa: RUF012 - shared test state

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"  # type: ignore[index]
        if url.path == "/token":
            query = parse_qs(url.query)
            type(self).token_requests.append(query)
            scope = query.get("scope", [""])[0]
            if "private/" in scope:
                return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return self._send(200, json.dumps({"token": f"tok:{scope}"}).encode())
        repo = url.path.split("/manifests/")[0].removeprefix("/v2/") if "/manifests/" in url.path else ""
        scope = f"repository:{repo}:pull" if repo else ""
        if self.headers.get("Authorization") != f"Bearer tok:{scope}":
            challenge = f'Bearer realm="{realm}",service="fake.registry"' + (f',scope="{scope}"' if scope else "")
            return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
        if repo:
            return self._send(200, A1.manifest, {"Content-Type": OCI_MANIFEST})
        return self._send(200, b"{}")

    def _send(self, code: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def token_registry() -> Iterator[str]:
    _TokenRegistry.token_requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_bearer_token_challenge(token_registry: str) -> None:
    with RegistryClient(token_registry) as client:
        client.ping()
        manifest = client.manifest("team/app", "1")
        assert manifest.digest == A1.digest
        client.manifest("team/app", "1")  # the token is reused
        assert [q.get("scope") for q in _TokenRegistry.token_requests] == [None, ["repository:team/app:pull"]]
        assert _TokenRegistry.token_requests[1]["service"] == ["fake.registry"]
        with pytest.raises(AuthRequired, match=r"refused repository:private/x:pull \(HTTP 401\)"):
            client.manifest("private/x", "1")
    proc = cli("warm", "--no-manifests", "--registry", token_registry, "private/x:1")
    assert proc.returncode == 1
    assert "✗ private/x:1: token service" in proc.stdout and "the image may be private or not exist" in proc.stdout


def test_challenge_parsing() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:a/b:pull,push",
    }


# ------------------------------------------------------------ references, docs
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis:7", ImageRef("docker.io", "library/redis", "7")),
        ("redis", ImageRef("docker.io", "library/redis", "latest")),
        ("bitnami/redis:7.2", ImageRef("docker.io", "bitnami/redis", "7.2")),
        ("index.docker.io/library/redis:7", ImageRef("docker.io", "library/redis", "7")),
        ("registry-1.docker.io/redis:7", ImageRef("docker.io", "library/redis", "7")),
        ("ghcr.io/org/app:1.2", ImageRef("ghcr.io", "org/app", "1.2")),
        ("localhost:5001/app", ImageRef("localhost:5001", "app", "latest")),
        ("registry.k8s.io/pause@sha256:" + "a" * 64, ImageRef("registry.k8s.io", "pause", None, "sha256:" + "a" * 64)),
        ("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", ImageRef("quay.io", "minio/minio", "RELEASE.2025-09-07T16-13-09Z")),
    ],
)
def test_references_are_normalised(text: str, expected: ImageRef) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize("text", ["", "UPPER", "a b", "redis:", "redis@sha256:xyz", "-bad/x", "a//b", "$(IMAGE)"])
def test_malformed_references_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="malformed image reference"):
        parse_reference(text)


def test_progress_bar_draws_only_on_a_terminal() -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(2, 1000, "warming", stream)
        bar.advance(600, items=1)
        bar.advance(400, items=1)
        bar.close()
    assert "100%  2/2 blobs  1.0 kB/1.0 kB" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_docs_cover_every_command_and_flag() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("status", "stats", "warm"):
        assert f"## `{name}`" in text
        for action in subparsers.choices[name]._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in text, f"docs/cli.md does not mention {name} {flag}"
    assert ".venv/bin/localdev" in text
