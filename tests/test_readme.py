"""The README's two commands, run as a newcomer runs them, from a clean copy of the repository.

The copy holds exactly the files git tracks (a clean clone of the working tree, so
a file someone forgot to add fails here). Three things stand in for what this
machine lacks or what would make the test slow, each named as such:

* ``tests/stand_ins/pulumi``, ``docker`` and ``kind``: STAND-INS for the real CLIs
  (there is no Pulumi CLI here). They record every call and answer ``version``.
* The copy's ``.venv`` starts as a hard-linked copy of this checkout's, a stand-in
  for pip's downloads: ``scripts/up`` and ``.ci/run`` still run their own
  ``pip install`` (which finds the pinned versions present and installs the copy's
  own ``localdev`` package); the test measures the commands, not pip unpacking wheels.
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAND_INS = ROOT / "tests" / "stand_ins"


def readme_commands() -> list[str]:
    """The shell commands of the README's "Two commands on a fresh machine" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands on a fresh machine", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tracked files of this working tree, copied; and the venv stand-in."""
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.fail("no .venv in the checkout: run python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt")
    target = tmp_path_factory.mktemp("clean") / "localdev"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        source = ROOT / rel
        if source.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / rel)
    subprocess.run(["cp", "-al", str(ROOT / ".venv"), str(target / ".venv")], check=True)
    return target


def environment(clone: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "LOCALDEV_", "STAND_IN_", "VIRTUAL_ENV"))}
    home = clone.parent / "home"
    home.mkdir(exist_ok=True)
    return {
        **keep,
        "PATH": f"{STAND_INS}{os.pathsep}{keep['PATH']}",
        "HOME": str(home),
        "STAND_IN_LOG": str(clone.parent / "calls.log"),
        "STAND_IN_DOCKER_API": "1.43",
        "STAND_IN_KIND_VERSION": "0.33.0",
        "NO_COLOR": "1",
        **extra,
    }


def calls(clone: Path) -> list[str]:
    log = clone.parent / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_the_readme_gives_two_commands() -> None:
    assert readme_commands() == ["scripts/up", "bash .ci/run"]


def test_scripts_up_from_a_clean_clone(clone: Path) -> None:
    calls(clone)
    done = subprocess.run(
        ["scripts/up"],
        cwd=clone,
        env=environment(clone, PULUMI_CONFIG_PASSPHRASE="stand-in passphrase"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for checked in ("✓ Python", "✓ Docker engine reachable, API 1.43", "✓ kind 0.33.0", "✓ Pulumi CLI 3.272.0"):
        assert checked in done.stdout, done.stdout
    recorded = calls(clone)
    assert "pulumi stack select --create dev [passphrase set]" in recorded
    assert "pulumi up --stack dev --yes [passphrase set]" in recorded
    assert (clone / ".venv" / "bin" / "localdev").exists()
    # The command installed into the clone is the clone's own.
    render = subprocess.run(
        [str(clone / ".venv" / "bin" / "localdev"), "render", str(clone / "out")],
        cwd=clone,
        env=environment(clone),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert render.returncode == 0, render.stderr
    assert (clone / "out" / "kind-config.yaml").exists()


def test_scripts_up_asks_the_passphrase_once_and_every_pulumi_process_gets_it(clone: Path) -> None:
    calls(clone)
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        ["scripts/up"], cwd=clone, env=environment(clone), stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    os.close(secondary)
    os.write(primary, b"typed once\n")
    out, err = process.communicate(timeout=300)
    os.close(primary)
    assert process.returncode == 0, out.decode() + err.decode()
    assert err.decode().count("Passphrase that encrypts") == 1
    recorded = [line for line in calls(clone) if line.startswith("pulumi ") and "version" not in line]
    assert recorded and all(line.endswith("[passphrase set]") for line in recorded), recorded
    # On a terminal, pulumi up shows its preview and asks (no --yes): a cluster replacement is seen first.
    assert "pulumi up --stack dev [passphrase set]" in recorded


def test_scripts_up_without_a_terminal_or_passphrase_says_what_to_export(clone: Path) -> None:
    calls(clone)
    done = subprocess.run(
        ["scripts/up"], cwd=clone, env=environment(clone), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "export PULUMI_CONFIG_PASSPHRASE" in errors[0], done.stderr
    assert not [line for line in calls(clone) if line.startswith(("pulumi stack", "pulumi up"))]


def test_scripts_up_reports_every_missing_prerequisite_before_pulumi_runs(clone: Path) -> None:
    calls(clone)
    done = subprocess.run(
        ["scripts/up"],
        cwd=clone,
        env=environment(
            clone, PULUMI_CONFIG_PASSPHRASE="x", STAND_IN_DOCKER_API="", STAND_IN_KIND_VERSION="0.31.0",
            STAND_IN_PULUMI_VERSION="3.100.0",
        ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1
    problems = [line for line in done.stderr.splitlines() if line.startswith("✗")]
    assert len(problems) == 3, done.stderr
    assert not [line for line in calls(clone) if line.startswith(("pulumi stack", "pulumi up"))]


def test_the_test_command_from_a_clean_clone(clone: Path) -> None:
    """``bash .ci/run``, limited to one test file (arguments go to pytest and skip the benchmark run)."""
    done = subprocess.run(
        ["bash", ".ci/run", "-q", "tests/test_config.py"],
        cwd=clone,
        env=environment(clone),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout[-2000:]
