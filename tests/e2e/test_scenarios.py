"""``pulumi up`` on real parts: the program's resources on a real Docker engine, kind 0.33.0 and
containerd 2.1 nodes (issue 10's scenarios, in order; each builds on the state the one before left).

What is real here and what stands in is listed in docs/testing.md; in short: the engine, kind,
containerd, runc, the registry binary, the program's scripts and entrypoint are real; kubeadm and
kubectl are stand-ins (no kubelet or API server exists here), so Kubernetes resources are not
applied, and CRI pulls in each node show what kubelet would pull.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import pytest

from localdev.ops.status import StatusChecker
from localdev.render import registry_containers, render_node_hosts
from localdev.settings import Settings
from tests.harness.containerd import CriError, cri_pull, cri_remove_image
from tests.harness.images import make_image, push_image

from .checks import CERTS_DIR, cri_loaded, listening_addresses, node_config_path, node_hosts_files, published
from .docker import docker, inspect
from .environment import UPSTREAM, Environment, guard_drops
from .executor import ExecutorError
from .stack import PUSH_PORT

#: Images the test's upstream serves, by the name nodes pull them as.
HUB_IMAGE = make_image("library/e2e-small", "1", [40_000, 60_000], seed=10)
GHCR_IMAGE = make_image("e2e/app", "1", [30_000], seed=11)
PUSHED_IMAGE = make_image("e2e/pushed", "1", [20_000], seed=12)
PULLS = {
    f"docker.io/{HUB_IMAGE.repo}:{HUB_IMAGE.tag}": HUB_IMAGE,
    f"ghcr.io/{GHCR_IMAGE.repo}:{GHCR_IMAGE.tag}": GHCR_IMAGE,
    f"localhost:{PUSH_PORT}/{PUSHED_IMAGE.repo}:{PUSHED_IMAGE.tag}": PUSHED_IMAGE,
}


def _clean(env: Environment) -> None:
    """Nothing of the test stack left on the engine: state, cluster, containers, volumes, upstream.

    A run that failed half-way may leave a state naming what is gone already, so a failed destroy
    does not stop the rest: each later step removes what is left by name.
    """
    try:
        env.destroy()
    except Exception as err:  # noqa: BLE001 - cleaning up after a failed run; the steps below finish the job
        print(f"e2e: destroy from the last state failed ({err}); removing what is left by name", file=sys.stderr)
    env.kind("delete", "cluster", "--name", env.stack_name, check=False)
    leftovers = docker("ps", "-aq", "--filter", f"label=localdev.cluster={env.stack_name}").stdout.split()
    if leftovers:
        docker("rm", "-f", *leftovers)
    docker("rm", "-f", UPSTREAM, check=False)
    env.remove_volumes()
    env.forget_state()


@pytest.fixture(scope="module")
def env() -> Iterator[Environment]:
    environment = Environment()
    _clean(environment)
    yield environment
    _clean(environment)


def _pull_everywhere(env: Environment, refs: list[str]) -> dict[str, dict[str, str]]:
    """CRI PullImage of each ref in each node, as kubelet would pull; node -> ref -> image id."""
    return {node: _pull_in(env, node, refs) for node in env.node_names()}


def _pull_in(env: Environment, node: str, refs: list[str]) -> dict[str, str]:
    """CRI PullImage of each ref in ``node``, after removing it there so the pull is not a no-op."""
    socket = env.containerd_socket(node)
    pulled = {}
    for ref in refs:
        with contextlib.suppress(CriError):
            cri_remove_image(socket, ref)
        pulled[ref] = cri_pull(socket, ref, timeout=60)
    return pulled


def _assert_wired(env: Environment, settings_hosts: dict[str, str]) -> None:
    nodes = env.node_names()
    assert nodes, "the cluster has no nodes"
    for node in nodes:
        assert node_hosts_files(node) == settings_hosts, f"{node}: hosts.toml files differ from the config"
        assert node_config_path(node) == CERTS_DIR, f"{node}: containerd's effective CRI config_path is not {CERTS_DIR}"
        assert cri_loaded(node), f"{node}: containerd's CRI plugin is not loaded"


def _node_status(settings: Settings) -> list[str]:
    """``localdev status``'s node lines for the stack, against the real engine."""
    import docker as docker_sdk  # type: ignore[import-untyped]

    checker = StatusChecker(settings, docker_sdk.from_env())
    checker.nodes()
    return [f"{'ok' if c.ok else 'FAIL'} {c.subject}: {c.message}" for c in checker.checks]


def test_up_from_nothing(env: Environment) -> None:
    # The engine can pull nothing: any pull goes to a closed loopback proxy, never to a registry's name.
    assert docker("info", "--format", "{{.HTTPSProxy}} {{.HTTPProxy}}").stdout.split() == ["http://127.0.0.1:9"] * 2
    address = env.start_upstream(env.stack().settings().registry_image)
    for image in (HUB_IMAGE, GHCR_IMAGE):
        push_image(f"http://{address}", image)

    steps = env.up()
    assert {s.op for s in steps} == {"create"}, steps
    settings = env.stack().settings()

    for name in registry_containers(settings):
        attrs = inspect("container", name)
        assert attrs is not None, f"{name} does not exist"
        assert attrs["State"]["Health"]["Status"] == "healthy", f"{name} is not healthy"
        bindings = published(name)
        assert bindings and {ip for ip, _ in bindings} == {"127.0.0.1"}, f"{name} is published on {bindings}"
        for _, port in bindings:
            assert listening_addresses(int(port)) == {"127.0.0.1"}, f"port {port} listens on {listening_addresses(int(port))}"
        kind_net = attrs["NetworkSettings"]["Networks"].get("kind")
        assert kind_net is not None and name in (kind_net.get("Aliases") or []), f"{name} is not on kind as {name}"
        for node in env.node_names():
            assert env.exec(node, "getent", "hosts", name).strip(), f"{node} cannot resolve {name}"

    _assert_wired(env, render_node_hosts(settings))
    lines = _node_status(settings)
    assert lines and all(line.startswith("ok ") for line in lines), "\n".join(lines)

    push_image(f"http://127.0.0.1:{PUSH_PORT}", PUSHED_IMAGE)
    nodes = env.node_names()
    first, *others = nodes
    before = env.upstream_blob_gets()
    first_pulls = _pull_in(env, first, list(PULLS))
    after_first = env.upstream_blob_gets()
    for ref, image in PULLS.items():
        assert first_pulls[ref], f"{first}: {ref} did not pull"
        if ref.startswith("localhost:"):
            continue
        for digest in [image.config_digest, *image.layer_digests]:
            fetched = after_first.get(digest, 0) - before.get(digest, 0)
            # registry 3.x stores a missed blob from the one stream it sends the client; the 2.8.3
            # binary standing in for it fetches a missed blob a second time for its own store
            # (docs/testing.md). Either way the blob came through the cache, from our upstream.
            assert 1 <= fetched <= 2, f"upstream served {digest} {fetched} times for the first pull of {ref}"
    for node in others:
        _pull_in(env, node, list(PULLS))
    assert env.upstream_blob_gets() == after_first, "a second node's pull reached the upstream: the cache did not serve it"

    # A name no container has is forwarded by Docker's DNS to the engine's outside resolver, and
    # the guard drops the query (a reserved .invalid name: nothing public is ever looked up).
    dropped = guard_drops()
    lookup = docker("exec", first, "timeout", "6", "getent", "hosts", "e2e-guard-check.invalid", check=False)
    assert lookup.returncode != 0 and not lookup.stdout.strip(), lookup.stdout
    assert guard_drops() > dropped, "the lookup of an outside name was not dropped by the egress guard"


def test_up_again_changes_nothing(env: Environment) -> None:
    steps = env.up()
    assert [s for s in steps if s.op != "same"] == [], steps
    before = env.upstream_blob_gets()
    results = _pull_everywhere(env, list(PULLS))
    assert all(all(images.values()) for images in results.values())
    assert env.upstream_blob_gets() == before


def test_destroy_keeps_caches_and_offline_up_serves_them(env: Environment) -> None:
    settings = env.stack().settings()
    env.destroy()
    assert env.stack_name not in env.kind("get", "clusters").stdout.split()
    for name in registry_containers(settings):
        assert inspect("container", name) is None, f"{name} survived destroy"
    assert docker("ps", "-aq", "--filter", f"label=io.x-k8s.kind.cluster={env.stack_name}").stdout.split() == []
    volumes = set(docker("volume", "ls", "-q").stdout.split())
    for name in registry_containers(settings):
        assert f"{name}-data" in volumes, f"{name}-data was not kept"

    env.stop_upstream()
    steps = env.up()
    assert {s.op for s in steps} == {"create"}
    for name in registry_containers(settings):
        if name == settings.push_name:
            continue
        logs = docker("logs", name).stderr
        assert "unreachable" in logs and "read-only" in logs, f"{name} did not boot read-only:\n{logs[-800:]}"
    _assert_wired(env, render_node_hosts(settings))
    results = _pull_everywhere(env, list(PULLS))
    assert all(all(images.values()) for images in results.values())


def test_mirror_removed_leaves_no_hosts_toml(env: Environment) -> None:
    env.start_upstream(env.stack().settings().registry_image)
    stack = env.stack(mirrors=("docker.io",))
    steps = env.up(stack)
    ops = {s.name: s.op for s in steps}
    assert ops.get("cache-ghcr-io-container") == "delete", steps
    assert inspect("container", stack.settings().cache_name(env.stack().settings().mirrors[1])) is None
    _assert_wired(env, render_node_hosts(stack.settings()))
    for node in env.node_names():
        assert "ghcr.io/hosts.toml" not in node_hosts_files(node)


def test_more_workers_replace_the_cluster_and_wire_new_nodes(env: Environment) -> None:
    old_nodes = env.node_names()
    old_ids = {n: docker("inspect", "-f", "{{.Id}}", n).stdout.strip() for n in old_nodes}
    stack = env.stack(mirrors=("docker.io",), workers=2)
    steps = env.up(stack)
    ops = {s.name: s.op for s in steps}
    assert ops.get("cluster-kind") == "replace", steps
    nodes = env.node_names()
    assert len(nodes) == 3, nodes
    for node in nodes:
        assert docker("inspect", "-f", "{{.Id}}", node).stdout.strip() != old_ids.get(node), f"{node} was not recreated"
    _assert_wired(env, render_node_hosts(stack.settings()))
    refs = [r for r in PULLS if not r.startswith("ghcr.io/")]
    results = _pull_everywhere(env, refs)
    assert set(results) == set(nodes)


def test_hand_made_cluster_is_never_adopted_silently(env: Environment) -> None:
    # The registries stay; the cluster and what depends on it go (pulumi destroy --target).
    env.destroy(targets=("cluster-kind",))
    assert env.stack_name not in env.kind("get", "clusters").stdout.split()
    stack = env.stack(mirrors=("docker.io",), workers=2)
    config = (
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
        f"nodes:\n- role: control-plane\n  image: {stack.settings().node_image}\n"
    )
    made = env.kind("create", "cluster", "--name", env.stack_name, "--config=-", check=False, input=config)
    assert made.returncode == 0, made.stderr
    (node,) = env.node_names()
    assert node_config_path(node) == "", "a plain kind cluster here already has config_path set"
    # What the wiring would write, by hand: matching files must not make status report it wired.
    for rel, text in render_node_hosts(stack.settings()).items():
        docker("exec", node, "mkdir", "-p", f"{CERTS_DIR}/{rel.rsplit('/', 1)[0]}")
        docker("exec", "-i", node, "cp", "/dev/stdin", f"{CERTS_DIR}/{rel}", input=text)
    lines = _node_status(stack.settings())
    assert any(line.startswith("FAIL") and "effective CRI config_path is ''" in line for line in lines), lines
    try:
        env.up(stack)
    except ExecutorError as err:
        message = str(err)
        assert env.stack_name in message and f"kind delete cluster --name {env.stack_name}" in message, message
        return
    # Not refused: then it must have been repaired, never left ignoring hosts.toml.
    for node in env.node_names():
        assert node_config_path(node) == CERTS_DIR, f"{node} was adopted with an empty config_path"
