"""Every image the stack runs is the version pinned in localdev/images.lock.yaml, and docs/images.md agrees.

The lock check is also fed broken examples (an unknown image, a drifted version,
MinIO, Jaeger v1's all-in-one, a node image without digest, an unused entry), so
a check that cannot fail is caught.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from localdev import image_lock
from localdev.image_lock import LockEntry, load_lock, lock_problems, render_table, table_in
from localdev.manifests import images_from_manifests
from localdev.settings import ConfigError, load_schema, parse_settings
from tests import manifest_checks as mc

LOCK = load_lock()
NODE = next(e for e in LOCK if e.name == "docker.io/kindest/node")


def used_images() -> list[tuple[str, str]]:
    """(where, reference) for every container image in k8s/ and every image default in Pulumi.yaml."""
    used = [(source, found.image) for found in images_from_manifests(mc.K8S_DIR) for source in found.sources]
    schema = load_schema(mc.ROOT)
    used += [(f"Pulumi.yaml {key}", str(spec["default"])) for key, spec in schema.items() if key.endswith("Image")]
    return used


def test_every_image_of_the_stack_is_the_locked_version() -> None:
    used = used_images()
    assert {where.split()[-1] for where, _ in used if where.startswith("Pulumi.yaml")} == {"registryImage", "nodeImage"}
    assert len(used) >= len(LOCK)
    assert lock_problems(used, LOCK) == []


def test_lock_entries_are_confirmed_upstream_and_final_ones_name_a_successor() -> None:
    for entry in LOCK:
        assert entry.confirmed and all(c.startswith("https://") for c in entry.confirmed), entry.name
    finals = {e.name: e.successor for e in LOCK if e.status == "final"}
    assert finals == {"docker.io/grafana/promtail": finals["docker.io/grafana/promtail"]}
    assert "Alloy" in str(finals["docker.io/grafana/promtail"])
    assert NODE.digest and NODE.reference == (
        "docker.io/kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"
    )


@pytest.mark.parametrize(
    ("where", "ref", "fault"),
    [
        ("k8s/x.yaml", "docker.io/library/busybox:1.37", "is not in images.lock.yaml"),
        ("k8s/x.yaml", "docker.io/library/redis:7.4.10-alpine", "differs from"),
        ("k8s/x.yaml", "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z.hotfix.7aa24e772", "MinIO"),
        ("k8s/x.yaml", "minio/mc:RELEASE.2025-08-13T08-35-41Z", "MinIO"),
        ("k8s/x.yaml", "docker.io/jaegertracing/all-in-one:1.76.0", "all-in-one"),
        ("Pulumi.yaml nodeImage", "kindest/node:v1.37.0", "has no digest"),
        ("Pulumi.yaml registryImage", "registry:3.0.0", "differs from"),
        ("Pulumi.yaml registryImage", "Registry:3", "malformed"),
    ],
)
def test_lock_check_catches(where: str, ref: str, fault: str) -> None:
    problems = lock_problems([*used_images(), (where, ref)], LOCK)
    assert any(fault in p and where in p for p in problems), problems


def test_lock_check_catches_an_entry_nothing_uses() -> None:
    stale = LockEntry("docker.io/library/busybox", "1.37", "maintained", "nothing", ("https://example.org",))
    expected = "images.lock.yaml: docker.io/library/busybox is used by nothing in the stack"
    assert lock_problems(used_images(), [*LOCK, stale]) == [expected]


def test_short_names_resolve_to_the_locked_docker_hub_names() -> None:
    assert lock_problems([("Pulumi.yaml nodeImage", NODE.reference.removeprefix("docker.io/"))], [NODE]) == []
    registry = next(e for e in LOCK if e.name == "docker.io/library/registry")
    assert lock_problems([("Pulumi.yaml registryImage", f"registry:{registry.version}")], [registry]) == []


def test_docs_table_is_the_one_rendered_from_the_lock() -> None:
    docs = (mc.ROOT / "docs" / "images.md").read_text()
    assert table_in(docs) == render_table(LOCK), "run: python -m localdev.image_lock"
    for entry in LOCK:
        assert f"`{entry.name}` | `{entry.version}`" in docs


@pytest.mark.parametrize(
    ("body", "fault"),
    [
        ("images: []", "non-empty list"),
        ("images:\n- {name: docker.io/library/redis, version: '7', status: maintained, used_by: x}", "'confirmed' is required"),
        (
            "images:\n- {name: docker.io/library/redis, version: '7', status: old, used_by: x, confirmed: [https://a]}",
            "status 'old'",
        ),
        (
            "images:\n- {name: docker.io/grafana/promtail, version: '3', status: final, used_by: x, confirmed: [https://a]}",
            "needs a 'successor'",
        ),
        ("images:\n- {name: redis, version: '7', status: maintained, used_by: x, confirmed: [https://a]}", "not fully qualified"),
        (
            "images:\n- {name: docker.io/library/redis, version: '7', status: maintained, used_by: x, confirmed: [http://a]}",
            "https://",
        ),
        (
            "images:\n- {name: docker.io/library/redis, version: '7', status: maintained, used_by: x,"
            " confirmed: [https://a], pin: 1}",
            "unknown field",
        ),
    ],
)
def test_lock_file_rejects_bad_entries(tmp_path: Path, body: str, fault: str) -> None:
    path = tmp_path / "images.lock.yaml"
    path.write_text(body + "\n")
    with pytest.raises(ValueError, match=fault):
        load_lock(path)


def test_docs_rewrite_replaces_only_the_table(tmp_path: Path) -> None:
    docs = tmp_path / "images.md"
    docs.write_text(f"# Title\n\n{image_lock.TABLE_BEGIN}\nstale\n{image_lock.TABLE_END}\n\nTail.\n")
    assert image_lock.rewrite_docs(docs) is True
    text = docs.read_text()
    assert text.startswith("# Title\n\n") and text.endswith("\n\nTail.\n")
    assert table_in(text) == render_table(LOCK)
    assert image_lock.rewrite_docs(docs) is False
    docs.write_text("no marks\n")
    with pytest.raises(ValueError, match="no generated table marks"):
        image_lock.rewrite_docs(docs)


def test_node_image_setting_takes_tag_and_digest_and_says_what_is_expected_without_one() -> None:
    assert parse_settings({}).node_image == NODE.reference.removeprefix("docker.io/")
    pinned = "kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed"
    assert parse_settings({"nodeImage": pinned}).node_image == pinned
    assert parse_settings({"nodeImage": f"docker.io/{pinned}"}).node_image == f"docker.io/{pinned}"
    # A node image built locally (kind build node-image) has no registry digest to give.
    assert parse_settings({"nodeImage": "localhost:5001/my-node:v1.37.0-dev"}).node_image == "localhost:5001/my-node:v1.37.0-dev"
    for bare in ("kindest/node:v1.37.0", "docker.io/kindest/node:v1.37.0"):
        with pytest.raises(ConfigError, match="NAME:TAG@sha256:DIGEST") as err:
            parse_settings({"nodeImage": bare})
        assert err.value.key == "nodeImage" and "\n" not in str(err.value)
