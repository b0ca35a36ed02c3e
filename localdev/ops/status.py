"""``status``: is the stack's registry plumbing what the config asks for? One line per check.

Talks to Docker through the Docker SDK (``docker.from_env()``): container state,
environment, published ports and networks come from ``inspect``; each node's
``hosts.toml`` files are read with the archive endpoint (``docker cp``) and
compared byte for byte with ``render_node_hosts(settings)``. The
``local-registry-hosting`` ConfigMap is read with kubectl.
"""

from __future__ import annotations

import io
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import docker  # type: ignore[import-untyped]
import httpx

from localdev.containerd import cri_config_path
from localdev.ops.output import Style
from localdev.render import CERTS_DIR, render_node_hosts, render_registry_hosting
from localdev.settings import REGISTRY_API_PORT, REGISTRY_DEBUG_PORT, Mirror, Settings

KIND_NETWORK = "kind"
KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"
PUBLIC_HOST_IPS = frozenset({"", "0.0.0.0", "::", "[::]"})


@dataclass
class Check:
    ok: bool
    subject: str
    message: str
    fix: str | None = None


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=False)


class StatusChecker:
    def __init__(
        self,
        settings: Settings,
        docker_client: Any,
        *,
        stack: str | None = None,
        which: Callable[[str], str | None] = shutil.which,
        run: Runner = _run,
        http_timeout: float = 5.0,
    ) -> None:
        self.settings = settings
        self.docker = docker_client
        self.stack = stack
        self.which = which
        self.run = run
        self.http_timeout = http_timeout
        self.checks: list[Check] = []

    # --------------------------------------------------------------- helpers
    @property
    def pulumi_up(self) -> str:
        return "pulumi up --refresh" + (f" --stack {shlex.quote(self.stack)}" if self.stack else "")

    def add(self, ok: bool, subject: str, message: str, fix: str | None = None) -> bool:
        self.checks.append(Check(ok, subject, message, None if ok else fix))
        return ok

    def _container(self, name: str) -> Any | None:
        try:
            return self.docker.containers.get(name)
        except docker.errors.NotFound:
            return None

    # ------------------------------------------------------------ registries
    def registry(self, name: str, subject: str, mirror: Mirror | None) -> None:
        container = self._container(name)
        if container is None:
            self.add(False, subject, f"container {name} does not exist", self.pulumi_up)
            return
        attrs = container.attrs
        state = attrs.get("State") or {}
        status = state.get("Status", "unknown")
        health = (state.get("Health") or {}).get("Status")
        running = status == "running"
        detail = f"{status}" + (f" ({health})" if health else "")
        if running and health == "unhealthy":
            self.add(False, subject, f"{name} is running but unhealthy", f"docker logs {name}")
        else:
            self.add(running, subject, f"{name} is {detail}", f"docker start {name}")
        env = dict(e.split("=", 1) for e in (attrs.get("Config") or {}).get("Env") or [] if "=" in e)
        remote = env.get("REGISTRY_PROXY_REMOTEURL")
        if mirror is not None:
            if remote is None:
                self.add(False, subject, f"{name} is not in proxy mode (no REGISTRY_PROXY_REMOTEURL)", self.pulumi_up)
            elif remote.rstrip("/") != mirror.remote_url.rstrip("/"):
                self.add(False, subject, f"{name} pulls from {remote}, the config says {mirror.remote_url}", self.pulumi_up)
            else:
                self.add(True, subject, f"proxy mode, upstream {remote}")
        elif remote is not None:
            self.add(False, subject, f"{name} is in proxy mode (upstream {remote}), so it refuses pushes", self.pulumi_up)
        self._ports(attrs, name, subject, mirror)
        networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        self.add(
            KIND_NETWORK in networks,
            subject,
            f"attached to the {KIND_NETWORK} network"
            if KIND_NETWORK in networks
            else f"{name} is not on the {KIND_NETWORK} network: nodes cannot reach it",
            f"docker network connect --alias {name} {KIND_NETWORK} {name}",
        )
        if running:
            port = mirror.port if mirror else self.settings.push_port
            url = f"http://127.0.0.1:{port}/v2/"
            try:
                code = httpx.get(url, timeout=self.http_timeout, trust_env=False).status_code
                self.add(code in (200, 401), subject, f"answers at {url} (HTTP {code})", f"docker logs {name}")
            except httpx.HTTPError as err:
                self.add(False, subject, f"no answer at {url} ({type(err).__name__})", f"docker logs {name}")

    def _ports(self, attrs: dict[str, Any], name: str, subject: str, mirror: Mirror | None) -> None:
        running = (attrs.get("State") or {}).get("Status") == "running"
        bindings = ((attrs.get("NetworkSettings") or {}).get("Ports") if running else None) or (
            (attrs.get("HostConfig") or {}).get("PortBindings") or {}
        )
        wanted = {f"{REGISTRY_API_PORT}/tcp": mirror.port if mirror else self.settings.push_port}
        if mirror is not None:
            wanted[f"{REGISTRY_DEBUG_PORT}/tcp"] = mirror.metrics_port
        problems: list[str] = []
        shown: list[str] = []
        for key in sorted(set(bindings) | set(wanted)):
            binds = bindings.get(key) or []
            public = [_address(b) for b in binds if str(b.get("HostIp", "")) in PUBLIC_HOST_IPS]
            if public:
                problems.append(f"publishes {key} on all interfaces ({', '.join(public)}), reachable from other machines")
            if key not in wanted:
                continue
            if any(str(b.get("HostIp")) == "127.0.0.1" and str(b.get("HostPort")) == str(wanted[key]) for b in binds):
                shown.append(f"127.0.0.1:{wanted[key]}")
            elif not public:
                where = ", ".join(_address(b) for b in binds) or "no host port"
                problems.append(f"{key} should be on 127.0.0.1:{wanted[key]} but is on {where}")
        if problems:
            self.add(False, subject, f"{name} " + "; ".join(problems), f"docker rm -f {name} && {self.pulumi_up}")
        else:
            self.add(True, subject, "published on " + " and ".join(shown) + " only")

    # ----------------------------------------------------------------- nodes
    def nodes(self) -> None:
        cluster = self.settings.cluster_name
        nodes = self.docker.containers.list(all=True, filters={"label": f"{KIND_CLUSTER_LABEL}={cluster}"})
        if not nodes:
            self.add(False, f"cluster {cluster}", f"no kind nodes for cluster {cluster}", self.pulumi_up)
            return
        expected = render_node_hosts(self.settings)
        for node in sorted(nodes, key=lambda n: n.name):
            subject = f"node {node.name}"
            if node.attrs.get("State", {}).get("Status") != "running":
                self.add(
                    False,
                    subject,
                    f"{node.name} is {node.attrs.get('State', {}).get('Status', 'not running')}",
                    f"docker start {node.name}",
                )
                continue
            bad = 0
            for rel, text in expected.items():
                path = f"{CERTS_DIR}/{rel}"
                got = read_container_file(node, path)
                if got == text:
                    continue
                bad += 1
                problem = "is missing" if got is None else f"differs from the config ({_first_difference(got, text)})"
                self.add(False, subject, f"{path} {problem}", self._hosts_fix(node.name, rel))
            if not bad:
                self.add(
                    True,
                    subject,
                    f"{len(expected)} hosts.toml files match the config ({', '.join(r.split('/')[0] for r in expected)})",
                )
            self._effective_config_path(node, subject)

    def _effective_config_path(self, node: Any, subject: str) -> None:
        """Files that match prove nothing if containerd does not read them: check what it really uses."""
        # containerd logs warnings (unknown keys, migrations) on stderr: only stdout is the dump.
        code, (stdout, stderr) = node.exec_run(["containerd", "config", "dump"], demux=True)
        output = stdout or b""
        if code != 0:
            text = (stderr or output).decode(errors="replace").strip()[:200]
            self.add(False, subject, f"containerd config dump failed in {node.name}: {text}", f"docker restart {node.name}")
            return
        path = cri_config_path(output.decode(errors="replace"))
        if path == CERTS_DIR:
            self.add(True, subject, f"containerd's CRI reads hosts.toml from {CERTS_DIR}")
            return
        self.add(
            False,
            subject,
            f"containerd's effective CRI config_path is '{path}', not {CERTS_DIR}: it ignores every hosts.toml "
            "and pulls bypass the caches",
            f"kind delete cluster --name {self.settings.cluster_name} && {self.pulumi_up}",
        )

    def _hosts_fix(self, node: str, rel: str) -> str:
        stack = f" --stack {shlex.quote(self.stack)}" if self.stack else ""
        directory = f"{CERTS_DIR}/{rel.rsplit('/', 1)[0]}"
        return (
            f"localdev render /tmp/localdev-render{stack}"
            f" && docker exec {node} mkdir -p {shlex.quote(directory)}"
            f" && docker cp /tmp/localdev-render/certs.d/{shlex.quote(rel)} {node}:{shlex.quote(directory)}/hosts.toml"
        )

    # ------------------------------------------------------------ configmap
    def configmap(self) -> None:
        subject = "ConfigMap"
        context = self.settings.kube_context
        what = "kube-public/local-registry-hosting"
        if self.which("kubectl") is None:
            self.add(
                False,
                subject,
                f"kubectl not found on PATH: cannot check {what}",
                "install kubectl: https://kubernetes.io/docs/tasks/tools/",
            )
            return
        cmd = [
            "kubectl",
            "--context",
            context,
            "-n",
            "kube-public",
            "get",
            "configmap",
            "local-registry-hosting",
            "-o",
            r"jsonpath={.data.localRegistryHosting\.v1}",
        ]
        try:
            proc = self.run(cmd)
        except (subprocess.TimeoutExpired, OSError) as err:
            self.add(False, subject, f"kubectl did not answer ({type(err).__name__})", f"kubectl --context {context} get nodes")
            return
        if proc.returncode != 0:
            message = (proc.stderr or proc.stdout or "").strip().splitlines()
            first = message[-1] if message else f"exit code {proc.returncode}"
            if "NotFound" in first or ("not found" in first and "context" not in first):
                self.add(False, subject, f"{what} does not exist", self.pulumi_up)
            else:
                self.add(False, subject, f"cannot read {what} from {context}: {first}", self.pulumi_up)
            return
        want = render_registry_hosting(self.settings)
        if proc.stdout.strip() != want.strip():
            self.add(False, subject, f"{what} differs from the config ({_first_difference(proc.stdout, want)})", self.pulumi_up)
        else:
            self.add(True, subject, f"{what} advertises {self.settings.push_host}")

    # ------------------------------------------------------------------ all
    def run_all(self) -> list[Check]:
        for mirror in self.settings.mirrors:
            self.registry(self.settings.cache_name(mirror), f"{mirror.host} cache", mirror)
        self.registry(self.settings.push_name, f"push registry {self.settings.push_host}", None)
        self.nodes()
        self.configmap()
        return self.checks


def read_container_file(container: Any, path: str) -> str | None:
    """A small file's text from a container (``docker cp``), None when it does not exist."""
    try:
        chunks, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    data = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                return handle.read().decode(errors="replace") if handle else None
    return None


def _address(binding: dict[str, Any]) -> str:
    ip = str(binding.get("HostIp") or "0.0.0.0")
    return f"[{ip.strip('[]')}]:{binding.get('HostPort')}" if ":" in ip else f"{ip}:{binding.get('HostPort')}"


def _first_difference(got: str, want: str) -> str:
    got_lines, want_lines = got.rstrip("\n").splitlines(), want.rstrip("\n").splitlines()
    for i in range(max(len(got_lines), len(want_lines))):
        g = got_lines[i] if i < len(got_lines) else "<end>"
        w = want_lines[i] if i < len(want_lines) else "<end>"
        if g.strip() != w.strip():
            return f"line {i + 1}: has {g.strip()!r}, want {w.strip()!r}"
    return "whitespace only"


def write_checks(checks: list[Check], out: TextIO, header: str) -> None:
    style = Style(out)
    out.write(style.bold(header) + "\n")
    for check in checks:
        mark = style.ok if check.ok else style.bad
        out.write(f"{mark} {check.subject}: {check.message}\n")
        if check.fix:
            out.write(f"    fix: {check.fix}\n")
    failed = sum(not c.ok for c in checks)
    if failed:
        out.write(style.paint(f"{failed} of {len(checks)} checks failed", "\033[31m") + "\n")
    else:
        out.write(style.paint(f"all {len(checks)} checks passed", "\033[32m") + "\n")


def run_status(settings: Settings, docker_client: Any, out: TextIO, *, stack: str | None = None, **options: Any) -> int:
    """Run every check, print them, and return the exit code (1 when anything is wrong)."""
    checks = StatusChecker(settings, docker_client, stack=stack, **options).run_all()
    where = f"stack {stack}" if stack else "Pulumi.yaml defaults (no --stack)"
    write_checks(checks, out, f"{where} · cluster {settings.cluster_name}")
    return 1 if any(not c.ok for c in checks) else 0
