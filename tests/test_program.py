"""The whole program under Pulumi mocks: resources, inputs, secrets and the ordering edges."""

from __future__ import annotations

import base64
import json
from typing import Any

import pulumi
import pytest

from localdev.render import content_hash, read_node_check_script, read_script, render_kind_config, render_node_hosts
from localdev.settings import parse_settings
from tests.program import FAKE_KUBECONFIG, Graph, Registration, run_program

MIRRORS = ["docker.io", "ghcr.io", "quay.io"]
PASSWORD = "dckr_pat_not-a-real-token"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return run_program(
        {"mirrors": MIRRORS, "workers": 1, "dockerHubUsername": "someone", "dockerHubPassword": PASSWORD},
        secret_keys=("dockerHubPassword",),
    )


def containers(graph: Graph) -> dict[str, Registration]:
    return {r.inputs["name"]: r for r in graph.of_type("docker:index/container:Container")}


def command(graph: Graph, name: str) -> Registration:
    return graph.named(name)


def test_one_cache_per_mirror_and_a_push_registry(graph: Graph) -> None:
    assert sorted(containers(graph)) == sorted(
        ["localdev-cache-docker-io", "localdev-cache-ghcr-io", "localdev-cache-quay-io", "localdev-registry"]
    )
    for name, container in containers(graph).items():
        env = dict(e.split("=", 1) for e in _unsecret(container.inputs["envs"]))
        if name == "localdev-registry":
            assert not any(k.startswith("REGISTRY_PROXY") for k in env), "a proxy-mode registry refuses pushes"
        else:
            assert env["REGISTRY_PROXY_REMOTEURL"].startswith("https://")
            assert env["REGISTRY_STORAGE_DELETE_ENABLED"] == "true"
        assert container.inputs["restart"] == "unless-stopped"
        assert container.inputs["destroyGraceSeconds"] > 0, "destroy must stop a registry before removing it"
        assert container.inputs["healthcheck"]["tests"][0] == "CMD"
    cache = containers(graph)["localdev-cache-ghcr-io"]
    assert dict(e.split("=", 1) for e in cache.inputs["envs"])["REGISTRY_PROXY_REMOTEURL"] == "https://ghcr.io"


def test_registries_log_at_info_into_bounded_files(graph: Graph) -> None:
    for name, container in containers(graph).items():
        env = dict(e.split("=", 1) for e in _unsecret(container.inputs["envs"]))
        assert env["REGISTRY_LOG_LEVEL"] == "info", name
        assert container.inputs["logDriver"] == "json-file", name
        opts = container.inputs["logOpts"]
        assert opts["max-size"].endswith("m") and int(opts["max-size"][:-1]) > 0, name
        assert int(opts["max-file"]) >= 1, name


def test_every_published_port_is_on_loopback(graph: Graph) -> None:
    published = {}
    for name, container in containers(graph).items():
        for port in container.inputs["ports"]:
            assert port["ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            published[int(port["external"])] = name
    assert published[5000] == "localdev-cache-docker-io"
    assert published[5001] == "localdev-registry"
    assert published[5100] == "localdev-cache-docker-io"  # its metrics
    assert len(published) == 7


def test_volumes_are_retained_and_mounted(graph: Graph) -> None:
    volumes = {r.inputs["name"]: r for r in graph.of_type("docker:index/volume:Volume")}
    assert sorted(volumes) == sorted(f"{name}-data" for name in containers(graph))
    assert all(v.retain_on_delete for v in volumes.values())
    for name, container in containers(graph).items():
        [mount] = container.inputs["volumes"]
        assert (mount["volumeName"], mount["containerPath"]) == (f"{name}-data", "/var/lib/registry")
        assert graph.depends_on(container, volumes[f"{name}-data"])


def test_retain_switch_turns_retention_off() -> None:
    graph = run_program({"retainCaches": False})
    assert [v.retain_on_delete for v in graph.of_type("docker:index/volume:Volume")] == [False, False]


def test_volumes_keep_their_names_across_runs(graph: Graph) -> None:
    again = run_program(
        {"mirrors": MIRRORS, "workers": 1, "dockerHubUsername": "someone", "dockerHubPassword": PASSWORD},
        secret_keys=("dockerHubPassword",),
    )

    def ids(g: Graph) -> list[tuple[str, str]]:
        return sorted((v.urn, v.inputs["name"]) for v in g.of_type("docker:index/volume:Volume"))

    assert ids(graph) == ids(again)


def test_docker_hub_credentials_are_secret_and_only_on_the_docker_io_cache(graph: Graph) -> None:
    by_name = containers(graph)
    assert "envs" in by_name["localdev-cache-docker-io"].secret_paths()
    assert "envs" not in by_name["localdev-cache-ghcr-io"].secret_paths()
    assert not any("REGISTRY_PROXY_PASSWORD" in e for e in by_name["localdev-cache-ghcr-io"].inputs["envs"])
    for registration in graph.registrations:
        _assert_only_inside_secrets(registration.raw, PASSWORD, registration.name)


def test_plain_text_password_is_refused_before_anything_is_created() -> None:
    with pytest.raises(pulumi.RunError, match=r"dockerHubPassword.*plain text.*--secret"):
        run_program({"dockerHubUsername": "someone", "dockerHubPassword": PASSWORD})


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"mirrors": ["docker.io", "docker.io"]}, "listed twice"),
        ({"mirrors": ["ghcr.io=5001"]}, "both want 127.0.0.1:5001"),
        ({"workers": -1}, "outside 0-10"),
        ({"mirors": ["docker.io"]}, "did you mean 'mirrors'"),
        ({"mirrors": ["ghcr.io=5002=not-a-url"]}, "not a scheme://host"),
    ],
)
def test_bad_config_fails_before_any_resource(config: dict[str, Any], words: str) -> None:
    graph = run_program(config, raise_errors=False)
    assert isinstance(graph.error, pulumi.RunError)
    assert words in str(graph.error) and "Fix:" in str(graph.error)
    assert graph.registrations == []


def test_kind_cluster_command(graph: Graph) -> None:
    cluster = command(graph, "cluster-kind")
    settings = parse_settings({"mirrors": MIRRORS, "workers": 1})
    config = render_kind_config(settings)
    assert cluster.inputs["stdin"] == config
    assert "registry.mirrors" not in config and 'config_path = "/etc/containerd/certs.d"' in config
    assert "kind create cluster" in cluster.inputs["create"] and "kind get clusters" in cluster.inputs["create"]
    assert 'kind delete cluster --name "$CLUSTER_NAME"' in cluster.inputs["delete"]
    assert cluster.inputs["environment"] == {"CLUSTER_NAME": "localdev", "CERTS_DIR": "/etc/containerd/certs.d"}
    assert cluster.inputs["triggers"] == [content_hash(config)]
    assert cluster.delete_before_replace, "a fixed cluster name cannot be created before the old one is deleted"
    assert cluster.additional_secret_outputs == ["stdout"]
    assert cluster.inputs["logging"] == "stderr", "stdout carries the kubeconfig and must stay out of logs"


def test_cluster_changes_replace_it_and_mirror_changes_rewire_nodes(graph: Graph) -> None:
    bigger = run_program({"mirrors": MIRRORS, "workers": 2})
    more_mirrors = run_program({"mirrors": [*MIRRORS, "registry.k8s.io"], "workers": 1})
    trigger = lambda g, name: command(g, name).inputs["triggers"][0]  # noqa: E731
    assert trigger(bigger, "cluster-kind") != trigger(graph, "cluster-kind")
    assert trigger(more_mirrors, "cluster-kind") == trigger(graph, "cluster-kind")
    assert trigger(more_mirrors, "node-mirrors-hosts") != trigger(graph, "node-mirrors-hosts")


def test_kubeconfig_is_secret_and_feeds_the_provider(graph: Graph) -> None:
    provider = graph.named("cluster-provider")
    assert provider.type == "pulumi:providers:kubernetes"
    assert "kubeconfig" in provider.secret_paths()
    assert command(graph, "cluster-kind").urn in provider.property_dependencies["kubeconfig"]
    assert provider.inputs["context"] == "kind-localdev"


def test_network_attachment_waits_for_cluster_and_registries(graph: Graph) -> None:
    attach = command(graph, "registries-network-connect")
    assert graph.depends_on(attach, command(graph, "cluster-kind"))
    for container in containers(graph).values():
        assert graph.depends_on(attach, container), container.name
    assert attach.inputs["environment"] == {"CONTAINERS": " ".join(sorted(containers(graph)))}
    assert attach.inputs["create"] == read_script("attach-network.sh")
    assert attach.inputs["delete"] == read_script("detach-network.sh")
    assert attach.delete_before_replace, "replacing must detach before it attaches again"


def test_node_mirrors_wait_for_the_cluster_and_write_every_hosts_toml(graph: Graph) -> None:
    wiring = command(graph, "node-mirrors-hosts")
    assert graph.depends_on(wiring, command(graph, "cluster-kind"))
    settings = parse_settings({"mirrors": MIRRORS})
    assert wiring.inputs["create"] == read_node_check_script("wire-nodes.sh")
    assert wiring.inputs["environment"]["CERTS_DIR"] == "/etc/containerd/certs.d"
    shipped = dict(line.split(" ") for line in wiring.inputs["environment"]["HOSTS_FILES"].splitlines())
    assert {rel: base64.b64decode(payload).decode() for rel, payload in shipped.items()} == render_node_hosts(settings)


def test_every_config_file_waits_for_the_caches_to_be_in_the_path(graph: Graph) -> None:
    config_files = graph.of_type("kubernetes:yaml/v2:ConfigFile")
    assert config_files, "no workloads registered"
    wiring, attach = command(graph, "node-mirrors-hosts"), command(graph, "registries-network-connect")
    provider = graph.named("cluster-provider")
    for config_file in config_files:
        assert graph.depends_on(config_file, wiring), config_file.name
        assert graph.depends_on(config_file, attach), config_file.name
        assert config_file.provider.startswith(provider.urn), config_file.name


def test_local_registry_hosting_configmap(graph: Graph) -> None:
    config_map = graph.named("local-registry-hosting-configmap")
    assert config_map.inputs["metadata"] == {"name": "local-registry-hosting", "namespace": "kube-public"}
    assert "host: localhost:5001" in config_map.inputs["data"]["localRegistryHosting.v1"]
    assert config_map.provider.startswith(graph.named("cluster-provider").urn)


def test_children_are_parented_and_named_after_their_component(graph: Graph) -> None:
    components = {r.urn: r for r in graph.registrations if r.type.startswith("localdev:index:")}
    for registration in graph.registrations:
        if registration.type.startswith("localdev:index:") or registration.name == "registry-image":
            continue
        parent = components.get(registration.parent)
        assert parent is not None, f"{registration.name} is not inside a component"
        assert registration.name.startswith(parent.name), f"{registration.name} not named after {parent.name}"


def test_stack_outputs(graph: Graph) -> None:
    outputs = graph.outputs
    assert outputs["clusterName"] == "localdev"
    assert outputs["kubeContext"] == "kind-localdev"
    assert outputs["pushRegistry"] == "localhost:5001"
    assert outputs["caches"] == {
        "docker.io": "http://127.0.0.1:5000",
        "ghcr.io": "http://127.0.0.1:5002",
        "quay.io": "http://127.0.0.1:5003",
    }
    assert _contains_secret_marker(graph.outputs_raw["kubeconfig"])
    assert _unsecret(outputs["kubeconfig"]) == FAKE_KUBECONFIG


def _unsecret(value: Any) -> Any:
    if isinstance(value, dict) and "value" in value and len(value) == 2:
        return value["value"]
    return value


def _contains_secret_marker(value: Any) -> bool:
    return "1b47061264138c4ac30d75fd1eb44270" in json.dumps(value)


def _assert_only_inside_secrets(value: Any, needle: str, where: str) -> None:
    """Fail if ``needle`` appears anywhere not wrapped in a Pulumi secret."""
    if isinstance(value, dict):
        if _contains_secret_marker({k: v for k, v in value.items() if k != "value"}) and len(value) == 2:
            return
        for item in value.values():
            _assert_only_inside_secrets(item, needle, where)
    elif isinstance(value, list):
        for item in value:
            _assert_only_inside_secrets(item, needle, where)
    else:
        assert needle not in str(value), f"{where} carries the secret in plain text"
