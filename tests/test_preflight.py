"""``localdev preflight``: versions, not only presence, every problem at once, each with its fix.

The tools are the STAND-INS of ``tests/stand_ins/`` (no Pulumi CLI exists here, and
the real docker and kind must not be asked), linked into a directory that is the
whole PATH, so a tool left out is truly missing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from localdev.preflight import MIN_PYTHON, check_prerequisites, kind_needed, pinned_pulumi_sdk
from tests.tools import tool

ROOT = Path(__file__).resolve().parent.parent
STAND_INS = ROOT / "tests" / "stand_ins"


def preflight(
    tmp_path: Path, tools: tuple[str, ...] = ("docker", "kind", "pulumi"), *args: str, cwd: Path = ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    """``localdev preflight ARGS`` run in ``cwd`` with only the stand-ins of ``tools`` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in tools:
        link = bin_dir / name
        if not link.exists():
            link.symlink_to(STAND_INS / name)
    environ = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "STAND_IN_LOG": str(tmp_path / "calls.log"),
        "STAND_IN_DOCKER_API": "1.43",
        "STAND_IN_KIND_VERSION": "0.33.0",
        "NO_COLOR": "1",
        **env,
    }
    command = tool("localdev", "install the project into the venv: .venv/bin/pip install -e .")
    return subprocess.run(
        [command, "preflight", *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_all_present_and_new_enough(tmp_path: Path) -> None:
    done = preflight(tmp_path)
    assert done.returncode == 0, done.stderr
    pinned = ".".join(map(str, pinned_pulumi_sdk() or ()))
    for line in (
        "✓ Python",
        "✓ Docker engine reachable, API 1.43",
        "✓ kind 0.33.0 (≥ 0.33.0 for kindest/node:v1.37.0)",
        f"✓ Pulumi CLI {pinned}",
    ):
        assert line in done.stdout, done.stdout
    assert done.stderr == ""


def test_every_problem_at_once_each_with_its_fix(tmp_path: Path) -> None:
    done = preflight(tmp_path, STAND_IN_DOCKER_API="", STAND_IN_KIND_VERSION="0.32.0", STAND_IN_PULUMI_VERSION="3.100.0")
    assert done.returncode == 1
    problems = done.stderr.splitlines()
    assert len(problems) == 3, done.stderr
    docker, kind, pulumi = problems
    assert "Docker engine is not reachable" in docker and "start Docker" in docker
    assert "kind 0.32.0 is older than 0.33.0" in kind and "install kind v0.33.0" in kind
    assert "Pulumi CLI 3.100.0 is older than" in pulumi and "upgrade" in pulumi


def test_missing_tools_are_named_with_where_to_get_them(tmp_path: Path) -> None:
    done = preflight(tmp_path, ())
    assert done.returncode == 1
    for name, where in (("docker", "docs.docker.com"), ("kind", "kind.sigs.k8s.io"), ("pulumi", "pulumi.com")):
        assert any(f"{name} not found on PATH" in line and where in line for line in done.stderr.splitlines()), done.stderr


def test_old_docker_engine(tmp_path: Path) -> None:
    done = preflight(tmp_path, STAND_IN_DOCKER_API="1.40")
    assert done.returncode == 1
    assert "Docker engine API 1.40 is older than 1.41" in done.stderr and "upgrade" in done.stderr


def project_with(tmp_path: Path, stack: str, text: str) -> Path:
    """A project directory holding this Pulumi.yaml and ``Pulumi.<stack>.yaml`` = ``text``."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (project / f"Pulumi.{stack}.yaml").write_text(text)
    return project


def test_the_stack_node_image_sets_the_kind_needed(tmp_path: Path) -> None:
    old_image = "kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed"
    project = project_with(tmp_path, "old", f"config:\n  localdev:nodeImage: {old_image}\n")
    done = preflight(tmp_path, ("docker", "kind", "pulumi"), "--stack", "old", cwd=project, STAND_IN_KIND_VERSION="0.32.0")
    assert done.returncode == 0, done.stderr  # kind 0.32 is fine for a v1.36 node image
    assert kind_needed("kindest/node:v1.37.0@sha256:" + "a" * 64) == (0, 33, 0)
    assert kind_needed("kindest/node:v1.36.1") is None


def test_old_python_is_named() -> None:
    good, bad = check_prerequisites("kindest/node:v1.37.0", which=lambda _: None, python=(3, 10, 4))
    assert any(f"Python 3.10.4 is older than {'.'.join(map(str, MIN_PYTHON))}" in line for line in bad), bad
    assert not any(line.startswith("Python") for line in good)


def test_a_broken_stack_file_is_one_more_problem_and_a_missing_one_none(tmp_path: Path) -> None:
    project = project_with(tmp_path, "dev", "config:\n\tlocaldev:workers: 1\n")
    broken = preflight(tmp_path, ("docker", "kind", "pulumi"), "--stack", "dev", cwd=project)
    assert broken.returncode == 1
    assert broken.stderr.splitlines() == ["✗ Pulumi.dev.yaml line 2: a tab indents this line. Fix: indent with spaces, not tabs"]
    new = preflight(tmp_path, ("docker", "kind", "pulumi"), "--stack", "prod", cwd=project)
    assert new.returncode == 0, new.stderr
