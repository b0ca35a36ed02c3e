"""The pull path on real binaries: containerd → rendered hosts.toml → distribution proxy → upstream.

A loopback registry the test fills stands in for Docker Hub, behind a relay
that counts what goes upstream. The proxy runs with the environment the
program declares for its docker.io cache container (read from the program's
resource graph under mocks). The only deviations from a kind node are
addresses: hosts.toml names the cache by its alias on the kind network, here
replaced by the cache's loopback address, and ``config_path`` points into the
test's directory instead of /etc/containerd/certs.d.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localdev.render import CERTS_DIR, render_containerd_patch, render_node_hosts
from localdev.settings import REGISTRY_API_PORT, Settings, parse_settings
from tests.harness.images import make_image, pull_manifest_and_blobs, push_image, push_with_skopeo
from tests.program import run_program

SEED_PATCH = """[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
  endpoint = ["http://kind-registry:5000"]
"""


def program_env(container: str, mirrors: list[str]) -> dict[str, str]:
    """The environment the program gives ``container`` for this mirror config."""
    graph = run_program({"mirrors": mirrors})
    [registration] = [r for r in graph.of_type("docker:index/container:Container") if r.inputs["name"] == container]
    envs: Any = registration.inputs["envs"]
    return dict(e.split("=", 1) for e in envs)


def write_node_certs(settings: Settings, certs: Path, addresses: dict[str, str]) -> None:
    """Write the node's hosts.toml files, with container aliases replaced by loopback addresses."""
    for rel, text in render_node_hosts(settings).items():
        for alias, address in addresses.items():
            text = text.replace(f"http://{alias}:{REGISTRY_API_PORT}", address)
        assert "localdev-" not in text, f"unreplaced alias in {rel}"
        (certs / rel).parent.mkdir(parents=True, exist_ok=True)
        (certs / rel).write_text(text)


def node_patch(certs: Path) -> str:
    patch = render_containerd_patch()
    assert CERTS_DIR in patch
    return patch.replace(CERTS_DIR, str(certs))


def test_seed_patch_breaks_cri_and_ours_loads(containerd_factory: Any, tmp_path: Path) -> None:
    """Regression guard: mirrors + config_path kills the CRI plugin; config_path alone does not."""
    seed = containerd_factory(config_patch=SEED_PATCH, name="seed")
    assert not seed.cri_loaded()
    assert "cannot be set when `config_path` is provided" in (seed.cri_error() or "")
    seed.stop()
    ours = containerd_factory(config_patch=node_patch(tmp_path / "certs.d"), name="ours")
    assert ours.cri_loaded(), ours.cri_error()


def test_docker_io_pulls_go_through_the_cache_and_come_from_disk_the_second_time(
    make_registry: Any, relay_factory: Any, containerd_factory: Any, tmp_path: Path
) -> None:
    upstream = make_registry("upstream")
    image = make_image("library/testimg", "1", layer_sizes=[300_000, 120_000], seed=7)
    push_image(upstream.url, image)
    relay = relay_factory(upstream)

    mirrors = [f"docker.io=5000={relay.url}"]
    settings = parse_settings({"mirrors": mirrors})
    env = program_env("localdev-cache-docker-io", mirrors)
    assert env["REGISTRY_PROXY_REMOTEURL"] == relay.url
    cache = make_registry("cache", env=env)
    push = make_registry("push", env=program_env("localdev-registry", mirrors))

    certs = tmp_path / "certs.d"
    write_node_certs(settings, certs, {"localdev-cache-docker-io": cache.url, "localdev-registry": push.url})
    node = containerd_factory(config_patch=node_patch(certs), name="node")
    assert node.cri_loaded(), node.cri_error()

    # Cold: kubelet's path (CRI PullImage) resolves docker.io through hosts.toml.
    # Docker Hub itself is unreachable from here, so success means the cache served it.
    node.cri_pull("docker.io/library/testimg:1")
    relay.wait_quiet(quiet=0.5)
    assert relay.manifest_gets() >= 1
    cold_blob_gets = relay.blob_gets()
    assert cold_blob_gets >= len(image.layers) + 1, relay.requests
    pull_manifest_and_blobs(cache.url, "library/testimg", "1")  # what the cache holds verifies

    # Warm: a fresh content store pulls again; nothing but a HEAD goes upstream.
    node.reset_images()
    relay.reset()
    node.cri_pull("docker.io/library/testimg:1")
    relay.wait_quiet(quiet=0.5)
    assert relay.blob_gets() == 0, relay.requests
    assert relay.manifest_gets() == 0, relay.requests
    assert relay.bytes_down < 10_000, f"{relay.bytes_down} bytes came from upstream on a warm pull"


def test_push_registry_takes_pushes_and_the_cache_refuses_them(
    make_registry: Any, containerd_factory: Any, tmp_path: Path, skopeo_binary: str
) -> None:
    upstream = make_registry("upstream")
    mirrors = [f"docker.io=5000={upstream.url}"]
    settings = parse_settings({"mirrors": mirrors})
    cache = make_registry("cache", env=program_env("localdev-cache-docker-io", mirrors))
    push = make_registry("push", env=program_env("localdev-registry", mirrors))
    image = make_image("myteam/app", "dev", layer_sizes=[50_000], seed=3)

    refused = push_with_skopeo(cache.host, image, tmp_path / "to-cache")
    assert refused.returncode != 0
    assert "unsupported" in refused.stderr.lower(), refused.stderr

    accepted = push_with_skopeo(push.host, image, tmp_path / "to-push")
    assert accepted.returncode == 0, accepted.stderr

    # Nodes know the push registry as localhost:5001 through its own hosts.toml.
    certs = tmp_path / "certs.d"
    write_node_certs(settings, certs, {"localdev-cache-docker-io": cache.url, "localdev-registry": push.url})
    node = containerd_factory(config_patch=node_patch(certs), name="node")
    node.cri_pull(f"{settings.push_host}/myteam/app:dev")
    assert any(ref.startswith("localhost:5001/myteam/app") for ref in node.image_refs())


@pytest.mark.parametrize("host", ["ghcr.io", "quay.io"])
def test_other_mirrors_route_their_own_registry(
    host: str, make_registry: Any, relay_factory: Any, containerd_factory: Any, tmp_path: Path
) -> None:
    upstream = make_registry("upstream")
    image = make_image("org/tool", "v1", layer_sizes=[40_000], seed=11)
    push_image(upstream.url, image)
    relay = relay_factory(upstream)
    mirrors = ["docker.io", f"{host}=5002={relay.url}"]
    settings = parse_settings({"mirrors": mirrors})
    name = settings.cache_name(settings.mirrors[1])
    cache = make_registry("cache", env=program_env(name, mirrors))
    certs = tmp_path / "certs.d"
    write_node_certs(
        settings,
        certs,
        {name: cache.url, "localdev-cache-docker-io": "http://127.0.0.1:9", "localdev-registry": "http://127.0.0.1:9"},
    )
    node = containerd_factory(config_patch=node_patch(certs), name="node")
    node.cri_pull(f"{host}/org/tool:v1")
    relay.wait_quiet(quiet=0.5)
    assert relay.blob_gets() >= 1
