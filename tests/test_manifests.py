"""The manifests under k8s/ and the Workloads component that applies them, checked offline.

* every object validates strictly against Kubernetes 1.37 (custom resources against
  their CRD's schema from k8s/);
* the embedded configs (Prometheus, Grafana provisioning, Loki, promtail, the
  OpenTelemetry Collector) parse, and every address they name is a Service port
  defined in k8s/;
* images are pinned and come from a registry the caches mirror; every container
  has requests, limits and probes; no secret value is written anywhere;
* ``components/workloads.py`` under Pulumi mocks: one ConfigFile per file, each
  behind the cache wiring, the Secrets secret and ordered between namespaces and users.

Each checker is also fed a broken example, so a check that cannot fail is caught.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from components import workloads as workloads_module
from components.workloads import Workloads, WorkloadsArgs
from localdev.images import parse_reference
from localdev.manifests import SECRET_CONFIG, SECRETS, plan_manifests
from localdev.render import UI_NODE_PORTS, render_prometheus_config, render_workload_config_maps
from localdev.settings import REGISTRY_DEBUG_PORT, ConfigError, parse_settings, stack_values
from tests import manifest_checks as mc
from tests.program import ProgramMocks, RecordingMonitor, is_secret

DOCS = mc.load_docs()
SERVICES = mc.service_ports(DOCS)
CRDS = mc.crd_index(DOCS)
SERVICE_FILES = ("postgres", "redis", "prometheus", "grafana", "loki", "promtail", "jaeger", "otel-collector", "velero")
PROMTOOL = shutil.which("promtool")


def docs_of(stem: str) -> list[mc.Doc]:
    return [d for d in DOCS if d.file.stem == stem]


def parsed_config(name: str, namespace: str, key: str) -> Any:
    return yaml.safe_load(mc.config_data(DOCS, name, namespace, key))


# --- layout and schema -----------------------------------------------------------------------------------------------


def test_one_manifest_file_per_service() -> None:
    stems = {p.stem for p in mc.K8S_DIR.glob("*.yaml")}
    assert set(SERVICE_FILES) <= stems
    assert stems - set(SERVICE_FILES) == {"00-namespaces", "velero-crds", "seaweedfs"}
    for stem in SERVICE_FILES:
        assert any(d.kind in mc.POD_TEMPLATE_KINDS for d in docs_of(stem)), f"{stem}.yaml runs nothing"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.where)
def test_every_object_validates_strictly_against_kubernetes_1_37(doc: mc.Doc) -> None:
    assert mc.validate_object(doc.obj, CRDS) == []


def test_validation_rejects_what_a_strict_apply_would() -> None:
    deployment = next(d for d in DOCS if d.kind == "Deployment").obj
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert mc.validate_object(typo, CRDS)
    bsl = json.loads(json.dumps(mc.find(DOCS, "BackupStorageLocation", "default").obj))
    bsl["spec"]["objectStorage"]["bukket"] = "velero"
    assert any("bukket" in p for p in mc.validate_object(bsl, CRDS))
    del bsl["spec"]["provider"]
    assert any("provider" in p for p in mc.validate_custom(bsl, CRDS))
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert mc.validate_object(unknown, CRDS)
    assert _unstructural({"type": "object", "properties": {"a": {"description": "untyped"}}}, "crd")


def test_velero_crds_cover_what_the_server_and_cli_need() -> None:
    crds = [d for d in DOCS if d.kind == "CustomResourceDefinition"]
    assert {d.file.name for d in crds} == {"velero-crds.yaml"}
    assert all(d.obj["apiVersion"] == "apiextensions.k8s.io/v1" for d in crds)
    kinds = {(group, version, kind) for group, version, kind in CRDS}
    v1 = {
        "Backup",
        "BackupRepository",
        "BackupStorageLocation",
        "DeleteBackupRequest",
        "DownloadRequest",
        "PodVolumeBackup",
        "PodVolumeRestore",
        "Restore",
        "Schedule",
        "ServerStatusRequest",
        "VolumeSnapshotLocation",
    }
    assert {("velero.io", "v1", k) for k in v1} | {("velero.io", "v2alpha1", k) for k in ("DataUpload", "DataDownload")} <= kinds
    for doc in crds:
        assert doc.obj["spec"]["scope"] == "Namespaced"
        assert [v["name"] for v in doc.obj["spec"]["versions"] if v["storage"]], doc.where
        for version in doc.obj["spec"]["versions"]:
            assert _unstructural(version["schema"]["openAPIV3Schema"], doc.where) == []


def _unstructural(schema: Any, where: str) -> list[str]:
    """Nodes the API server would refuse in a v1 CRD: a structural schema types every node."""
    if not isinstance(schema, dict):
        return []
    problems = []
    typed = "type" in schema or schema.get("x-kubernetes-int-or-string") or schema.get("x-kubernetes-preserve-unknown-fields")
    if not typed:
        problems.append(f"{where}: untyped schema node {sorted(schema)}")
    for name, sub in (schema.get("properties") or {}).items():
        problems += _unstructural(sub, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            problems += _unstructural(schema[key], f"{where}.{key}")
    return problems


def test_namespaces_are_explicit() -> None:
    assert mc.namespace_problems(DOCS) == []
    orphan = mc.Doc(Path("x.yaml"), 0, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert mc.namespace_problems([orphan])


# --- images, resources, probes ---------------------------------------------------------------------------------------


def test_images_are_pinned_and_from_mirrored_registries() -> None:
    images = {c["image"] for _, spec in mc.workloads(DOCS) for _, c in mc.containers(spec)}
    problems = [p for image in sorted(images) for p in mc.image_problems(image)]
    assert problems == []
    registries = {parse_reference(i).registry for i in images}
    assert registries <= set(mc.ALLOWED_REGISTRIES)
    # The dev stack (what scripts/up brings up) caches every registry the manifests pull from.
    mirrored = {m.host for m in parse_settings(stack_values("dev")).mirrors}
    assert registries <= mirrored, f"add {sorted(registries - mirrored)} to mirrors in Pulumi.dev.yaml"


@pytest.mark.parametrize(
    ("ref", "fault"),
    [
        ("postgres:16.14-alpine", "fully qualified"),
        ("docker.io/grafana/grafana", "not pinned"),
        ("docker.io/grafana/grafana:latest", "not pinned"),
        ("gcr.io/distroless/static:nonroot", "no cache mirrors"),
        ("example.com/team/app:1.0", "no cache mirrors"),
    ],
)
def test_image_check_catches(ref: str, fault: str) -> None:
    assert any(fault in p for p in mc.image_problems(ref)), mc.image_problems(ref)


def test_image_check_accepts_tags_and_digests() -> None:
    assert mc.image_problems("docker.io/chrislusf/seaweedfs:4.47") == []
    assert mc.image_problems("registry.k8s.io/pause@sha256:" + "a" * 64) == []
    assert mc.image_problems("postgres:16.14-alpine"), "a name without its registry must be refused"


def test_every_container_has_requests_limits_and_probes() -> None:
    problems = []
    for doc, spec in mc.workloads(DOCS):
        for role, container in mc.containers(spec):
            problems += [f"{doc.where}: {p}" for p in mc.resource_problems(container)]
            if role == "container" and doc.kind not in ("Job", "CronJob"):
                problems += [f"{doc.where}: {p}" for p in mc.probe_problems(container)]
    assert problems == []


def test_resource_and_probe_checks_catch_omissions() -> None:
    bare = {"name": "c", "ports": [{"name": "http", "containerPort": 80}], "resources": {"requests": {"cpu": "1"}}}
    assert len(mc.resource_problems(bare)) == 3
    assert len(mc.probe_problems(bare)) == 2
    bare["readinessProbe"] = {"httpGet": {"path": "/", "port": "metrics"}}
    bare["livenessProbe"] = {"tcpSocket": {"port": 80}}
    assert mc.probe_problems(bare) == ["c: readinessProbe port 'metrics' is not a port of the container"]


def test_services_select_workloads_and_target_declared_ports() -> None:
    assert mc.service_problems(DOCS) == []
    broken = json.loads(json.dumps(mc.find(DOCS, "Service", "loki", "observability").obj))
    broken["spec"]["ports"][0]["targetPort"] = "htp"
    assert mc.service_problems([*DOCS, mc.Doc(Path("x.yaml"), 0, broken)])


# --- secrets ---------------------------------------------------------------------------------------------------------


def test_no_secret_value_in_any_manifest() -> None:
    problems = mc.secret_object_problems(DOCS)
    for doc in DOCS:
        if doc.kind != "CustomResourceDefinition":
            problems += mc.literal_secret_problems(doc.obj, doc.where)
    for doc, spec in mc.workloads(DOCS):
        for _, container in mc.containers(spec):
            problems += [f"{doc.where}: {p}" for p in mc.env_secret_problems(container, spec)]
    assert problems == []


def test_secret_checks_catch_literals() -> None:
    config_map = {
        "kind": "ConfigMap",
        "data": {
            "app.yaml": "db:\n  host: postgres\n  password: hunter2\n",
            "app.ini": "[db]\nuser = app\npassword = hunter2\n",
        },
    }
    assert len(mc.literal_secret_problems(config_map, "cm")) == 2
    assert mc.literal_secret_problems({"spec": {"config": {"secretKey": "abc"}}}, "bsl")
    assert mc.literal_secret_problems({"secretName": "creds", "credentials_file": "/run/token", "url": "$(PASS)"}, "ok") == []
    spec = {"volumes": [{"name": "creds", "secret": {"secretName": "creds"}}]}
    container = {
        "name": "c",
        "env": [
            {"name": "GF_SECURITY_ADMIN_PASSWORD", "value": "admin"},
            {"name": "REDISCLI_AUTH", "value": "x"},
            {"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/elsewhere/cloud"},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "MINIO_PROMETHEUS_AUTH_TYPE", "value": "public"},
            {"name": "POSTGRES_USER", "value": "app"},
        ],
        "volumeMounts": [{"name": "creds", "mountPath": "/credentials"}],
    }
    assert len(mc.env_secret_problems(container, spec)) == 3
    secret = mc.Doc(Path("x.yaml"), 0, {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a": "b"}})
    assert mc.secret_object_problems([secret])


def test_every_secret_read_is_one_the_component_creates() -> None:
    referenced = {ref for doc in DOCS for ref in mc.secret_references(doc)}
    assert referenced, "no workload reads a Secret"
    for namespace, name, key in sorted(referenced, key=str):
        spec = SECRETS.get(f"{namespace}/{name}")
        assert spec is not None, f"{namespace}/{name} is read but never created"
        assert key is None or key in spec.values, f"{namespace}/{name} has no key {key}"
    assert {f"{ns}/{name}" for ns, name, _ in referenced} == set(SECRETS), "a created Secret is never read"
    for spec in SECRETS.values():
        assert set(spec.config_keys) <= set(SECRET_CONFIG)


def test_velero_credentials_file_is_the_mounted_secret() -> None:
    velero = mc.find(DOCS, "Deployment", "velero", "velero")
    spec = mc.pod_spec(velero)
    assert spec is not None
    container = next(c for c in spec["containers"] if c["name"] == "velero")
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == "cloud-credentials")
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == f"{mounts['cloud-credentials']}/cloud"
    assert "cloud" in SECRETS[f"velero/{volume['secret']['secretName']}"].values
    assert "aws_secret_access_key={backupStoreSecretKey}" in SECRETS["velero/cloud-credentials"].values["cloud"]


# --- Prometheus ------------------------------------------------------------------------------------------------------


#: The dev stack (what scripts/up brings up), and a stack that shares nothing with it.
DEV_SETTINGS = parse_settings(stack_values("dev"))
OTHER_SETTINGS = parse_settings(
    {
        "clusterName": "team-b",
        "pushRegistryPort": 5201,
        "mirrors": ["docker.io=5200", "registry.k8s.io=5204", "mirror.example.org=5210=https://mirror.example.org"],
    }
)


def prometheus_config(settings: Any = DEV_SETTINGS) -> dict[str, Any]:
    """The prometheus.yml the program renders for a stack (not in k8s/: it names the stack's containers)."""
    return dict(yaml.safe_load(render_prometheus_config(settings)))


def jobs(settings: Any = DEV_SETTINGS) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in prometheus_config(settings)["scrape_configs"]}


@pytest.mark.parametrize("settings", [DEV_SETTINGS, OTHER_SETTINGS], ids=["dev", "other-stack"])
def test_prometheus_config_passes_promtool(tmp_path: Path, settings: Any) -> None:
    config = prometheus_config(settings)
    assert not config.get("rule_files"), "rule files would need `promtool check rules` too"
    assert mc.kubernetes_sd_problems(config) == []
    done = promtool_check(mc.promtool_ready(config, tmp_path, with_kubernetes_sd=True), tmp_path)
    if done.returncode != 0 and "field kubernetes_sd_configs not found" in done.stdout + done.stderr:
        # Debian's promtool is built without Kubernetes discovery: check everything else.
        done = promtool_check(mc.promtool_ready(config, tmp_path, with_kubernetes_sd=False), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def promtool_check(config: dict[str, Any], workdir: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "promtool is not installed: apt-get install prometheus (.ci/run does)"
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([str(PROMTOOL), "check", "config", str(path)], capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_can_fail(tmp_path: Path) -> None:
    config = prometheus_config()
    config["scrape_configs"][0]["relabel_configs"] = [{"action": "keep", "regex": "([unclosed"}]
    assert promtool_check(mc.promtool_ready(config, tmp_path, with_kubernetes_sd=False), tmp_path).returncode != 0
    assert mc.kubernetes_sd_problems({"scrape_configs": [{"job_name": "x", "kubernetes_sd_configs": [{"role": "nodes"}]}]})


def test_prometheus_discovers_the_cluster_with_rbac() -> None:
    by_name = jobs()
    roles = {sd["role"] for job in by_name.values() for sd in job.get("kubernetes_sd_configs") or []}
    assert {"node", "pod"} <= roles
    kubelet, cadvisor = by_name["kubelet"], by_name["kubernetes-cadvisor"]
    assert kubelet["scheme"] == cadvisor["scheme"] == "https"
    assert cadvisor["metrics_path"] == "/metrics/cadvisor"
    assert kubelet["authorization"]["credentials_file"] == f"{mc.SERVICE_ACCOUNT_DIR}/token"
    assert any(r.get("regex") == '"true"' or r.get("regex") == "true" for r in by_name["kubernetes-pods"]["relabel_configs"])

    deployment = mc.find(DOCS, "Deployment", "prometheus", "observability")
    account = deployment.obj["spec"]["template"]["spec"]["serviceAccountName"]
    subject = {"kind": "ServiceAccount", "name": account, "namespace": "observability"}
    binding = next(d for d in DOCS if d.kind == "ClusterRoleBinding" and subject in d.obj["subjects"])
    role = mc.find(DOCS, "ClusterRole", binding.obj["roleRef"]["name"])
    granted = {(res, verb) for rule in role.obj["rules"] for res in rule.get("resources", []) for verb in rule["verbs"]}
    for resource in ("nodes", "nodes/metrics", "pods", "services", "endpoints"):
        assert {(resource, "get"), (resource, "list") if resource != "nodes/metrics" else (resource, "get")} <= granted, resource


def test_prometheus_scrapes_the_platform_services() -> None:
    by_name = jobs()
    static = {job: [t for sc in j.get("static_configs") or [] for t in sc["targets"]] for job, j in by_name.items()}
    wanted = {"otel-collector": "otel-collector", "loki": "loki", "jaeger": "jaeger", "grafana": "grafana"}
    for job, service in wanted.items():
        [target] = static[job]
        assert mc.resolve_service(mc.split_endpoint(target)[0], "observability") == ("observability", service)
    outside = ("registry-caches", "push-registry", "prometheus")
    in_cluster = {job: targets for job, targets in static.items() if job not in outside}
    assert mc.reference_problems(in_cluster, "observability", SERVICES) == []
    assert mc.reference_problems({"x": ["grafana.observability.svc.cluster.local:3001"]}, "observability", SERVICES)


@pytest.mark.parametrize("settings", [DEV_SETTINGS, OTHER_SETTINGS], ids=["dev", "other-stack"])
def test_prometheus_scrapes_this_stacks_registries_by_container_name(settings: Any) -> None:
    expected = {f"{settings.cache_name(m)}:{REGISTRY_DEBUG_PORT}": m.host for m in settings.mirrors}
    job = jobs(settings)["registry-caches"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    got = {t: sc["labels"]["upstream"] for sc in job["static_configs"] for t in sc["targets"]}
    assert got == expected
    [push] = [t for sc in jobs(settings)["push-registry"]["static_configs"] for t in sc["targets"]]
    assert push == f"{settings.push_name}:{REGISTRY_DEBUG_PORT}"
    assert prometheus_config(settings)["global"]["external_labels"] == {"cluster": settings.cluster_name}


def test_workloads_rendered_for_another_stack_name_only_its_containers() -> None:
    ours = {DEV_SETTINGS.cache_name(m) for m in DEV_SETTINGS.mirrors} | {DEV_SETTINGS.push_name}
    theirs = {OTHER_SETTINGS.cache_name(m) for m in OTHER_SETTINGS.mirrors} | {OTHER_SETTINGS.push_name}
    assert theirs == {
        "team-b-cache-docker-io",
        "team-b-cache-registry-k8s-io",
        "team-b-cache-mirror-example-org",
        "team-b-registry",
    }
    rendered = "\n".join(text for data in render_workload_config_maps(OTHER_SETTINGS).values() for text in data.values())
    named = set(re.findall(r"\b([a-z0-9-]+):" + str(REGISTRY_DEBUG_PORT) + r"\b", rendered))
    assert named == theirs
    assert not any(name in rendered for name in ours), "another stack's config names this stack's containers"
    assert "localdev" not in rendered
    # Nothing in k8s/ names a registry container, a cache port or a mirror: the program renders what does.
    for path in sorted(mc.K8S_DIR.glob("*.yaml")):
        text = path.read_text()
        for name in ours:
            assert name not in text, f"{path.name} names the container {name}; render it from the settings"
        for mirror in DEV_SETTINGS.mirrors:
            assert f":{mirror.port}" not in text and f":{mirror.metrics_port}" not in text, (path.name, mirror.host)


def test_prometheus_exports_the_otel_collector_metrics() -> None:
    otel = parsed_config("otel-collector-config", "observability", "config.yaml")
    exporter_port = mc.split_endpoint(otel["exporters"]["prometheus"]["endpoint"])[1]
    targets = [t for sc in jobs()["otel-collector-exporter"]["static_configs"] for t in sc["targets"]]
    assert [mc.split_endpoint(t)[1] for t in targets] == [exporter_port]
    service = SERVICES[("observability", "otel-collector")][exporter_port]
    [(_, spec)] = mc.service_backends(mc.find(DOCS, "Service", "otel-collector", "observability"), DOCS)
    assert mc.container_port(spec, service.target) == exporter_port


# --- Grafana ---------------------------------------------------------------------------------------------------------


def test_grafana_datasources_name_the_right_services() -> None:
    datasources = {d["type"]: d for d in parsed_config("grafana-datasources", "observability", "datasources.yaml")["datasources"]}
    expected = {"prometheus": ("prometheus", 9090), "loki": ("loki", 3100), "jaeger": ("jaeger", 16686)}
    assert set(expected) <= set(datasources)
    for kind, (service, port) in expected.items():
        host, got_port = mc.split_endpoint(datasources[kind]["url"])
        assert (mc.resolve_service(host, "observability"), got_port) == (("observability", service), port), kind
        assert datasources[kind]["url"].startswith("http://")
    assert mc.reference_problems([d["url"] for d in datasources.values()], "observability", SERVICES) == []
    assert sum(1 for d in datasources.values() if d.get("isDefault")) == 1
    uids = {d["uid"] for d in datasources.values()}
    linked = [d["jsonData"].get("tracesToLogsV2", {}).get("datasourceUid") for d in datasources.values()]
    linked += [f["datasourceUid"] for d in datasources.values() for f in d["jsonData"].get("derivedFields", [])]
    assert set(filter(None, linked)) <= uids


def test_grafana_dashboard_shows_the_registry_caches() -> None:
    providers = parsed_config("grafana-dashboard-providers", "observability", "providers.yaml")["providers"]
    [provider] = providers
    deployment = mc.find(DOCS, "Deployment", "grafana", "observability")
    spec = deployment.obj["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts[provider["options"]["path"]]["configMap"]["name"] == "grafana-dashboards"
    assert mounts["/etc/grafana/provisioning/datasources"]["configMap"]["name"] == "grafana-datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"]["configMap"]["name"] == "grafana-dashboard-providers"

    dashboards = find_dashboards()
    assert dashboards, "no dashboard provisioned"
    registry = dashboards["registry-caches.json"]
    exprs = " ".join(t["expr"] for p in registry["panels"] for t in p.get("targets", []))
    for metric in ("requests", "hits", "misses", "pulled_bytes"):
        assert f"registry_proxy_{metric}_total" in exprs, metric
    assert 'type="blob"' in exprs and 'type="manifest"' in exprs
    variables = " ".join(v.get("definition", "") for v in registry["templating"]["list"])
    assert 'job="registry-caches"' in exprs + variables, "dashboard and scrape job disagree"
    assert "registry-caches" in jobs()
    datasource_uids = {d["uid"] for d in parsed_config("grafana-datasources", "observability", "datasources.yaml")["datasources"]}
    for panel in registry["panels"]:
        assert panel["datasource"]["uid"] in datasource_uids, panel["title"]
    ids = [p["id"] for p in registry["panels"]]
    assert len(ids) == len(set(ids))


def find_dashboards() -> dict[str, dict[str, Any]]:
    data = mc.find(DOCS, "ConfigMap", "grafana-dashboards", "observability").obj["data"]
    return {name: json.loads(text) for name, text in data.items() if name.endswith(".json")}


def test_grafana_is_reachable_on_its_node_port_and_reads_its_password_from_a_secret() -> None:
    spec = mc.pod_spec(mc.find(DOCS, "Deployment", "grafana", "observability"))
    assert spec is not None
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "grafana-admin", "key": "password"}


# --- Loki, promtail, OpenTelemetry Collector -------------------------------------------------------------------------


def test_loki_config_parses_and_matches_its_service() -> None:
    loki = parsed_config("loki-config", "observability", "loki.yaml")
    assert loki["auth_enabled"] is False
    assert loki["schema_config"]["configs"][-1]["schema"] == "v13"
    assert loki["limits_config"]["allow_structured_metadata"] is True, "OTLP logs need structured metadata"
    assert mc.reference_problems(loki, "observability", SERVICES) == []
    [(_, spec)] = mc.service_backends(mc.find(DOCS, "Service", "loki", "observability"), DOCS)
    port = SERVICES[("observability", "loki")][3100]
    assert mc.container_port(spec, port.target) == loki["server"]["http_listen_port"]
    data_mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "data")["mountPath"]
    assert loki["common"]["path_prefix"].startswith(data_mount)


def test_promtail_ships_every_pod_log_to_loki() -> None:
    promtail = parsed_config("promtail-config", "observability", "promtail.yaml")
    assert mc.reference_problems(promtail, "observability", SERVICES) == []
    [client] = promtail["clients"]
    assert client["url"].endswith("/loki/api/v1/push")
    assert mc.resolve_service(mc.split_endpoint(client["url"])[0], "observability") == ("observability", "loki")
    [job] = promtail["scrape_configs"]
    assert [sd["role"] for sd in job["kubernetes_sd_configs"]] == ["pod"]
    assert {"cri": {}} in job["pipeline_stages"]
    path_rule = next(r for r in job["relabel_configs"] if r.get("target_label") == "__path__")
    assert path_rule["replacement"].startswith("/var/log/pods/")

    daemonset = mc.find(DOCS, "DaemonSet", "promtail", "observability")
    spec = daemonset.obj["spec"]["template"]["spec"]
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert any(host_paths[n] == "/var/log/pods" and mounts[n] == "/var/log/pods" for n in host_paths)
    account = spec["serviceAccountName"]
    binding = next(d for d in DOCS if d.kind == "ClusterRoleBinding" and any(s["name"] == account for s in d.obj["subjects"]))
    role = mc.find(DOCS, "ClusterRole", binding.obj["roleRef"]["name"])
    assert any("pods" in r["resources"] and "watch" in r["verbs"] for r in role.obj["rules"])
    assert any(t.get("key") == "node-role.kubernetes.io/control-plane" for t in spec.get("tolerations", []))


def test_otel_collector_receives_otlp_and_exports_to_jaeger_prometheus_loki() -> None:
    otel = parsed_config("otel-collector-config", "observability", "config.yaml")
    assert mc.reference_problems(otel, "observability", SERVICES) == []
    protocols = otel["receivers"]["otlp"]["protocols"]
    assert mc.split_endpoint(protocols["grpc"]["endpoint"]) == ("0.0.0.0", 4317)
    assert mc.split_endpoint(protocols["http"]["endpoint"]) == ("0.0.0.0", 4318)
    service = SERVICES[("observability", "otel-collector")]
    assert {4317, 4318} <= set(service)

    exporters = otel["exporters"].items()
    jaeger = next(v for k, v in exporters if k.split("/")[0] in ("otlp", "otlp_grpc") and "jaeger" in v["endpoint"])
    host, port = mc.split_endpoint(jaeger["endpoint"])
    assert (mc.resolve_service(host, "observability"), port) == (("observability", "jaeger"), 4317)
    [(_, jaeger_spec)] = mc.service_backends(mc.find(DOCS, "Service", "jaeger", "observability"), DOCS)
    assert mc.container_port(jaeger_spec, SERVICES[("observability", "jaeger")][4317].target) == 4317

    defined = {section: set(otel[section]) for section in ("receivers", "processors", "exporters")}
    pipelines = otel["service"]["pipelines"]
    assert {"traces", "metrics", "logs"} <= set(pipelines)
    for name, pipeline in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(section, [])) <= defined[section], (name, section)
    assert "otlp_grpc/jaeger" in pipelines["traces"]["exporters"]
    assert "prometheus" in pipelines["metrics"]["exporters"]
    assert set(otel["service"]["extensions"]) <= set(otel["extensions"])


def test_reference_check_catches_unknown_services_and_ports() -> None:
    assert mc.reference_problems({"url": "http://lokki.observability.svc:3100"}, "observability", SERVICES)
    assert mc.reference_problems({"endpoint": "jaeger:4319"}, "observability", SERVICES)
    assert mc.reference_problems({"endpoint": "jaeger.example.com:4317"}, "observability", SERVICES)
    assert mc.reference_problems({"endpoint": "0.0.0.0:4317", "bind": ":9000"}, "observability", SERVICES) == []
    assert mc.reference_problems({"endpoint": "jaeger:4317"}, "observability", SERVICES) == []


# --- data, velero, UIs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "mount"), [("postgres", "/var/lib/postgresql/data"), ("redis", "/data")])
def test_databases_keep_data_on_standard_pvcs(name: str, mount: str) -> None:
    statefulset = mc.find(DOCS, "StatefulSet", name, "data")
    [claim] = statefulset.obj["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "standard"
    assert claim["spec"]["resources"]["requests"]["storage"]
    container = statefulset.obj["spec"]["template"]["spec"]["containers"][0]
    assert {"name": claim["metadata"]["name"], "mountPath": mount} in container["volumeMounts"]


def test_velero_backs_up_to_the_seaweedfs_store_with_the_same_credentials() -> None:
    bsl = mc.find(DOCS, "BackupStorageLocation", "default", "velero").obj["spec"]
    assert bsl["default"] is True and bsl["provider"] == "aws"
    assert bsl["config"]["s3ForcePathStyle"] == "true"
    assert bsl["config"]["s3Url"] == "http://seaweedfs.velero.svc:8333"
    assert mc.reference_problems(bsl["config"], "velero", SERVICES) == []
    store = mc.pod_spec(mc.find(DOCS, "StatefulSet", "seaweedfs", "velero"))
    assert store is not None
    [container] = store["containers"]
    assert f"-bucket={bsl['objectStorage']['bucket']}" in container["args"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    store_secret = SECRETS[f"velero/{env['AWS_ACCESS_KEY_ID']['name']}"]
    assert store_secret.values[env["AWS_ACCESS_KEY_ID"]["key"]] == "{backupStoreAccessKey}"
    assert store_secret.values[env["AWS_SECRET_ACCESS_KEY"]["key"]] == "{backupStoreSecretKey}"
    cloud = SECRETS["velero/cloud-credentials"].values["cloud"]
    assert "aws_access_key_id={backupStoreAccessKey}" in cloud and "aws_secret_access_key={backupStoreSecretKey}" in cloud
    velero = mc.pod_spec(mc.find(DOCS, "Deployment", "velero", "velero"))
    assert velero is not None
    [plugin] = velero["initContainers"]
    assert parse_reference(plugin["image"]).repository == "velero/velero-plugin-for-aws"
    shared = {m["name"] for m in plugin["volumeMounts"]} & {m["name"] for m in velero["containers"][0]["volumeMounts"]}
    assert shared == {"plugins"}


def test_ui_node_ports() -> None:
    expected = {"grafana": ("grafana", 3000), "prometheus": ("prometheus", 9090), "jaeger": ("jaeger", 16686)}
    node_ports = {}
    for doc in DOCS:
        if doc.kind == "Service" and doc.obj["spec"].get("type") == "NodePort":
            [(workload, spec)] = mc.service_backends(doc, DOCS)
            for port in doc.obj["spec"]["ports"]:
                node_ports[port["nodePort"]] = (workload.name, mc.container_port(spec, port["targetPort"]))
    assert node_ports == {UI_NODE_PORTS[ui]: backend for ui, backend in expected.items()}
    assert UI_NODE_PORTS == {"grafana": 30300, "prometheus": 30900, "jaeger": 31686}
    assert parse_settings({}).ui_ports == {"grafana": 3000, "prometheus": 9090, "jaeger": 16686}


# --- the Workloads component under Pulumi mocks ----------------------------------------------------------------------

GIVEN_POSTGRES_PASSWORD = "given-postgres-password-do-not-leak"


def _secret_string_data(secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's stringData; fails unless every value is marked secret (the map as a whole, or each value)."""
    data = secret["object"]["stringData"]
    if is_secret(data):
        data = data["value"]
        return {k: v["value"] if is_secret(v) else v for k, v in data.items()}
    for key, value in data.items():
        assert is_secret(value), f"{secret['name']}.{key} is not marked secret"
    return {k: v["value"] for k, v in data.items()}


def _plain_strings(value: Any) -> list[str]:
    """Every string outside a secret wrapper."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _plain_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _plain_strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.fixture(scope="module")
def recorded() -> Iterator[list[dict[str, Any]]]:
    # The program runs in the project directory (as `pulumi up` runs it).
    previous = Path.cwd()
    os.chdir(mc.ROOT)
    try:
        yield _run_component()
    finally:
        os.chdir(previous)


def _run_component() -> list[dict[str, Any]]:
    mocks_ = ProgramMocks()
    monitor = RecordingMonitor(mocks_)
    pulumi.runtime.set_mocks(mocks_, project="localdev", stack="test", preview=False, monitor=monitor)

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        provider = k8s.Provider("test-provider", kubeconfig="{}")
        wiring = pulumi.CustomResource("test:index:Wiring", "test-wiring", {})
        component = Workloads(
            "workloads",
            WorkloadsArgs(
                provider=provider,
                manifests_dir=mc.K8S_DIR,
                depends_on=[wiring],
                secrets={"postgresPassword": GIVEN_POSTGRES_PASSWORD, "grafanaAdminPassword": None, "backupStoreSecretKey": ""},
                config_maps=render_workload_config_maps(OTHER_SETTINGS),
            ),
        )
        return pulumi.Output.all(component.urls, *(cf.urn for cf in component.config_files.values()))

    program()
    return [
        {
            "type": r.type,
            "name": r.name,
            "urn": r.urn,
            "parent": r.parent,
            "provider": r.provider,
            "dependencies": r.dependencies,
            "object": r.raw,
        }
        for r in monitor.registrations
    ]


def _named(recorded: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [found] = [r for r in recorded if r["name"] == name]
    return found


def test_component_applies_one_config_file_per_manifest_behind_the_wiring(recorded: list[dict[str, Any]]) -> None:
    config_files = [r for r in recorded if r["type"] == "kubernetes:yaml/v2:ConfigFile"]
    files = sorted(p.name for p in mc.K8S_DIR.glob("*.yaml"))
    assert sorted(Path(r["object"]["file"]).name for r in config_files) == files
    assert sorted(r["name"] for r in config_files) == sorted(f"workloads-{Path(f).stem}" for f in files)
    wiring = _named(recorded, "test-wiring")["urn"]
    provider = _named(recorded, "test-provider")["urn"]
    component = _named(recorded, "workloads")
    assert component["type"] == "localdev:index:Workloads"
    for config_file in config_files:
        assert wiring in config_file["dependencies"], config_file["name"]
        assert config_file["provider"].startswith(provider), config_file["name"]
        assert config_file["parent"] == component["urn"]
        assert not Path(config_file["object"]["file"]).is_absolute(), "an absolute path differs between checkouts"


def test_component_orders_namespaces_crds_and_secrets(recorded: list[dict[str, Any]]) -> None:
    urns = {r["name"]: r["urn"] for r in recorded}
    deps = {r["name"]: set(r["dependencies"]) for r in recorded}
    namespaces = urns["workloads-00-namespaces"]
    for name in (n for n in deps if n.startswith("workloads-") and n != "workloads-00-namespaces"):
        record = _named(recorded, name)
        if record["type"] == "kubernetes:yaml/v2:ConfigFile" and name != "workloads-velero-crds":
            assert namespaces in deps[name], name
    assert urns["workloads-velero-crds"] in deps["workloads-velero"]
    assert urns["workloads-seaweedfs"] in deps["workloads-velero"]

    secrets = [r for r in recorded if r["type"] == "kubernetes:core/v1:Secret"]
    assert {f"{s['object']['metadata']['namespace']}/{s['object']['metadata']['name']}" for s in secrets} == set(SECRETS)
    readers = {
        f"workloads-{p.stem}": {f"{ns}/{n}" for ns, n, _ in p.secret_refs} for p in plan_manifests(mc.K8S_DIR) if p.secret_refs
    }
    by_key = {f"{s['object']['metadata']['namespace']}/{s['object']['metadata']['name']}": s for s in secrets}
    for secret in secrets:
        assert namespaces in secret["dependencies"], secret["name"]
        assert secret["parent"] == urns["workloads"]
    for reader, keys in readers.items():
        for key in keys:
            assert by_key[key]["urn"] in deps[reader], (reader, key)
    # Registration order: the namespaces file, then each Secret, then its readers.
    order = [r["name"] for r in recorded]
    for reader, keys in readers.items():
        for key in keys:
            assert order.index("workloads-00-namespaces") < order.index(by_key[key]["name"]) < order.index(reader)


def test_component_secret_values_are_secret_and_never_plain(recorded: list[dict[str, Any]]) -> None:
    secrets = [r for r in recorded if r["type"] == "kubernetes:core/v1:Secret"]
    values = {s["object"]["metadata"]["name"]: _secret_string_data(s) for s in secrets}
    assert all(values.values())
    assert values["postgres-credentials"]["password"] == GIVEN_POSTGRES_PASSWORD
    assert values["grafana-admin"]["password"] == "generated-workloads-grafana-admin-password"
    store = values["backup-store-credentials"]
    assert store["secretAccessKey"] == "generated-workloads-backup-store-secret-key", "empty means generate"
    assert store["accessKeyId"] == "generated-workloads-backup-store-access-key"
    cloud = values["cloud-credentials"]["cloud"]
    assert cloud == (
        "[default]\naws_access_key_id=generated-workloads-backup-store-access-key\n"
        "aws_secret_access_key=generated-workloads-backup-store-secret-key\n"
    )
    passwords = [r for r in recorded if r["type"] == "random:index/randomPassword:RandomPassword"]
    assert sorted(r["name"] for r in passwords) == sorted(f"workloads-{workloads_module._kebab(k)}" for k in SECRET_CONFIG)
    assert all(r["object"]["special"] is False for r in passwords)

    generated = {f"generated-{r['name']}" for r in passwords}
    for record in recorded:
        if record["type"] == "kubernetes:core/v1:Secret":
            continue
        plain = " ".join(_plain_strings(record["object"]))
        assert GIVEN_POSTGRES_PASSWORD not in plain, record["name"]
        assert not any(g in plain for g in generated), record["name"]
    for config_file in (r for r in recorded if r["type"] == "kubernetes:yaml/v2:ConfigFile"):
        assert set(config_file["object"]) <= {"file", "resourcePrefix", "skipAwait"}, config_file["object"]
        assert not any(is_secret(v) for v in config_file["object"].values())


def test_component_children_are_named_after_it(recorded: list[dict[str, Any]]) -> None:
    component = _named(recorded, "workloads")
    children = [r for r in recorded if r["parent"] == component["urn"]]
    assert children and all(r["name"].startswith("workloads-") for r in children)
    assert {r["type"] for r in children} == {
        "kubernetes:yaml/v2:ConfigFile",
        "kubernetes:core/v1:Secret",
        "kubernetes:core/v1:ConfigMap",
        "random:index/randomPassword:RandomPassword",
    }


def test_component_creates_the_rendered_config_maps_between_namespace_and_reader(recorded: list[dict[str, Any]]) -> None:
    [config_map] = [r for r in recorded if r["type"] == "kubernetes:core/v1:ConfigMap"]
    assert config_map["name"] == "workloads-observability-prometheus-config"
    assert config_map["object"]["metadata"]["namespace"] == "observability"
    assert config_map["object"]["metadata"]["name"] == "prometheus-config"
    assert config_map["object"]["data"] == {"prometheus.yml": render_prometheus_config(OTHER_SETTINGS)}
    urns = {r["name"]: r["urn"] for r in recorded}
    deps = {r["name"]: set(r["dependencies"]) for r in recorded}
    assert urns["workloads-00-namespaces"] in deps[config_map["name"]]
    assert urns["test-wiring"] in deps[config_map["name"]]
    assert config_map["urn"] in deps["workloads-prometheus"]
    assert config_map["parent"] == urns["workloads"]


def test_component_refuses_missing_or_unknown_rendered_config_maps() -> None:
    args: dict[str, Any] = {"provider": None, "manifests_dir": mc.K8S_DIR, "depends_on": [], "secrets": {}}
    with pytest.raises(ValueError, match="observability/prometheus-config"):
        Workloads("w", WorkloadsArgs(**args))
    maps = {**render_workload_config_maps(DEV_SETTINGS), "observability/extra": {"a": "b"}}
    with pytest.raises(ValueError, match="unknown rendered ConfigMap"):
        Workloads("w", WorkloadsArgs(**args, config_maps=maps))


def test_component_rejects_unknown_secrets_and_settings_reject_bad_lengths(tmp_path: Path) -> None:
    provider_args: dict[str, Any] = {"provider": None, "manifests_dir": mc.K8S_DIR, "depends_on": []}
    with pytest.raises(ValueError, match="unknown workload secret"):
        Workloads("w", WorkloadsArgs(**provider_args, secrets={"postgresPasword": "x"}))  # type: ignore[arg-type]
    # Lengths are checked with every other setting, before any resource exists.
    for key, spec in SECRET_CONFIG.items():
        for bad in ("x" * (spec.min_length - 1), "x" * (spec.max_length + 1)):
            if bad:
                with pytest.raises(ConfigError, match=key):
                    parse_settings({key: bad}, [key] if spec.secret else [])


def test_plan_rejects_what_nothing_provides(tmp_path: Path) -> None:
    (tmp_path / "ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    (tmp_path / "app.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\n"
        "spec:\n  containers:\n  - name: c\n    image: docker.io/library/busybox:1.37\n"
        "    env:\n    - name: TOKEN\n      valueFrom: {secretKeyRef: {name: nope, key: token}}\n"
    )
    with pytest.raises(ValueError, match="Secret a/nope"):
        plan_manifests(tmp_path)
    (tmp_path / "app.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: b}\n")
    with pytest.raises(ValueError, match="namespace 'b'"):
        plan_manifests(tmp_path)
    (tmp_path / "app.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: a}\n")
    assert [(p.stem, p.depends_on) for p in plan_manifests(tmp_path)] == [("ns", ()), ("app", ("ns",))]
    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\n"
        "spec:\n  containers: [{name: c, image: docker.io/library/busybox:1.37}]\n"
        "  volumes: [{name: v, configMap: {name: missing}}]\n"
    )
    with pytest.raises(ValueError, match="ConfigMap a/missing is defined by no file"):
        plan_manifests(tmp_path)
    assert plan_manifests(tmp_path, generated_config_maps=frozenset({"a/missing"}))
    with pytest.raises(ValueError, match=r"\['a/c'\] are rendered by the program"):
        plan_manifests(tmp_path, generated_config_maps=frozenset({"a/missing", "a/c"}))
