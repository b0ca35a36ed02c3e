"""What must be installed, and how new, before ``pulumi up`` can work: each problem named with its fix.

Checked, all at once so one run lists everything to do:

* Python: the interpreter running this (the project's ``.venv``), at least :data:`MIN_PYTHON`.
* Docker: the engine answers, and its API is at least :data:`MIN_DOCKER_API` (Docker 20.10,
  the oldest engine the project's tests run against).
* kind: at least the release the node image needs (:data:`MIN_KIND_FOR_NODE`; kind v0.33.0's
  release notes make ``kindest/node:v1.37.0`` its default, built for that release).
* Pulumi CLI: at least the Python SDK pinned in requirements.txt; an older engine may lack what
  that SDK asks of it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Version = tuple[int, ...]

#: Oldest Python the program and the command run on.
MIN_PYTHON: Version = (3, 11)
#: Oldest Docker Engine API: Docker 20.10 (API 1.41).
MIN_DOCKER_API: Version = (1, 41)
#: Kubernetes minor of a kindest/node image → oldest kind release that image is built for.
MIN_KIND_FOR_NODE: dict[str, Version] = {"1.37": (0, 33, 0)}
#: Where each tool comes from.
INSTALL = {
    "docker": "install Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/",
    "kind": "install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "pulumi": "install the Pulumi CLI: https://www.pulumi.com/docs/install/",
}
REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def parse_version(text: str) -> Version | None:
    """The first ``X.Y[.Z]`` in ``text``: ``kind v0.33.0 go1.25`` → (0, 33, 0)."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


def dotted(version: Version) -> str:
    return ".".join(str(part) for part in version)


def pinned_pulumi_sdk(requirements: Path = REQUIREMENTS) -> Version | None:
    """The ``pulumi==X.Y.Z`` pin of requirements.txt."""
    try:
        text = requirements.read_text()
    except OSError:
        return None
    match = re.search(r"^pulumi==([0-9.]+)\s*$", text, re.MULTILINE)
    return parse_version(match.group(1)) if match else None


def kind_needed(node_image: str) -> Version | None:
    """The oldest kind for ``kindest/node:vX.Y.Z[@sha256:…]``; None when the image is not one we know."""
    match = re.search(r"kindest/node:v(\d+\.\d+)\.", node_image)
    return MIN_KIND_FOR_NODE.get(match.group(1)) if match else None


def _run(run: Runner, argv: Sequence[str]) -> tuple[int, str, str]:
    try:
        done = run(list(argv), capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} did not answer within 20 s"
    except OSError as err:
        return 127, "", str(err)
    return done.returncode, done.stdout.strip(), " ".join(done.stderr.split())[:200]


def check_prerequisites(
    node_image: str,
    *,
    which: Callable[[str], str | None] = shutil.which,
    run: Runner = subprocess.run,
    python: Version = tuple(sys.version_info[:3]),
    requirements: Path = REQUIREMENTS,
) -> tuple[list[str], list[str]]:
    """(what is fine, what is wrong and how to fix it), one line each."""
    good: list[str] = []
    bad: list[str] = []
    if python >= MIN_PYTHON:
        good.append(f"Python {dotted(python)} ({sys.executable})")
    else:
        bad.append(
            f"Python {dotted(python)} is older than {dotted(MIN_PYTHON)}: install Python {dotted(MIN_PYTHON)}+, then "
            f"rm -rf .venv && python3 -m venv .venv && .venv/bin/pip install -r requirements.txt"
        )

    if which("docker") is None:
        bad.append(f"docker not found on PATH: {INSTALL['docker']}")
    else:
        code, out, err = _run(run, ["docker", "version", "--format", "{{.Server.APIVersion}}"])
        api = parse_version(out) if code == 0 else None
        if api is None:
            bad.append(
                f"the Docker engine is not reachable ({err or out or f'exit {code}'}): "
                "start Docker (or set DOCKER_HOST), then retry"
            )
        elif api < MIN_DOCKER_API:
            bad.append(
                f"Docker engine API {dotted(api)} is older than {dotted(MIN_DOCKER_API)}: upgrade to Docker 20.10 or newer"
            )
        else:
            good.append(f"Docker engine reachable, API {dotted(api)}")

    image = node_image.split("@")[0]
    _check_tool(
        "kind",
        run,
        which,
        good,
        bad,
        need=kind_needed(node_image),
        why=f"which the node image {image} needs",
        fix="install kind v{need} or newer",
        note=f" (≥ {{need}} for {image})",
    )
    _check_tool(
        "pulumi",
        run,
        which,
        good,
        bad,
        need=pinned_pulumi_sdk(requirements),
        label="Pulumi CLI",
        why="the Python SDK it runs (requirements.txt)",
        fix="upgrade it",
    )
    return good, bad


def missing_prerequisites(node_image: str = "", **kwargs: object) -> list[str]:
    """Only the problems of :func:`check_prerequisites`; empty when all is well."""
    return check_prerequisites(node_image, **kwargs)[1]  # type: ignore[arg-type]


def _check_tool(
    tool: str,
    run: Runner,
    which: Callable[[str], str | None],
    good: list[str],
    bad: list[str],
    *,
    need: Version | None,
    why: str,
    fix: str,
    label: str | None = None,
    note: str = "",
) -> None:
    """``TOOL version`` at least ``need``: one line in ``good`` or in ``bad`` (with ``fix`` and where to get it)."""
    label = label or tool
    if which(tool) is None:
        bad.append(f"{tool} not found on PATH: {INSTALL[tool]}")
        return
    code, out, err = _run(run, [tool, "version"])
    have = parse_version(out) if code == 0 else None
    if have is None:
        bad.append(f"`{tool} version` failed ({err or out or f'exit {code}'}): reinstall it: {INSTALL[tool]}")
    elif need is not None and have < need:
        bad.append(
            f"{label} {dotted(have)} is older than {dotted(need)}, {why}: {fix.format(need=dotted(need))}: {INSTALL[tool]}"
        )
    else:
        good.append(f"{label} {dotted(have)}" + (note.format(need=dotted(need)) if need else ""))
