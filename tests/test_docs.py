"""The docs hold: facts cite their upstream sources, numbers are stated once, examples are what the code says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from localdev.render import render_kind_config
from localdev.settings import load_schema, parse_settings
from tests.test_cli_errors import make_project, one_error_line, run

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
#: The team's private notes; the repository states facts with upstream sources instead.
PRIVATE_NOTES = ("FIELD" + "-NOTES", "REAL" + "-ENGINE")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    paths = [ROOT / rel for rel in listed.split("\0") if rel]
    return [p for p in paths if p.is_file() and p.suffix not in (".png", ".gz", ".tar")]


def test_nothing_cites_the_private_notes() -> None:
    for path in tracked_text_files():
        text = path.read_text(errors="replace")
        for name in PRIVATE_NOTES:
            assert name not in text, f"{path.relative_to(ROOT)} cites {name}: state the fact in docs/ with its upstream source"


def test_docker_hub_limits_are_stated_once_with_their_source() -> None:
    limit = re.compile(r"\b\d+\s+(pulls?\s+)?(per|/|every)\s+(\d+\s*)?(hours?|h\b|IPv4|IP\b)", re.IGNORECASE)
    stated = [p.relative_to(ROOT).as_posix() for p in tracked_text_files() if limit.search(p.read_text(errors="replace"))]
    assert stated == ["docs/sources.md"], stated
    sources = (ROOT / "docs" / "sources.md").read_text()
    assert "content/manuals/docker-hub/usage/pulls.md" in sources


def test_readme_error_example_is_what_localdev_says(tmp_path: Path) -> None:
    example = re.search(r"^(error: Pulumi\.dev\.yaml line \d+: config 'mirrors': .*)$", README, re.MULTILINE)
    assert example is not None
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    mirrors = dev["config"]["localdev:mirrors"]
    dev["config"]["localdev:mirrors"] = [("ghcr.io=5001" if m == "ghcr.io" else m) for m in mirrors]
    project = make_project(tmp_path, {"dev": yaml.safe_dump(dev, sort_keys=False)})
    assert one_error_line(run(project, "render", "OUT")) == example.group(1)


#: A valid value other than the default, per setting.
OTHER_VALUES: dict[str, Any] = {
    "clusterName": "other",
    "nodeImage": "kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed",
    "controlPlanes": 3,
    "workers": 2,
    "mirrors": ["docker.io", "ghcr.io"],
    "pushRegistryPort": 5011,
    "grafanaPort": 3300,
    "prometheusPort": 9190,
    "jaegerPort": 16786,
    "registryImage": "registry:3.0.1",
    "proxyTtl": "168h",
    "retainCaches": False,
    "dockerHubUsername": "someone",
    "dockerHubPassword": "<encrypted>",
}


def test_settings_that_replace_the_cluster_say_so() -> None:
    """A setting that changes the kind config replaces the cluster: Pulumi.yaml and the README must warn."""
    schema = load_schema()
    default = render_kind_config(parse_settings({}))
    replacing = set()
    for key in schema:
        if key not in OTHER_VALUES:
            continue
        values = {key: OTHER_VALUES[key]}
        if key == "dockerHubPassword":
            values["dockerHubUsername"] = "someone"
        if key == "dockerHubUsername":
            values["dockerHubPassword"] = "<encrypted>"
        if render_kind_config(parse_settings(values, ["dockerHubPassword"])) != default:
            replacing.add(key)
    assert {"nodeImage", "controlPlanes", "workers", "grafanaPort"} <= replacing
    for key in replacing - {"clusterName"}:
        assert "REPLACES THE CLUSTER" in schema[key]["description"], key
        row = next(line for line in README.splitlines() if line.startswith("|") and f"`{key}`" in line)
        assert "replaces the cluster" in row, row
    assert "new cluster" in next(line for line in README.splitlines() if line.startswith("| `clusterName`"))


def test_every_setting_is_in_the_readme_table() -> None:
    rows = [line for line in README.splitlines() if line.startswith("| `")]
    for key in load_schema():
        assert any(f"`{key}`" in row for row in rows), f"{key} is missing from the README's configuration table"
