"""The whole end-to-end environment: private engine, guard, tools, images, upstream, stack, executor."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.harness.net import wait_for_http

from . import debian, images
from .docker import docker, inspect
from .executor import Executor, Plan, Step, load_plan
from .paths import cache_dir
from .stack import DEFAULT_STACK, TestStack

HERE = Path(__file__).resolve().parent
ENGINE = HERE / "engine.sh"
UPSTREAM = "e2e-upstream"
#: The upstream registry's port on 127.0.0.1 (for skopeo and the tests), and on the bridge gateway
#: (for the caches). Fixed, so the caches' remote URL survives a restart of the upstream.
UPSTREAM_PORT = 25090
UPSTREAM_GATEWAY_PORT = 25091
LABEL = "localdev.e2e"
#: What the engine's pinned pool and kind's fixed IPv6 subnet allow (engine.sh).
GUARDED = (ipaddress.ip_network("172.30.0.0/16"), ipaddress.ip_network("fc00:f853:ccd:e793::/64"))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_engine() -> str:
    """Start the private engine (and its guard) unless it answers; export and return DOCKER_HOST."""
    out = subprocess.run([str(ENGINE), "start"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"private engine did not start: {out.stderr.strip()}")
    host = out.stdout.strip().splitlines()[-1].split("=", 1)[1]
    os.environ["DOCKER_HOST"] = host
    return host


def check_guard() -> None:
    """Every subnet of every network on the engine lies inside what the guard lets through."""
    names = docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    for name in names:
        net = inspect("network", name) or {}
        for config in (net.get("IPAM") or {}).get("Config") or []:
            subnet = ipaddress.ip_network(config["Subnet"])
            if not any(subnet.version == g.version and subnet.subnet_of(g) for g in GUARDED):  # type: ignore[arg-type]
                raise RuntimeError(f"network {name} has subnet {subnet}, outside the egress guard {GUARDED}")


def guard_drops() -> int:
    """Packets the egress guard has dropped so far (its IPv4 chain's DROP counter)."""
    out = subprocess.run(["iptables", "-w", "-L", "LOCALDEV-E2E", "-v", "-x", "-n"], capture_output=True, text=True, check=True)
    return sum(int(line.split()[0]) for line in out.stdout.splitlines() if " DROP " in f" {line} ")


@dataclass
class Environment:
    """One end-to-end stack on the private engine."""

    stack_name: str = DEFAULT_STACK
    log: Callable[[str], None] = _log

    def __post_init__(self) -> None:
        self.cache = cache_dir()
        self.run_dir = self.cache / "stacks" / self.stack_name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.bin = self.cache / "bin"
        start_engine()

    # ------------------------------------------------------------------ tools
    def tools(self) -> dict[str, str]:
        """The environment every Command runs in: kind 0.33.0 and the docker stand-in first on PATH."""
        start_engine()
        kind = debian.kind_binary()
        self.bin.mkdir(parents=True, exist_ok=True)
        for name, target in (("kind", kind), ("docker", HERE / "standins" / "docker.sh")):
            link = self.bin / name
            if not link.is_symlink() or os.readlink(link) != str(target):
                link.unlink(missing_ok=True)
                link.symlink_to(target)
        return {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            # kind writes the cluster's context into KUBECONFIG; keep the user's own file untouched.
            "KUBECONFIG": str(self.run_dir / "kubeconfig"),
        }

    def kind(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kind", *args], env=self.tools(), capture_output=True, text=True, check=check, input=input)

    # -------------------------------------------------------------- upstream
    def gateway(self) -> str:
        bridge = inspect("network", "bridge") or {}
        config = bridge["IPAM"]["Config"][0]
        # The default bridge reports no Gateway; Docker gives docker0 the subnet's first address.
        return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))

    def upstream_url(self) -> str:
        """How the caches reach the test's upstream: the bridge gateway, where it is published too."""
        return f"http://{self.gateway()}:{UPSTREAM_GATEWAY_PORT}"

    def start_upstream(self, registry_image: str, *, restart: bool = True) -> str:
        """The test's own upstream registry (a plain registry); returns its 127.0.0.1 address.

        Created when missing; a stopped one is started again only with ``restart`` (a test that
        stopped it to be offline keeps it stopped through ``up``).
        """
        state = inspect("container", UPSTREAM)
        if state is not None and state["State"]["Status"] == "created":
            docker("rm", "-f", UPSTREAM)
            state = None
        if state is None:
            images.ensure_registry_image(registry_image)
            docker(
                "run", "-d", "--pull", "never", "--name", UPSTREAM, "--label", f"{LABEL}=upstream",
                "-p", f"127.0.0.1:{UPSTREAM_PORT}:5000", "-p", f"{self.gateway()}:{UPSTREAM_GATEWAY_PORT}:5000",
                "--mount", f"type=volume,src={UPSTREAM}-data,dst=/var/lib/registry",
                "-e", "REGISTRY_STORAGE_DELETE_ENABLED=true", registry_image,
            )  # fmt: skip
        elif restart and not state["State"]["Running"]:
            docker("start", UPSTREAM)
        else:
            return f"127.0.0.1:{UPSTREAM_PORT}"
        # docker-proxy accepts connections before the registry listens, then drops them.
        wait_for_http(f"http://127.0.0.1:{UPSTREAM_PORT}/v2/", timeout=30)
        return f"127.0.0.1:{UPSTREAM_PORT}"

    def stop_upstream(self) -> None:
        docker("stop", "-t", "2", UPSTREAM, check=False)

    def upstream_blob_gets(self) -> dict[str, int]:
        """Blob GETs the upstream has answered since it was created, by digest (from its access log)."""
        logs = docker("logs", UPSTREAM).stderr + docker("logs", UPSTREAM).stdout
        counts: dict[str, int] = {}
        for line in logs.splitlines():
            if "http.request.method=GET" in line and "/blobs/sha256:" in line and "response.status=200" in line:
                digest = "sha256:" + line.split("/blobs/sha256:", 1)[1][:64]
                counts[digest] = counts.get(digest, 0) + 1
        return counts

    # ----------------------------------------------------------------- stack
    def stack(self, **changes: Any) -> TestStack:
        return replace(TestStack(self.stack_name, self.upstream_url()), **changes)

    def prepare(self, stack: TestStack) -> Plan:
        """Engine, guard, images and upstream ready; the program's plan for ``stack``."""
        self.tools()
        settings = stack.settings()
        images.ensure_registry_image(settings.registry_image)
        images.ensure_node_image(settings.node_image)
        self.start_upstream(settings.registry_image, restart=False)
        check_guard()
        return load_plan(stack.config())

    def executor(self) -> Executor:
        return Executor(self.run_dir / "state.json", self.tools(), self.log)

    def up(self, stack: TestStack | None = None) -> list[Step]:
        stack = stack or self.stack()
        plan = self.prepare(stack)
        steps = self.executor().up(plan)
        check_guard()
        if plan.not_applied:
            self.log(f"not applied (no API server here): {len(plan.not_applied)} resources, e.g. {plan.not_applied[0]}")
        return steps

    def destroy(self, targets: tuple[str, ...] = ()) -> list[Step]:
        """Everything, or the named resources and their dependents."""
        self.tools()
        return self.executor().destroy(targets)

    def forget_state(self) -> None:
        """The executor's record of what it created (after everything it names is gone)."""
        (self.run_dir / "state.json").unlink(missing_ok=True)

    def remove_volumes(self) -> None:
        """The volumes ``destroy`` keeps (retain_on_delete), and the upstream's."""
        prefix = f"{self.stack_name}-"
        for name in docker("volume", "ls", "-q").stdout.split():
            if name.startswith(prefix) or name == f"{UPSTREAM}-data":
                docker("volume", "rm", "-f", name, check=False)

    def node_names(self) -> list[str]:
        return self.kind("get", "nodes", "--name", self.stack_name).stdout.split()

    def node_pid(self, node: str) -> int:
        return int(docker("inspect", "-f", "{{.State.Pid}}", node).stdout.strip())

    def containerd_socket(self, node: str) -> Path:
        """The node's containerd socket, reached from the host through the node's root."""
        return Path(f"/proc/{self.node_pid(node)}/root/run/containerd/containerd.sock")

    def exec(self, node: str, *args: str) -> str:
        return docker("exec", node, *args).stdout
