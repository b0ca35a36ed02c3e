"""Issue 14: the warm step of ``pulumi up``, run as its Command runs it, against real registries on loopback.

The step is ``/bin/sh -c <localdev/scripts/warm-caches.sh>`` from the project
directory with the environment ``render_warm_command`` gives the Command; the
only change is where it reads each cache's storage (``dir:PATH``: the caches
here are processes, not containers). Two caches (docker.io and quay.io, the
product's environment from ``render_cache_env``) pull from one upstream
through an :class:`HttpRelay` that counts every request crossing "the link".
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from localdev.manifests import image_set_digest
from localdev.ops.storage import V2, layer_link_path
from localdev.render import WARM_MANIFESTS, render_warm_command, warm_targets
from localdev.settings import PROJECT_DIR, Settings, parse_settings, venv_python
from tests.harness import HttpRelay, RegistryProcess, make_image, pull_manifest_and_blobs, push_image
from tests.harness.net import free_port

ALPHA = make_image("library/alpha", "1", [150_000, 60_000], seed=41)
BETA = make_image("team/beta", "v1", [90_000], seed=42, shared_layers=ALPHA.layers[:1])
GAMMA = make_image("org/gamma", "2", [70_000], seed=43)
#: Reference as the manifests write it -> (cache host, image).
IMAGES = {
    "alpha:1": ("docker.io", ALPHA),
    "docker.io/team/beta:v1": ("docker.io", BETA),
    "quay.io/org/gamma:2": ("quay.io", GAMMA),
}


def write_manifests(directory: Path, images: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "demo"},
        "spec": {"template": {"spec": {"containers": containers}}},
    }
    (directory / "app.yaml").write_text(yaml.safe_dump(deployment))
    return directory


class Caches:
    """One upstream, the link (relay) in front of it, and a cache per registry host behind the link."""

    def __init__(self, make_registry: Any, relay_factory: Any) -> None:
        self.upstream = make_registry("upstream")
        for _, image in IMAGES.values():
            push_image(self.upstream.url, image)
        self.relay: HttpRelay = relay_factory(self.upstream)
        self.settings: Settings = parse_settings(
            {"mirrors": [f"docker.io={free_port()}={self.relay.url}", f"quay.io={free_port()}={self.relay.url}"]}
        )
        from localdev.render import render_cache_env

        self.caches: dict[str, RegistryProcess] = {
            m.host: make_registry(f"cache-{m.slug}", env=render_cache_env(self.settings, m), port=m.port)
            for m in self.settings.mirrors
        }

    def warm_step(self, manifests: Path, cwd: Path = PROJECT_DIR) -> subprocess.CompletedProcess[str]:
        """The Command the program registers, run as pulumi-command runs it (``/bin/sh -c``)."""
        storage = {host: f"dir:{cache.storage}" for host, cache in self.caches.items()}
        shell = render_warm_command(self.settings, python=venv_python(), targets=warm_targets(self.settings, storage))
        env = {**os.environ, **shell.environment, "WARM_MANIFESTS": str(manifests), "NO_COLOR": "1"}
        env.pop("LOCALDEV_DEBUG", None)
        done = subprocess.run(
            ["/bin/sh", "-c", shell.create], cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        return done

    def blob_gets_per_pair(self) -> Counter[tuple[str, str]]:
        pairs: Counter[tuple[str, str]] = Counter()
        for method, path in self.relay.requests:
            if method == "GET" and "/blobs/" in path:
                repo, _, digest = path.removeprefix("/v2/").partition("/blobs/")
                pairs[(repo, digest)] += 1
        return pairs

    def blob_requests(self) -> dict[str, int]:
        """How many blob requests each cache has answered (distribution's expvar counter)."""
        return {host: cache.debug_vars()["registry"]["proxy"]["blobs"]["Requests"] for host, cache in self.caches.items()}


@pytest.fixture
def caches(make_registry: Any, relay_factory: Any) -> Caches:
    return Caches(make_registry, relay_factory)


def test_the_warm_step_fills_every_cache_once_per_repository_and_the_nodes_then_stay_off_the_link(
    caches: Caches, tmp_path: Path
) -> None:
    manifests = write_manifests(tmp_path / "k8s", list(IMAGES))
    done = caches.warm_step(manifests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("✓ 3 image(s): fetched 8 blobs")
    assert "warming: 8 blobs to fetch" in done.stderr  # progress as lines: what pulumi up shows of a Command

    # Every (repository, blob) is stored in its host's cache; each crossed the link once per repository
    # that uses it, twice on 2.8 (its own store fetches a second copy: the double fetch, docs/warm-step.md).
    wanted = {(image.repo, digest) for _, image in IMAGES.values() for digest in image.blobs}
    for _, (host, image) in IMAGES.items():
        for digest in image.blobs:
            assert (caches.caches[host].storage / V2 / layer_link_path(image.repo, digest)).exists()
    per_pair = caches.blob_gets_per_pair()
    assert set(per_pair) == wanted
    assert set(per_pair.values()) <= {1, 2}, per_pair
    assert caches.relay.manifest_gets() == 3

    # A node pulling now: no blob and no manifest GET crosses the link (a tag HEAD does; Docker Hub does not count it).
    caches.relay.reset()
    for _, (host, image) in IMAGES.items():
        pull_manifest_and_blobs(caches.caches[host].url, image.repo, image.tag)
    assert (caches.relay.blob_gets(), caches.relay.manifest_gets()) == (0, 0), caches.relay.requests


def test_a_second_run_fetches_nothing_and_asks_no_cache_for_a_blob(caches: Caches, tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path / "k8s", list(IMAGES))
    assert caches.warm_step(manifests).returncode == 0
    caches.relay.reset()
    before = caches.blob_requests()
    again = caches.warm_step(manifests)
    assert again.returncode == 0, again.stderr
    assert "fetched 0 blobs (0 B), already cached 8 blobs" in again.stdout.splitlines()[-1]
    assert "already cached (3 blobs," in again.stdout  # alpha:1: config and two layers
    assert (caches.relay.blob_gets(), caches.relay.manifest_gets()) == (0, 0), caches.relay.requests
    assert caches.blob_requests() == before  # read from storage: not one blob request to the caches


def test_unreachable_upstream_reports_what_is_missing_and_does_not_fail_the_stack(caches: Caches, tmp_path: Path) -> None:
    assert caches.warm_step(write_manifests(tmp_path / "first", ["alpha:1"])).returncode == 0
    caches.relay.mode = "refuse"  # the laptop goes offline after the caches started
    done = caches.warm_step(write_manifests(tmp_path / "all", list(IMAGES)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ alpha:1 via docker.io cache: already cached (3 blobs" in done.stdout
    assert "✗ docker.io/team/beta:v1: team/beta:v1: not found at " in done.stdout
    assert "✗ quay.io/org/gamma:2: org/gamma:2: not found at " in done.stdout
    missing = [line for line in done.stderr.splitlines() if line.startswith("warm step:")]
    assert len(missing) == 1, done.stderr
    assert missing[0].startswith(
        "warm step: 2 image(s) not in the caches: docker.io/team/beta:v1, quay.io/org/gamma:2. The stack goes on"
    )


def test_without_allow_missing_the_command_fails_on_an_unreachable_upstream(caches: Caches, tmp_path: Path) -> None:
    caches.relay.mode = "refuse"
    cache = caches.caches["docker.io"]
    done = subprocess.run(
        [venv_python(), "-m", "localdev", "warm", "--no-manifests", "--cache", f"docker.io={cache.url}=dir:{cache.storage}",
         "alpha:1"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "✗ alpha:1: library/alpha:1: not found at " in done.stdout and "not in the caches" not in done.stderr


def test_an_image_of_a_registry_without_a_cache_is_skipped_with_a_note(caches: Caches, tmp_path: Path) -> None:
    done = caches.warm_step(write_manifests(tmp_path / "k8s", ["alpha:1", "ghcr.io/org/tool:3"]))
    assert done.returncode == 0, done.stderr
    assert (
        "- ghcr.io/org/tool:3: no cache for ghcr.io: nodes pull it from ghcr.io directly (add ghcr.io to mirrors to cache it)"
    ) in done.stdout
    assert caches.relay.count("GET", "ghcr") == 0


def test_the_step_refuses_to_run_outside_the_project_directory(caches: Caches, tmp_path: Path) -> None:
    caches.relay.reset()  # the caches' own start-up checks of their upstream
    done = caches.warm_step(write_manifests(tmp_path / "k8s", ["alpha:1"]), cwd=tmp_path)
    assert done.returncode == 1
    assert f"warm step: {tmp_path} is not the project directory" in done.stderr
    assert caches.relay.requests == []


# ----------------------------------------------------------------------- the Command's inputs, pure
def test_the_commands_inputs_name_no_path_of_this_machine() -> None:
    settings = parse_settings({"mirrors": ["docker.io", "quay.io"]})
    shell = render_warm_command(settings, python=venv_python())
    assert shell.environment == {
        "LOCALDEV_PYTHON": ".venv/bin/python",
        "WARM_CACHES": "docker.io=http://127.0.0.1:5000=container:localdev-cache-docker-io\n"
        "quay.io=http://127.0.0.1:5003=container:localdev-cache-quay-io",
        "WARM_JOBS": "4",
        "WARM_MANIFESTS": WARM_MANIFESTS,
    }
    assert str(PROJECT_DIR) not in repr(shell) and shell.delete is None
    assert shell.create == (PROJECT_DIR / "localdev" / "scripts" / "warm-caches.sh").read_text()


def test_venv_python_follows_pulumi_yaml(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: x\nruntime:\n  name: python\n  options:\n    virtualenv: env/\n")
    assert venv_python(tmp_path) == "env/bin/python"
    (tmp_path / "Pulumi.yaml").write_text("name: x\nruntime: python\n")
    assert venv_python(tmp_path) == "python3"


def test_the_trigger_changes_with_the_image_set_only(tmp_path: Path) -> None:
    one = image_set_digest(write_manifests(tmp_path / "a", ["alpha:1", "quay.io/org/gamma:2"]))
    same = image_set_digest(write_manifests(tmp_path / "b", ["quay.io/org/gamma:2", "alpha:1", "alpha:1"]))
    other = image_set_digest(write_manifests(tmp_path / "c", ["alpha:2", "quay.io/org/gamma:2"]))
    assert one == same != other
    assert image_set_digest(PROJECT_DIR / "k8s").startswith("sha256:")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--cache", "docker.io"], "error: --cache 'docker.io': use HOST=URL[=container:NAME|=dir:PATH]"),
        (["--cache", "docker.io=http://127.0.0.1:9=tape:x"], "error: --cache 'docker.io=http://127.0.0.1:9=tape:x': use HOST"),
        (["--cache", "docker.io=http://127.0.0.1:9", "--registry", "http://127.0.0.1:9"], "error: --registry and --cache both"),
    ],
)
def test_bad_cache_arguments_are_one_line_and_exit_2(args: list[str], line: str) -> None:
    done = subprocess.run(
        [venv_python(), "-m", "localdev", "warm", "--no-manifests", *args, "alpha:1"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.startswith(line), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
