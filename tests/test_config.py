"""Stack settings: defaults from Pulumi.yaml, and a clear error for every bad input."""

from __future__ import annotations

import pytest

from localdev.settings import ConfigError, load_schema, parse_mirror, parse_settings, stack_values


def test_defaults_come_from_pulumi_yaml() -> None:
    settings = parse_settings({})
    schema = load_schema()
    assert settings.cluster_name == schema["clusterName"]["default"] == "localdev"
    assert [m.host for m in settings.mirrors] == ["docker.io"]
    docker_io = settings.mirrors[0]
    assert (docker_io.remote_url, docker_io.port, docker_io.metrics_port) == ("https://registry-1.docker.io", 5000, 5100)
    assert settings.push_port == 5001 and settings.push_host == "localhost:5001"
    assert settings.retain_caches is True
    assert settings.proxy_ttl == "720h"


def test_every_schema_key_has_type_default_and_description() -> None:
    for key, spec in load_schema().items():
        assert {"type", "default", "description"} <= set(spec), key


def test_runtime_strings_and_namespaced_keys_are_accepted() -> None:
    settings = parse_settings(
        {
            "localdev:workers": "2",
            "localdev:retainCaches": "false",
            "localdev:mirrors": '["docker.io", "ghcr.io", "my.registry.example:8443=5010=https://my.registry.example:8443"]',
            "kubernetes:context": "ignored: another namespace",
        }
    )
    assert settings.workers == 2 and settings.retain_caches is False
    custom = settings.mirrors[2]
    assert (custom.host, custom.port, custom.remote_url, custom.slug) == (
        "my.registry.example:8443",
        5010,
        "https://my.registry.example:8443",
        "my-registry-example-8443",
    )
    assert settings.cache_name(settings.mirrors[1]) == "localdev-cache-ghcr-io"


def test_dev_stack_file_parses() -> None:
    settings = parse_settings(stack_values("dev"))
    assert {m.host for m in settings.mirrors} == {"docker.io", "ghcr.io", "quay.io", "registry.k8s.io"}


@pytest.mark.parametrize(
    ("values", "key", "words"),
    [
        ({"mirrors": ["docker.io", "docker.io"]}, "mirrors", "listed twice"),
        ({"mirrors": ["ghcr.io=5001"]}, "mirrors", "both want 127.0.0.1:5001"),
        ({"mirrors": ["docker.io", "quay.io=5100"]}, "mirrors", "both want 127.0.0.1:5100"),
        ({"pushRegistryPort": 5000}, "pushRegistryPort", "both want 127.0.0.1:5000"),
        ({"mirrors": ["ghcr.io=5002=ftp://ghcr.io"]}, "mirrors", "not a scheme://host"),
        ({"mirrors": ["ghcr.io=5002=https://ghcr.io/v2/x"]}, "mirrors", "not a scheme://host"),
        ({"mirrors": ["not a host"]}, "mirrors", "does not start with a registry host"),
        ({"mirrors": ["my.registry.example"]}, "mirrors", "has no default cache port"),
        ({"mirrors": ["ghcr.io=80"]}, "mirrors", "outside 1024-65535"),
        ({"mirrors": []}, "mirrors", "no registry to cache"),
        ({"mirrors": "docker.io"}, "mirrors", "not a list"),
        ({"workers": 11}, "workers", "outside 0-10"),
        ({"workers": "two"}, "workers", "whole number"),
        ({"controlPlanes": 2}, "controlPlanes", "quorum"),
        ({"clusterName": "My_Cluster"}, "clusterName", "not a valid kind cluster name"),
        ({"nodeImage": "kindest/node"}, "nodeImage", "not pinned"),
        ({"nodeImage": "kindest/node:v1.37.0"}, "nodeImage", "requires its node images by digest"),
        ({"registryImage": "registry:latest"}, "registryImage", "not pinned"),
        ({"proxyTtl": "a week"}, "proxyTtl", "not a Go duration"),
        ({"retainCaches": "yes"}, "retainCaches", "true or false"),
        ({"dockerHubUsername": "me"}, "dockerHubPassword", "must be set together"),
        ({"workrs": 1}, "workrs", "did you mean 'workers'"),
        ({"localdev:colour": "blue"}, "colour", "unknown setting"),
    ],
)
def test_bad_input_names_the_key_and_the_fix(values: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings(values)
    assert err.value.key == key
    assert words in str(err.value)
    assert "Fix:" in str(err.value)


def test_mirror_defaults_for_well_known_hosts() -> None:
    assert parse_mirror("registry.k8s.io").port == 5004
    assert parse_mirror("quay.io").remote_url == "https://quay.io"
    assert parse_mirror("docker.io=5050=https://mirror.gcr.io/").remote_url == "https://mirror.gcr.io"


def test_missing_stack_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"there is no Pulumi\.nope\.yaml"):
        stack_values("nope")
