"""``localdev rewire`` runs the program's own wiring scripts again, against fake ``kind`` and ``docker``.

The fakes (from ``tests/test_render.py``) act on a directory per node, so what the
command does to nodes is checked as files, and the scripts are the very bytes the
program's Commands run (``localdev/scripts/``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from localdev.render import CERTS_DIR, render_node_hosts
from localdev.settings import load_stack
from tests.test_render import fake_tools  # noqa: F401  (the fixture)
from tests.tools import tool

ROOT = Path(__file__).resolve().parent.parent


def rewire(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = tool("localdev", "install the project into the venv: .venv/bin/pip install -e .")
    return subprocess.run(
        [command, "rewire", "--stack", "dev", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_rewire_restores_every_hosts_toml_and_the_network(fake_tools: dict[str, str]) -> None:  # noqa: F811
    root = Path(fake_tools["FAKE_ROOT"])
    settings = load_stack("dev", ROOT)
    first = rewire(fake_tools)
    assert first.returncode == 0, first.stderr
    for node in ("localdev-control-plane", "localdev-worker"):
        for rel, text in render_node_hosts(settings).items():
            assert (root / f"{node}{CERTS_DIR}/{rel}").read_text() == text
    connects = [line for line in (root / "calls").read_text().splitlines() if "network connect" in line]
    assert len(connects) == len(settings.mirrors) + 1
    # A node that lost its files (re-created by hand) gets them back; attached registries stay as they are.
    lost = root / f"localdev-worker{CERTS_DIR}/docker.io/hosts.toml"
    lost.unlink()
    assert rewire(fake_tools).returncode == 0
    assert lost.exists()
    connects = [line for line in (root / "calls").read_text().splitlines() if "network connect" in line]
    assert len(connects) == len(settings.mirrors) + 1


def test_rewire_dry_run_prints_the_scripts_and_touches_nothing(fake_tools: dict[str, str]) -> None:  # noqa: F811
    root = Path(fake_tools["FAKE_ROOT"])
    done = rewire(fake_tools, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert (ROOT / "localdev" / "scripts" / "wire-nodes.sh").read_text() in done.stdout
    assert (ROOT / "localdev" / "scripts" / "attach-network.sh").read_text() in done.stdout
    assert not (root / "calls").exists()
