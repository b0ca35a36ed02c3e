"""The warm step of ``pulumi up``: what its Command runs, with which parameters, and when it runs again.

After the caches are healthy and before any workload is applied, the program
runs ``localdev/scripts/warm-caches.sh``, which runs ``localdev warm`` against
the stack's caches on 127.0.0.1 (see docs/warm-step.md). Everything the Command
gets is rendered here, without Pulumi, so the program, the benchmark and the
tests run the very same step:

* :func:`render_warm_env` is its environment: no absolute path of this machine
  (the interpreter is the Pulumi.yaml virtualenv's, relative to the project
  directory the Command runs in), so a preview is the same on every checkout;
* :func:`image_set_digest` is its trigger: it changes when an image in the
  manifests changes, and only then (with the caches' ids, which the program adds).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from localdev.manifests import images_from_manifests
from localdev.settings import PROJECT_DIR, Settings

#: The script the Command runs (under localdev/scripts/).
WARM_SCRIPT = "warm-caches.sh"
SCRIPT_PATH = Path(__file__).parent / "scripts" / WARM_SCRIPT
#: Manifests directory, relative to the project directory (the Command's working directory).
MANIFESTS = "k8s"
#: Parallel blob downloads: enough to fill a home link, few enough to leave the laptop usable.
DEFAULT_JOBS = 4


def script_text() -> str:
    """The script, as the Command's ``create`` (run by ``/bin/sh -c``)."""
    return SCRIPT_PATH.read_text()


def venv_python(project_dir: Path = PROJECT_DIR) -> str:
    """The interpreter Pulumi runs the program with, relative to the project directory.

    Pulumi.yaml's ``runtime.options.virtualenv`` names the venv (``.venv``);
    without one, ``python3`` from PATH.
    """
    doc = yaml.safe_load((project_dir / "Pulumi.yaml").read_text()) or {}
    runtime = doc.get("runtime")
    options = runtime.get("options") if isinstance(runtime, dict) else None
    venv = options.get("virtualenv") if isinstance(options, dict) else None
    if not isinstance(venv, str) or not venv:
        return "python3"
    if Path(venv).is_absolute():
        raise ValueError(f"Pulumi.yaml runtime.options.virtualenv {venv!r} is absolute: make it relative to the project")
    return f"{venv.rstrip('/')}/bin/python"


def warm_targets(settings: Settings, storage: Mapping[str, str] | None = None) -> list[str]:
    """One ``HOST=URL=STORAGE`` per cache, as ``localdev warm --cache`` takes them.

    The URL is the cache's port on 127.0.0.1. STORAGE says where ``warm`` reads
    what the cache already holds without asking it: ``container:NAME`` (the
    cache's container, through the Docker API: the program's choice) unless
    ``storage`` gives another one for the host (``dir:PATH``: the benchmark's
    registry processes).
    """
    chosen = storage or {}
    return [
        f"{m.host}=http://127.0.0.1:{m.port}={chosen.get(m.host, f'container:{settings.cache_name(m)}')}"
        for m in settings.mirrors
    ]


def render_warm_env(
    settings: Settings,
    *,
    targets: Sequence[str] | None = None,
    manifests: str = MANIFESTS,
    python: str | None = None,
    jobs: int = DEFAULT_JOBS,
) -> dict[str, str]:
    """The Command's environment (the script's parameters)."""
    return {
        "LOCALDEV_PYTHON": python or venv_python(),
        "WARM_CACHES": "\n".join(targets if targets is not None else warm_targets(settings)),
        "WARM_JOBS": str(jobs),
        "WARM_MANIFESTS": manifests,
    }


def image_set_digest(manifests_dir: Path) -> str:
    """sha256 of the sorted, distinct image references the manifests run: the warm step's trigger."""
    images = sorted({found.image for found in images_from_manifests(manifests_dir)})
    return "sha256:" + hashlib.sha256("\n".join(images).encode()).hexdigest()
