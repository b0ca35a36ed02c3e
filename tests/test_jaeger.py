"""Jaeger v2's config file (k8s/jaeger.yaml) checked against what Jaeger v2.20.0 builds in, and wired to its pod.

No ``jaeger`` or ``otelcol`` binary can be installed here (neither PyPI nor Debian
ships one), so the file is not run: :func:`manifest_checks.jaeger_v2_problems`
checks its structure against the component types of Jaeger's
``cmd/jaeger/internal/components.go`` and the fields of its own components. Each
rule is also fed a broken config.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from localdev.images import parse_reference
from tests import manifest_checks as mc

DOCS = mc.load_docs()
SERVICES = mc.service_ports(DOCS)


def jaeger_config() -> dict[str, Any]:
    return dict(yaml.safe_load(mc.config_data(DOCS, "jaeger-config", "observability", "config.yaml")))


def jaeger_pod() -> tuple[dict[str, Any], dict[str, Any]]:
    spec = mc.pod_spec(mc.find(DOCS, "Deployment", "jaeger", "observability"))
    assert spec is not None
    [container] = spec["containers"]
    return spec, container


def ports_of(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: int(p["containerPort"]) for p in container["ports"]}


def test_config_is_a_valid_jaeger_v2_config() -> None:
    assert mc.jaeger_v2_problems(jaeger_config()) == []


def test_image_is_jaeger_v2_and_reads_the_mounted_config() -> None:
    spec, container = jaeger_pod()
    image = parse_reference(container["image"])
    assert image.repository == "jaegertracing/jaeger" and str(image.tag).startswith("2.")
    [flag] = [a for a in container["args"] if a.startswith("--config=")]
    path = flag.split("=", 1)[1]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    [volume] = [n for n, m in mounts.items() if path.startswith(m.rstrip("/") + "/")]
    assert volumes[volume]["configMap"]["name"] == "jaeger-config"
    assert path.rsplit("/", 1)[1] in mc.find(DOCS, "ConfigMap", "jaeger-config", "observability").obj["data"]


def test_otlp_in_memory_storage_and_ui_ports_match_the_pod_and_service() -> None:
    config = jaeger_config()
    _, container = jaeger_pod()
    ports = ports_of(container)
    protocols = config["receivers"]["otlp"]["protocols"]
    assert mc.split_endpoint(protocols["grpc"]["endpoint"]) == ("0.0.0.0", 4317) and ports["otlp-grpc"] == 4317
    assert mc.split_endpoint(protocols["http"]["endpoint"]) == ("0.0.0.0", 4318) and ports["otlp-http"] == 4318
    query = config["extensions"]["jaeger_query"]
    assert mc.split_endpoint(query["http"]["endpoint"]) == ("0.0.0.0", 16686) and ports["query"] == 16686
    backend = config["extensions"]["jaeger_storage"]["backends"][query["storage"]["traces"]]
    assert list(backend) == ["memory"] and backend["memory"]["max_traces"] > 0
    assert {"jaeger_storage", "jaeger_query", "healthcheckv2"} <= set(config["service"]["extensions"])
    service = SERVICES[("observability", "jaeger")]
    assert {4317, 4318, 16686, 8888} <= set(service)


def test_probes_hit_the_health_check_and_prometheus_the_telemetry_port() -> None:
    config = jaeger_config()
    _, container = jaeger_pod()
    ports = ports_of(container)
    health = config["extensions"]["healthcheckv2"]
    assert health["use_v2"] is True
    assert mc.split_endpoint(health["http"]["endpoint"])[1] == ports["health"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/status", "port": "health"}
    [reader] = config["service"]["telemetry"]["metrics"]["readers"]
    assert reader["pull"]["exporter"]["prometheus"]["port"] == ports["metrics"]


def test_grafana_reads_traces_from_the_query_port() -> None:
    data = yaml.safe_load(mc.config_data(DOCS, "grafana-datasources", "observability", "datasources.yaml"))
    [jaeger] = [d for d in data["datasources"] if d["type"] == "jaeger"]
    host, port = mc.split_endpoint(jaeger["url"])
    assert mc.resolve_service(host, "observability") == ("observability", "jaeger")
    query = jaeger_config()["extensions"]["jaeger_query"]
    assert port == mc.split_endpoint(query["http"]["endpoint"])[1]


def test_otel_collector_sends_traces_to_jaegers_otlp_grpc_receiver() -> None:
    otel = yaml.safe_load(mc.config_data(DOCS, "otel-collector-config", "observability", "config.yaml"))
    assert mc.otelcol_problems(otel) == []
    exporter = otel["exporters"]["otlp_grpc/jaeger"]
    host, port = mc.split_endpoint(exporter["endpoint"])
    assert mc.resolve_service(host, "observability") == ("observability", "jaeger")
    receiver = jaeger_config()["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert port == mc.split_endpoint(receiver)[1]
    assert "otlp" in jaeger_config()["service"]["pipelines"]["traces"]["receivers"]


def _broken(change: str) -> dict[str, Any]:
    config = copy.deepcopy(jaeger_config())
    if change == "undefined exporter":
        config["service"]["pipelines"]["traces"]["exporters"].append("otlp/nowhere")
    elif change == "unknown component type":
        config["processors"]["transform"] = {}
    elif change == "unknown jaeger_query field":
        config["extensions"]["jaeger_query"]["storge"] = {}
    elif change == "query storage is no backend":
        config["extensions"]["jaeger_query"]["storage"]["traces"] = "elsewhere"
    elif change == "exporter storage is no backend":
        config["exporters"]["jaeger_storage_exporter"]["trace_storage"] = "elsewhere"
    elif change == "unknown memory field":
        config["extensions"]["jaeger_storage"]["backends"]["memstore"]["memory"]["max_trace"] = 1
    elif change == "undefined extension":
        config["service"]["extensions"].append("zpages")
    elif change == "pipeline without receivers":
        config["service"]["pipelines"]["traces"]["receivers"] = []
    elif change == "v1-style section":
        config["query"] = {"base-path": "/"}
    return config


@pytest.mark.parametrize(
    ("change", "fault"),
    [
        ("undefined exporter", "otlp/nowhere is not defined"),
        ("unknown component type", "processors.transform: no such component type"),
        ("unknown jaeger_query field", "unknown field(s) ['storge']"),
        ("query storage is no backend", "'elsewhere' is no jaeger_storage backend"),
        ("exporter storage is no backend", "trace_storage: 'elsewhere'"),
        ("unknown memory field", "unknown field(s) ['max_trace']"),
        ("undefined extension", "zpages is not defined"),
        ("pipeline without receivers", "no receivers"),
        ("v1-style section", "unknown top-level sections ['query']"),
    ],
)
def test_jaeger_check_catches(change: str, fault: str) -> None:
    problems = mc.jaeger_v2_problems(_broken(change))
    assert any(fault in p for p in problems), problems
