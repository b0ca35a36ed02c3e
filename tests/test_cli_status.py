"""Issue 5: ``status`` (and ``stats`` reading a container's volume), against a FAKE Docker Engine API.

There is no Docker engine on the test machine, so these tests run the real
Docker SDK for Python (``docker.from_env()`` with ``DOCKER_HOST=unix://…``)
against :class:`FakeDockerEngine`: a small HTTP server on a unix socket that
speaks the few Engine API endpoints the commands call (``/version``,
``/_ping``, ``GET /containers/json``, ``GET /containers/{id}/json``,
``GET /containers/{id}/archive``). Its containers are plain dicts shaped like
``docker inspect`` output. What is *not* covered here: how a real engine fills
those fields (e.g. the ``0.0.0.0``/``::`` pair it reports for one unrestricted
binding), which is why the checks accept both spellings.

The registries the checks GET (``/v2/``) are real docker-registry processes on
loopback; kubectl is injected (a fake runner), or missing.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socketserver
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import docker
import pytest

from localdev.ops.stats import collect, stack_targets
from localdev.ops.status import run_status
from localdev.ops.storage import LocalStorage, held_blobs
from localdev.render import CERTS_DIR, render_cache_env, render_node_hosts, render_registry_hosting
from localdev.settings import Settings, parse_settings
from tests.harness import make_image, pull_manifest_and_blobs, push_image
from tests.harness.net import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


#: What ``containerd config dump`` shows in a node that localdev's patch reached (containerd 2.x).
PATCHED_DUMP = f"""version = 3
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '{CERTS_DIR}'
  [plugins.'io.containerd.transfer.v1.local']
    config_path = ''
"""


# ------------------------------------------------------------------ fake engine
class FakeDockerEngine:
    """Containers as dicts; serves them over the Engine API on a unix socket."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.containers: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self.execs: dict[str, tuple[dict[str, Any], list[str]]] = {}
        self.exit_codes: dict[str, int] = {}
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet, and client_address is '' on unix sockets
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                engine.requests.append(self.path)
                engine.handle(self)

            def do_HEAD(self) -> None:  # noqa: N802
                engine.handle(self)

            def do_POST(self) -> None:  # noqa: N802
                engine.requests.append(f"POST {self.path}")
                engine.handle_post(self)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(str(socket_path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeDockerEngine:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def add(
        self,
        name: str,
        *,
        status: str = "running",
        env: dict[str, str] | None = None,
        ports: dict[str, list[tuple[str, int]]] | None = None,
        networks: Sequence[str] = ("kind",),
        labels: dict[str, str] | None = None,
        files: dict[str, str] | None = None,
        dirs: dict[str, Path] | None = None,
        dump: str = PATCHED_DUMP,
    ) -> dict[str, Any]:
        spec = {
            "id": f"{abs(hash(name)):064x}"[:64],
            "name": name,
            "status": status,
            "env": dict(env or {}),
            "ports": dict(ports or {}),
            "networks": list(networks),
            "labels": dict(labels or {}),
            "files": dict(files or {}),
            "dirs": dict(dirs or {}),
            "dump": dump,
        }
        self.containers[name] = spec
        return spec

    # -------------------------------------------------------------- handlers
    def _find(self, ref: str) -> dict[str, Any] | None:
        for spec in self.containers.values():
            if ref in (spec["name"], spec["id"]) or (len(ref) >= 12 and spec["id"].startswith(ref)):
                return spec
        return None

    def inspect(self, spec: dict[str, Any]) -> dict[str, Any]:
        running = spec["status"] == "running"
        bindings = {k: [{"HostIp": ip, "HostPort": str(port)} for ip, port in v] for k, v in spec["ports"].items()}
        return {
            "Id": spec["id"],
            "Name": f"/{spec['name']}",
            "State": {"Status": spec["status"], "Running": running},
            "Config": {"Env": [f"{k}={v}" for k, v in spec["env"].items()], "Labels": spec["labels"]},
            "HostConfig": {"PortBindings": bindings},
            "NetworkSettings": {
                "Ports": bindings if running else {},
                "Networks": {n: {"Aliases": [spec["name"]]} for n in spec["networks"]},
            },
        }

    def archive(self, spec: dict[str, Any], path: str) -> tuple[bytes, dict[str, Any]] | None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            if path in spec["files"]:
                data = spec["files"][path].encode()
                info = tarfile.TarInfo(path.rsplit("/", 1)[-1])
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                stat = {"name": info.name, "size": len(data), "mode": 0o644, "mtime": "2026-01-01T00:00:00Z", "linkTarget": ""}
            else:
                for mount, local in spec["dirs"].items():
                    if path == mount or path.startswith(mount + "/"):
                        target = Path(local, path[len(mount) :].lstrip("/"))
                        if not target.exists():
                            return None
                        tar.add(target, arcname=target.name)
                        stat = {"name": target.name, "size": target.stat().st_size, "mode": 0o755, "mtime": "", "linkTarget": ""}
                        break
                else:
                    return None
        return buf.getvalue(), stat

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        path = re.sub(r"^/v1\.\d+", "", url.path)
        query = parse_qs(url.query)
        if path == "/_ping":
            return self._send(h, 200, b"OK", "text/plain")
        if path == "/version":
            return self._json(h, 200, {"ApiVersion": "1.44", "MinAPIVersion": "1.24", "Version": "26.1.0-fake"})
        if path == "/containers/json":
            wanted = json.loads(query.get("filters", ["{}"])[0]).get("label", [])
            found = [
                {"Id": s["id"], "Names": [f"/{s['name']}"], "Labels": s["labels"], "State": s["status"]}
                for s in self.containers.values()
                if all(s["labels"].get(k) == v for k, _, v in (f.partition("=") for f in wanted))
            ]
            return self._json(h, 200, found)
        m = re.match(r"^/exec/([^/]+)/json$", path)
        if m and m.group(1) in self.exit_codes:
            return self._json(h, 200, {"ExitCode": self.exit_codes[m.group(1)], "Running": False})
        m = re.match(r"^/containers/([^/]+)/(json|archive)$", path)
        spec = self._find(m.group(1)) if m else None
        if m and spec is None:
            return self._json(h, 404, {"message": f"No such container: {m.group(1)}"})
        if m and spec is not None and m.group(2) == "json":
            return self._json(h, 200, self.inspect(spec))
        if m and spec is not None:
            got = self.archive(spec, query.get("path", [""])[0])
            if got is None:
                return self._json(h, 404, {"message": "Could not find the file in container"})
            stat = base64.b64encode(json.dumps(got[1]).encode()).decode()
            return self._send(h, 200, got[0], "application/x-tar", {"X-Docker-Container-Path-Stat": stat})
        return self._json(h, 404, {"message": f"page not found: {path}"})

    def handle_post(self, h: BaseHTTPRequestHandler) -> None:
        """``exec_run``: create an exec, start it (one multiplexed stdout frame), inspect its exit code.

        Only ``containerd config dump`` is answered, with the container's ``dump``.
        """
        path = re.sub(r"^/v1\.\d+", "", urlsplit(h.path).path)
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length") or 0)) or b"{}")
        m = re.match(r"^/containers/([^/]+)/exec$", path)
        if m:
            spec = self._find(m.group(1))
            if spec is None:
                return self._json(h, 404, {"message": f"No such container: {m.group(1)}"})
            exec_id = f"{len(self.execs):064x}"
            self.execs[exec_id] = (spec, body["Cmd"])
            return self._json(h, 201, {"Id": exec_id})
        m = re.match(r"^/exec/([^/]+)/start$", path)
        if m and m.group(1) in self.execs:
            spec, cmd = self.execs[m.group(1)]
            answered = cmd == ["containerd", "config", "dump"]
            data = (spec["dump"] if answered else f"{cmd[0]}: not found\n").encode()
            self.exit_codes[m.group(1)] = 0 if answered else 127
            # containerd 2.1 logs a warning on stderr with every dump (kind's config has a key it
            # no longer knows); the dump itself is stdout only.
            warning = b'time="2026-12-01T00:00:00Z" level=warning msg="Ignoring unknown key in TOML"\n'
            frame = b"".join(
                bytes([stream, 0, 0, 0]) + len(chunk).to_bytes(4, "big") + chunk for stream, chunk in ((2, warning), (1, data))
            )
            # As the engine does: the connection is upgraded to a raw stream. The client reads the
            # stream from the socket after the headers, so they go out first, on their own.
            h.send_response(101)
            h.send_header("Content-Type", "application/vnd.docker.raw-stream")
            h.send_header("Connection", "Upgrade")
            h.send_header("Upgrade", "tcp")
            h.end_headers()
            h.wfile.flush()
            time.sleep(0.05)
            h.wfile.write(frame)
            h.close_connection = True
            return None
        return self._json(h, 404, {"message": f"page not found: {path}"})

    def _json(self, h: BaseHTTPRequestHandler, code: int, body: object) -> None:
        self._send(h, code, json.dumps(body).encode(), "application/json")

    def _send(self, h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)


# --------------------------------------------------------------------- fixtures
@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDockerEngine]:
    sock = Path("/tmp") / f"fake-docker-{os.getpid()}-{free_port()}.sock"  # AF_UNIX paths are short
    with FakeDockerEngine(sock) as fake:
        monkeypatch.setenv("DOCKER_HOST", fake.url)
        monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
        monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
        yield fake
    sock.unlink(missing_ok=True)


class FakeKubectl:
    """Stands in for ``kubectl get configmap``: returns ``stdout``, or fails with ``stderr``."""

    def __init__(self, stdout: str = "", returncode: int = 0, stderr: str = "") -> None:
        self.stdout, self.returncode, self.stderr = stdout, returncode, stderr
        self.calls: list[list[str]] = []

    def __call__(self, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(cmd))
        return subprocess.CompletedProcess(list(cmd), self.returncode, self.stdout, self.stderr)


@pytest.fixture
def healthy(make_registry: Any, engine: FakeDockerEngine) -> tuple[Settings, FakeDockerEngine, FakeKubectl]:
    """A stack with one cache and the push registry, both real processes, and two wired nodes."""
    cache = make_registry("cache")
    push = make_registry("push")
    settings = parse_settings({"mirrors": [f"docker.io={cache.port}"], "pushRegistryPort": push.port, "workers": 1})
    mirror = settings.mirrors[0]
    engine.add(
        settings.cache_name(mirror),
        env=render_cache_env(settings, mirror),
        ports={"5000/tcp": [("127.0.0.1", mirror.port)], "5001/tcp": [("127.0.0.1", mirror.metrics_port)]},
        labels={"localdev.cluster": settings.cluster_name, "localdev.role": "cache", "localdev.upstream": "docker.io"},
    )
    engine.add(
        settings.push_name, env={"REGISTRY_STORAGE_DELETE_ENABLED": "true"}, ports={"5000/tcp": [("127.0.0.1", push.port)]}
    )
    files = {f"{CERTS_DIR}/{rel}": text for rel, text in render_node_hosts(settings).items()}
    for node in ("localdev-control-plane", "localdev-worker"):
        engine.add(node, labels={"io.x-k8s.kind.cluster": settings.cluster_name}, files=files)
    engine.add("someone-elses-node", labels={"io.x-k8s.kind.cluster": "other"})
    return settings, engine, FakeKubectl(stdout=render_registry_hosting(settings))


def status(settings: Settings, kubectl: FakeKubectl, which: Any = None) -> tuple[int, str]:
    out = io.StringIO()
    code = run_status(
        settings,
        docker.from_env(),
        out,
        stack="dev",
        run=kubectl,
        which=which or (lambda name: f"/usr/bin/{name}"),
    )
    return code, out.getvalue()


def failures(text: str) -> list[tuple[str, str | None]]:
    """(✗ line, its fix line) pairs."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("✗"):
            fix = lines[i + 1].strip() if i + 1 < len(lines) and lines[i + 1].startswith("    fix: ") else None
            out.append((line, fix))
    return out


# ------------------------------------------------------------------------ tests
def test_healthy_stack_passes_every_check(healthy: tuple[Settings, FakeDockerEngine, FakeKubectl]) -> None:
    settings, _, kubectl = healthy
    code, text = status(settings, kubectl)
    assert code == 0, text
    assert failures(text) == []
    assert "✓ docker.io cache: proxy mode, upstream https://registry-1.docker.io" in text
    assert f"published on 127.0.0.1:{settings.mirrors[0].port} and 127.0.0.1:{settings.mirrors[0].metrics_port} only" in text
    assert "✓ node localdev-control-plane: 2 hosts.toml files match the config" in text
    assert f"✓ node localdev-worker: containerd's CRI reads hosts.toml from {CERTS_DIR}" in text
    assert "✓ node localdev-worker:" in text and "someone-elses-node" not in text
    assert "advertises localhost:" in text and text.rstrip().endswith("checks passed")
    assert "\033[" not in text  # not a terminal: no colour
    assert kubectl.calls[0][:3] == ["kubectl", "--context", "kind-localdev"]


@pytest.mark.parametrize(
    ("breakage", "expect_line", "expect_fix"),
    [
        ("stopped", "is exited", "docker start localdev-cache-docker-io"),
        (
            "public_port",
            "publishes 5000/tcp on all interfaces (0.0.0.0:",
            "docker rm -f localdev-cache-docker-io && pulumi up --refresh --stack dev",
        ),
        (
            "off_network",
            "is not on the kind network",
            "docker network connect --alias localdev-cache-docker-io kind localdev-cache-docker-io",
        ),
        ("wrong_upstream", "pulls from https://mirror.example.com", "pulumi up --refresh --stack dev"),
        ("not_proxy", "is not in proxy mode", "pulumi up --refresh --stack dev"),
        ("missing_container", "container localdev-cache-docker-io does not exist", "pulumi up --refresh --stack dev"),
        (
            "hosts_missing",
            "/etc/containerd/certs.d/docker.io/hosts.toml is missing",
            "docker cp /tmp/localdev-render/certs.d/docker.io/hosts.toml",
        ),
        (
            "config_path_empty",
            "containerd's effective CRI config_path is '', not /etc/containerd/certs.d",
            "kind delete cluster --name localdev && pulumi up --refresh --stack dev",
        ),
        (
            "hosts_different",
            "differs from the config (line 1: has 'server = \"https://evil.example\"'",
            "docker exec localdev-worker mkdir -p",
        ),
    ],
)
def test_each_failure_is_one_red_line_with_its_fix(
    healthy: tuple[Settings, FakeDockerEngine, FakeKubectl], breakage: str, expect_line: str, expect_fix: str
) -> None:
    settings, engine, kubectl = healthy
    cache = engine.containers["localdev-cache-docker-io"]
    worker_hosts = f"{CERTS_DIR}/docker.io/hosts.toml"
    if breakage == "stopped":
        cache["status"] = "exited"
    elif breakage == "public_port":
        cache["ports"]["5000/tcp"] = [("0.0.0.0", settings.mirrors[0].port), ("::", settings.mirrors[0].port)]
    elif breakage == "off_network":
        cache["networks"] = ["bridge"]
    elif breakage == "wrong_upstream":
        cache["env"]["REGISTRY_PROXY_REMOTEURL"] = "https://mirror.example.com"
    elif breakage == "not_proxy":
        del cache["env"]["REGISTRY_PROXY_REMOTEURL"]
    elif breakage == "missing_container":
        del engine.containers["localdev-cache-docker-io"]
    elif breakage == "hosts_missing":
        del engine.containers["localdev-control-plane"]["files"][worker_hosts]
    elif breakage == "config_path_empty":
        # The hosts.toml files all match, and still no pull goes through the caches.
        engine.containers["localdev-worker"]["dump"] = PATCHED_DUMP.replace(f"'{CERTS_DIR}'", "''")
    elif breakage == "hosts_different":
        files = engine.containers["localdev-worker"]["files"]
        files[worker_hosts] = files[worker_hosts].replace("https://registry-1.docker.io", "https://evil.example")
    code, text = status(settings, kubectl)
    assert code == 1
    bad = failures(text)
    # A stopped registry also stops answering on its port only in a real engine; here the process still runs.
    assert len(bad) == 1, text
    line, fix = bad[0]
    assert expect_line in line
    assert fix is not None and expect_fix in fix
    assert re.search(r"^1 of \d+ checks failed$", text, re.M)


def test_configmap_missing_or_kubectl_absent(healthy: tuple[Settings, FakeDockerEngine, FakeKubectl]) -> None:
    settings, _, _ = healthy
    missing = FakeKubectl(returncode=1, stderr='Error from server (NotFound): configmaps "local-registry-hosting" not found')
    code, text = status(settings, missing)
    assert code == 1
    assert failures(text) == [
        ("✗ ConfigMap: kube-public/local-registry-hosting does not exist", "fix: pulumi up --refresh --stack dev")
    ]
    code, text = status(settings, FakeKubectl(), which=lambda name: None)
    assert code == 1
    [(line, fix)] = failures(text)
    assert "kubectl not found on PATH" in line and fix is not None and "install kubectl" in fix


def test_no_nodes_and_stopped_node(healthy: tuple[Settings, FakeDockerEngine, FakeKubectl]) -> None:
    settings, engine, kubectl = healthy
    engine.containers["localdev-worker"]["status"] = "exited"
    _, text = status(settings, kubectl)
    assert failures(text) == [("✗ node localdev-worker: localdev-worker is exited", "fix: docker start localdev-worker")]
    for node in ("localdev-worker", "localdev-control-plane"):
        del engine.containers[node]
    _, text = status(settings, kubectl)
    assert failures(text) == [("✗ cluster localdev: no kind nodes for cluster localdev", "fix: pulumi up --refresh --stack dev")]


def test_colour_only_on_a_tty_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    from localdev.ops.output import Style

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert Style(Tty()).ok == "\033[32m✓\033[0m"
    assert Style(io.StringIO()).ok == "✓"
    monkeypatch.setenv("NO_COLOR", "1")
    assert Style(Tty()).bad == "✗"


def test_cli_status_without_a_docker_daemon_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    proc = subprocess.run(
        [sys.executable, "-m", "localdev.cli", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: cannot reach the Docker daemon (no daemon socket) (fix: start Docker (or point DOCKER_HOST at it), then retry)"
    ]


def test_stats_reads_the_cache_volume_through_docker(make_registry: Any, relay_factory: Any, engine: FakeDockerEngine) -> None:
    """stats for the stack: content from the container's volume (archive endpoint), metrics at port+100."""
    upstream = make_registry("upstream")
    image = make_image("library/alpha", "1", [30_000, 20_000], seed=7)
    push_image(upstream.url, image)
    relay = relay_factory(upstream)
    port = free_port()
    settings = parse_settings({"mirrors": [f"docker.io={port}=http://127.0.0.1:1"], "pushRegistryPort": free_port()})
    mirror = settings.mirrors[0]
    env = {**render_cache_env(settings, mirror), "REGISTRY_PROXY_REMOTEURL": relay.url}
    cache = make_registry("cache", env=env, port=port, debug_port=mirror.metrics_port)
    pull_manifest_and_blobs(cache.url, "library/alpha", "1")
    wait_until(
        lambda: len(held_blobs(LocalStorage(cache.storage), "library/alpha")) == 3, 10, "the cache committing 3 blobs"
    )  # 2.8 commits after serving
    engine.add(settings.cache_name(mirror), dirs={"/var/lib/registry": cache.storage})
    targets, notes = stack_targets(settings, docker.from_env)
    assert notes == []
    report = collect(targets[0]).as_dict()
    assert report["content"]["source"] == "volume of container localdev-cache-docker-io"
    assert report["content"]["repositories"] == [
        {"name": "library/alpha", "tags": ["1"], "manifests": 1, "blobs": 3, "bytes": image.total_size}
    ]
    assert report["metrics"]["manifest"]["misses"] == relay.manifest_gets() == 1
    push = collect(targets[1]).as_dict()  # the push container does not exist in the fake engine
    assert push["content_error"] and "cannot reach the registry" in push["content_error"]
    assert any("does not exist" in n for n in push["notes"])
