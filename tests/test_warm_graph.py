"""Issue 14 under Pulumi mocks: the warm step sits between the caches and every workload."""

from __future__ import annotations

import json

import pytest

from localdev.manifests import image_set_digest
from localdev.render import read_script, render_warm_command
from localdev.settings import parse_settings
from tests.program import ROOT, Graph, Registration, run_program

MIRRORS = ["docker.io", "ghcr.io", "quay.io"]
CONFIG_FILE = "kubernetes:yaml/v2:ConfigFile"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return run_program({"mirrors": MIRRORS, "workers": 2})


def warm_command(graph: Graph) -> Registration:
    return graph.named("cache-warmup-warm")


def cache_containers(graph: Graph) -> list[Registration]:
    settings = parse_settings({"mirrors": MIRRORS})
    names = {settings.cache_name(m) for m in settings.mirrors}
    found = [r for r in graph.of_type("docker:index/container:Container") if r.inputs["name"] in names]
    assert len(found) == len(MIRRORS)
    return found


def test_every_config_file_waits_for_the_warm_step(graph: Graph) -> None:
    warm = warm_command(graph)
    config_files = graph.of_type(CONFIG_FILE)
    assert len(config_files) == len(list((ROOT / "k8s").glob("*.yaml")))
    for config_file in config_files:
        assert graph.depends_on(config_file, warm), config_file.name
    # The Secrets the workloads read wait for the same list; nothing of k8s/ reaches the cluster before the step.
    for secret in graph.of_type("kubernetes:core/v1:Secret"):
        assert graph.depends_on(secret, warm), secret.name


def test_the_warm_step_waits_for_every_cache_and_not_for_the_cluster(graph: Graph) -> None:
    warm = warm_command(graph)
    for container in cache_containers(graph):
        assert graph.depends_on(warm, container), container.name
    # It reaches the caches on 127.0.0.1, so it runs while kind creates the cluster; the workloads wait for both.
    assert not graph.depends_on(warm, graph.named("cluster-kind"))
    assert graph.by_urn(warm.parent).type == "localdev:index:CacheWarmup"


def test_the_warm_step_runs_again_for_a_new_image_set_or_new_caches(graph: Graph) -> None:
    warm = warm_command(graph)
    ids = sorted(f"{c.name}-id" for c in cache_containers(graph))  # the mocks' ids, caches sorted by host
    assert warm.inputs["triggers"] == [image_set_digest(ROOT / "k8s"), *ids]


def test_the_warm_step_runs_the_script_with_the_rendered_parameters(graph: Graph) -> None:
    warm = warm_command(graph)
    shell = render_warm_command(parse_settings({"mirrors": MIRRORS}), python=".venv/bin/python")
    assert warm.inputs["create"] == read_script("warm-caches.sh") == shell.create
    assert warm.inputs["environment"] == shell.environment
    assert "delete" not in warm.inputs
    # A preview is the same on every checkout: no path of this machine in the Command's inputs.
    assert str(ROOT) not in json.dumps(warm.inputs)


def test_warm_caches_false_applies_the_workloads_right_after_the_wiring() -> None:
    graph = run_program({"mirrors": MIRRORS, "warmCaches": False})
    assert not [r for r in graph.registrations if "warm" in r.name.lower() or r.type == "localdev:index:CacheWarmup"]
    wiring = graph.named("node-mirrors-hosts")
    for config_file in graph.of_type(CONFIG_FILE):
        assert graph.depends_on(config_file, wiring), config_file.name
