"""The benchmark's pure parts: the image set comes from k8s/, the relay's counts, and issue 14's targets."""

from __future__ import annotations

from typing import Any

import pytest

from bench.imageset import DEFAULT_SHAPE, build_image_set, workload_images
from bench.report import DOUBLE_FETCH, UP_ORDER_BYTES_MAX, UP_ORDER_BYTES_MAX_2X, evaluate_targets
from bench.runner import upstream_stats
from localdev.images import parse_reference
from localdev.manifests import images_from_manifests
from tests.harness.relay import RelayedRequest
from tests.program import ROOT

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def test_the_image_set_is_the_images_of_k8s() -> None:
    specs = workload_images(ROOT / "k8s")
    wanted = []
    for found in images_from_manifests(ROOT / "k8s"):
        ref = parse_reference(found.image)
        wanted.append(f"{ref.registry}/{ref.repository}:{ref.tag}")
    assert [s.ref for s in specs] == list(dict.fromkeys(wanted))
    assert all(s.sources for s in specs)
    built = build_image_set(0.001, specs)
    assert built.registries == sorted({s.registry for s in specs})
    assert built.per_repo_bytes > built.unique_bytes  # shared bases, counted once per repository


def test_an_unknown_repository_gets_the_default_shape(tmp_path: Any) -> None:
    pod = "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: 'ghcr.io/org/new-tool:1'}]}\n"
    (tmp_path / "p.yaml").write_text(pod)
    [spec] = workload_images(tmp_path)
    assert (spec.ref, spec.shape, spec.estimated) == ("ghcr.io/org/new-tool:1", DEFAULT_SHAPE, False)


def test_blob_gets_are_counted_per_repository_and_blob() -> None:
    records = [
        RelayedRequest("GET", f"/v2/library/a/blobs/{D1}", 1, bytes_down=100),
        RelayedRequest("GET", f"/v2/library/a/blobs/{D1}", 2, bytes_down=100),
        RelayedRequest("GET", f"/v2/team/b/blobs/{D1}", 3, bytes_down=100),
        RelayedRequest("GET", f"/v2/team/b/blobs/{D2}", 3, bytes_down=50),
        RelayedRequest("HEAD", "/v2/team/b/manifests/1", 3),
        RelayedRequest("GET", "/v2/team/b/manifests/1", 3, bytes_down=7),
    ]
    stats = upstream_stats(records)
    assert (stats["blob_gets"], stats["blob_get_pairs"], stats["max_gets_per_pair"]) == (4, 3, 2)
    assert (stats["manifest_gets"], stats["manifest_heads"], stats["bytes"]) == (1, 1, 357)


def result(major: int | None, ratio: float) -> dict[str, Any]:
    upstream = {"bytes": int(ratio * 1000), "blob_gets": 2, "blob_get_pairs": 1, "max_gets_per_pair": 2,
                "manifest_gets": 1, "blob_bytes": 0}  # fmt: skip
    nodes = {"blob_gets": 0, "manifest_gets": 0, "blob_bytes": 0, "manifest_heads": 3}
    up_order = {"key": "up_order", "title": "3 nodes, pulumi up order", "wall_s": 10.0, "total_wall_s": 100.0,
                "link_s": 90.0, "upstream": nodes, "upstream_total": upstream, "upstream_over_image_bytes": ratio,
                "warm_step": {"wall_s": 89.0, "settle_s": 1.0}}  # fmt: skip
    version = {"text": f"registry v{major}.0.0" if major else "unknown", "major": major}
    return {
        "meta": {"registry_version": version, "bandwidth_mbit": 100.0},
        "image_set": {"unique_bytes": 1000},
        "scenarios": [up_order],
    }


def target(res: dict[str, Any], tid: str) -> dict[str, Any]:
    return next(t for t in evaluate_targets(res) if t["id"] == tid)


@pytest.mark.parametrize(
    ("major", "ratio", "limit", "status"),
    [(2, 2.06, UP_ORDER_BYTES_MAX_2X, "PASS"), (2, 2.3, UP_ORDER_BYTES_MAX_2X, "FAIL"),
     (3, 1.03, UP_ORDER_BYTES_MAX, "PASS"), (3, 2.06, UP_ORDER_BYTES_MAX, "FAIL"),
     (None, 2.06, UP_ORDER_BYTES_MAX, "FAIL")],
)  # fmt: skip
def test_the_byte_target_depends_on_the_registry_and_says_why(major: int | None, ratio: float, limit: float, status: str) -> None:
    checked = target(result(major, ratio), "up-order-bytes")
    assert (checked["limit"], checked["status"]) == (limit, status)
    assert (DOUBLE_FETCH in checked["detail"]) == (major == 2)


def test_the_nodes_pulls_and_the_link_time_targets() -> None:
    res = result(3, 1.03)
    assert target(res, "zero-upstream:up_order")["status"] == "PASS"
    res["scenarios"][0]["upstream"]["manifest_gets"] = 1
    assert target(res, "zero-upstream:up_order")["status"] == "FAIL"
    link = target(res, "up-order-link-time")
    assert (link["value"], link["status"]) == (round(100 / 90, 4), "PASS")
    assert target(res, "up-order-one-vs-cold")["status"] == "SKIP"
