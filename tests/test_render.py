"""Renderers: the files and scripts the program hands to kind, containerd and Docker."""

from __future__ import annotations

import os
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from localdev.cli import main as cli_main
from localdev.cli import render_files
from localdev.render import (
    CERTS_DIR,
    ShellCommand,
    render_cache_env,
    render_containerd_patch,
    render_env_file,
    render_kind_cluster_command,
    render_kind_config,
    render_network_attachment_command,
    render_node_hosts,
    render_node_wiring_command,
    render_push_env,
    render_registry_hosting,
)
from localdev.settings import ENCRYPTED, parse_settings, stack_values

SETTINGS = parse_settings({"workers": 2, "mirrors": ["docker.io", "ghcr.io", "registry.k8s.io"]})


def test_containerd_patch_sets_config_path_only() -> None:
    patch = tomllib.loads(render_containerd_patch())
    registry = patch["plugins"]["io.containerd.grpc.v1.cri"]["registry"]
    assert registry == {"config_path": CERTS_DIR}


def test_kind_config_nodes_patch_and_loopback_ports() -> None:
    config = yaml.safe_load(render_kind_config(SETTINGS))
    assert config["kind"] == "Cluster" and config["name"] == "localdev"
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker"]
    assert {n["image"] for n in config["nodes"]} == {SETTINGS.node_image}
    assert config["containerdConfigPatches"] == [render_containerd_patch()]
    assert config["networking"]["apiServerAddress"] == "127.0.0.1"
    mappings = config["nodes"][0]["extraPortMappings"]
    assert {(m["hostPort"], m["containerPort"]) for m in mappings} == {(3000, 30300), (9090, 30900), (16686, 31686)}
    assert {m["listenAddress"] for m in mappings} == {"127.0.0.1"}


def test_hosts_toml_per_mirror_falls_back_to_upstream() -> None:
    files = render_node_hosts(SETTINGS)
    assert list(files) == sorted(
        ["docker.io/hosts.toml", "ghcr.io/hosts.toml", "registry.k8s.io/hosts.toml", "localhost:5001/hosts.toml"]
    )
    docker_io = tomllib.loads(files["docker.io/hosts.toml"])
    assert docker_io == {
        "server": "https://registry-1.docker.io",
        "host": {"http://localdev-cache-docker-io:5000": {"capabilities": ["pull", "resolve"]}},
    }
    push = tomllib.loads(files["localhost:5001/hosts.toml"])
    assert "server" not in push
    assert push["host"] == {"http://localdev-registry:5000": {"capabilities": ["pull", "resolve", "push"]}}


def test_cache_env_is_a_proxy_and_push_env_is_not() -> None:
    env = render_cache_env(SETTINGS, SETTINGS.mirrors[1])
    assert env["REGISTRY_PROXY_REMOTEURL"] == "https://ghcr.io"
    assert env["REGISTRY_STORAGE_DELETE_ENABLED"] == "true"
    assert env["REGISTRY_PROXY_TTL"] == "720h"
    assert "REGISTRY_PROXY_PASSWORD" not in env
    assert not any(k.startswith("REGISTRY_PROXY") for k in render_push_env(SETTINGS))


def test_env_file_masks_the_upstream_password() -> None:
    settings = parse_settings({"dockerHubUsername": "me", "dockerHubPassword": ENCRYPTED}, ["dockerHubPassword"])
    env = render_cache_env(settings, settings.mirrors[0], with_credentials=True) | {"REGISTRY_PROXY_PASSWORD": "hunter2"}
    text = render_env_file(env)
    assert "REGISTRY_PROXY_USERNAME=me\n" in text
    assert "REGISTRY_PROXY_PASSWORD=********\n" in text
    assert "hunter2" not in text


def test_registry_hosting_names_the_push_registry() -> None:
    data = yaml.safe_load(render_registry_hosting(SETTINGS))
    assert data["host"] == "localhost:5001"
    # What tools write into pod specs must be a name the nodes have a hosts.toml for.
    assert data["hostFromContainerRuntime"] == "localhost:5001"
    assert f"{data['hostFromContainerRuntime']}/hosts.toml" in render_node_hosts(SETTINGS)
    other = parse_settings({"clusterName": "other", "pushRegistryPort": 5101})
    other_data = yaml.safe_load(render_registry_hosting(other))
    assert other_data["host"] == other_data["hostFromContainerRuntime"] == "localhost:5101"
    assert "localhost:5101/hosts.toml" in render_node_hosts(other)


def test_render_command_writes_every_file_identically_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for out in ("a", "b"):
        assert cli_main(["render", str(tmp_path / out), "--stack", "dev"]) == 0
    a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert a == b
    names = {str(p) for p in a}
    assert {"kind-config.yaml", "certs.d/docker.io/hosts.toml", "certs.d/localhost:5001/hosts.toml"} <= names
    assert "registries/localdev-cache-quay-io.env" in names and "registries/localdev-cache-quay-io.entrypoint" in names
    assert "registries/localdev-registry.env" in names
    assert set(render_files(parse_settings(stack_values("dev")))) == names


def test_render_command_reports_bad_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["render", str(tmp_path), "--stack", "missing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --stack: there is no Pulumi.missing.yaml") and err.count("\n") == 1


# The scripts run against fake `kind` and `docker` commands that act on a
# directory per node, so what they would do to real nodes is checked for real.
FAKE_DOCKER = r"""#!/bin/sh
set -eu
echo "docker $*" >> "$FAKE_ROOT/calls"
case "$1" in
  exec)
    shift; [ "$1" = "-i" ] && shift; node=$1; shift
    case "$1" in
      mkdir) mkdir -p "$FAKE_ROOT/$node$3" ;;
      cp) cat > "$FAKE_ROOT/$node$3" ;;
      find) [ -d "$FAKE_ROOT/$node$2" ] && find "$FAKE_ROOT/$node$2" -name "$4" | sed "s|^$FAKE_ROOT/$node||" ;;
      rm) rm -f "$FAKE_ROOT/$node$3" ;;
      rmdir) rmdir "$FAKE_ROOT/$node$2" ;;
      containerd)
        # A node's effective config: $node.dump when the test wrote one, else what a patched node dumps.
        if [ -e "$FAKE_ROOT/$node.dump" ]; then cat "$FAKE_ROOT/$node.dump"; else
          printf "%s\n" "  [plugins.'io.containerd.cri.v1.images'.registry]" "    config_path = '/etc/containerd/certs.d'" \
            "  [plugins.'io.containerd.transfer.v1.local']" "    config_path = ''"
        fi ;;
    esac ;;
  inspect)
    name=$(eval echo \$$#)
    if [ -e "$FAKE_ROOT/attached-$name" ]; then echo '{"Aliases":[]}'; else echo null; fi ;;
  network)
    [ "$2" = connect ] && touch "$FAKE_ROOT/attached-$(eval echo \$$#)" ;;
esac
"""
FAKE_KIND = r"""#!/bin/sh
set -eu
echo "kind $*" >> "$FAKE_ROOT/calls"
case "$1 $2" in
  "get nodes") echo localdev-control-plane; echo localdev-worker ;;
  "get clusters") cat "$FAKE_ROOT/clusters" 2>/dev/null || true ;;
  "create cluster") cat > "$FAKE_ROOT/kind-config-received"; echo localdev >> "$FAKE_ROOT/clusters" ;;
  "get kubeconfig") echo "apiVersion: v1" ;;
esac
"""


@pytest.fixture
def fake_tools(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("docker", FAKE_DOCKER), ("kind", FAKE_KIND)):
        tool = bin_dir / name
        tool.write_text(body)
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_ROOT": str(tmp_path)}


def run_script(
    shell: ShellCommand, env: dict[str, str], script: str | None = None, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``shell.create`` (or ``script``) as a local Command does: ``sh -c``, its environment, its stdin."""
    return subprocess.run(
        ["sh", "-c", script or shell.create],
        input=shell.stdin or "",
        env={**env, **shell.environment},
        capture_output=True,
        text=True,
        timeout=30,
        check=check,
    )


#: `containerd config dump` of a node whose CRI registry section has no config_path (containerd
#: 2.1's default; what a node shows when kind skipped the patch), with the transfer service's own.
DUMP_WITHOUT_CONFIG_PATH = """version = 3
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = ''
  [plugins.'io.containerd.transfer.v1.local']
    config_path = '/etc/containerd/certs.d'
"""


def test_node_wiring_removes_the_hosts_toml_of_a_mirror_no_longer_configured(fake_tools: dict[str, str]) -> None:
    root = Path(fake_tools["FAKE_ROOT"])
    stale = root / f"localdev-worker{CERTS_DIR}/old.example/hosts.toml"
    stale.parent.mkdir(parents=True)
    stale.write_text('server = "https://old.example"\n')
    result = run_script(render_node_wiring_command(SETTINGS), fake_tools)
    assert not stale.parent.exists()
    assert f"removed {CERTS_DIR}/old.example/hosts.toml from localdev-worker" in result.stderr
    for rel in render_node_hosts(SETTINGS):
        assert (root / f"localdev-worker{CERTS_DIR}/{rel}").exists()


def test_node_wiring_refuses_a_node_whose_containerd_ignores_hosts_toml(fake_tools: dict[str, str]) -> None:
    root = Path(fake_tools["FAKE_ROOT"])
    (root / "localdev-worker.dump").write_text(DUMP_WITHOUT_CONFIG_PATH)
    result = run_script(render_node_wiring_command(SETTINGS), fake_tools, check=False)
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "localdev-worker has CRI config_path ''" in line and "Fix: kind delete cluster --name localdev" in line


def test_node_wiring_reads_a_version_2_dump_too(fake_tools: dict[str, str]) -> None:
    root = Path(fake_tools["FAKE_ROOT"])
    for node in ("localdev-control-plane", "localdev-worker"):
        (root / f"{node}.dump").write_text(
            f'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{CERTS_DIR}"\n'
        )
    run_script(render_node_wiring_command(SETTINGS), fake_tools)


def test_kind_create_refuses_to_adopt_a_cluster_whose_nodes_ignore_hosts_toml(fake_tools: dict[str, str]) -> None:
    root = Path(fake_tools["FAKE_ROOT"])
    (root / "clusters").write_text("localdev\n")
    (root / "localdev-control-plane.dump").write_text(DUMP_WITHOUT_CONFIG_PATH)
    result = run_script(render_kind_cluster_command(SETTINGS), fake_tools, check=False)
    assert result.returncode != 0 and result.stdout == ""
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "kind cluster localdev exists but was not made by localdev" in line
    assert line.endswith("Fix: kind delete cluster --name localdev, then pulumi up")


def test_kind_create_fails_when_kind_skipped_the_patch(fake_tools: dict[str, str]) -> None:
    root = Path(fake_tools["FAKE_ROOT"])
    (root / "localdev-worker.dump").write_text(DUMP_WITHOUT_CONFIG_PATH)
    result = run_script(render_kind_cluster_command(SETTINGS), fake_tools, check=False)
    assert result.returncode != 0 and result.stdout == ""
    assert "skipped localdev's containerd patch" in result.stderr


def test_node_wiring_writes_every_hosts_toml_into_every_node(fake_tools: dict[str, str]) -> None:
    root = Path(fake_tools["FAKE_ROOT"])
    for _ in range(2):  # idempotent: a second run leaves the same files
        run_script(render_node_wiring_command(SETTINGS), fake_tools)
    for node in ("localdev-control-plane", "localdev-worker"):
        for rel, text in render_node_hosts(SETTINGS).items():
            assert (root / f"{node}{CERTS_DIR}/{rel}").read_text() == text


def test_network_attach_is_idempotent(fake_tools: dict[str, str]) -> None:
    root = Path(fake_tools["FAKE_ROOT"])
    run_script(render_network_attachment_command(SETTINGS), fake_tools)
    run_script(render_network_attachment_command(SETTINGS), fake_tools)
    connects = [line for line in (root / "calls").read_text().splitlines() if "network connect" in line]
    assert connects == [
        f"docker network connect --alias {name} kind {name}"
        for name in ("localdev-cache-docker-io", "localdev-cache-ghcr-io", "localdev-cache-registry-k8s-io", "localdev-registry")
    ]


def test_kind_create_adopts_an_existing_cluster(fake_tools: dict[str, str]) -> None:
    root = Path(fake_tools["FAKE_ROOT"])
    config = render_kind_config(SETTINGS)
    shell = render_kind_cluster_command(SETTINGS)
    assert shell.stdin == config
    first = run_script(shell, fake_tools)
    assert (root / "kind-config-received").read_text() == config
    assert first.stdout == "apiVersion: v1\n"
    second = run_script(shell, fake_tools)
    assert "before adopting it" in second.stderr and second.stdout == "apiVersion: v1\n"
    assert sum("create cluster" in line for line in (root / "calls").read_text().splitlines()) == 1


def test_network_detach_takes_every_registry_off_the_network(fake_tools: dict[str, str]) -> None:
    root = Path(fake_tools["FAKE_ROOT"])
    shell = render_network_attachment_command(SETTINGS)
    run_script(shell, fake_tools, script=shell.delete)
    disconnects = [line for line in (root / "calls").read_text().splitlines() if "network disconnect" in line]
    assert disconnects == [f"docker network disconnect kind {name}" for name in shell.environment["CONTAINERS"].split()]
