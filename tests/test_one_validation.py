"""``pulumi up`` (the program under mocks) and ``localdev render`` refuse the same settings with the same words.

The program gets its config as the Pulumi runtime hands it over (strings, lists
as JSON, decrypted secrets and the list of secret keys); ``render`` reads the
same settings from a stack file through the installed command. Both go through
``localdev.settings.parse_settings``; this shows it, case by case, by comparing
what each one says after the location prefix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from localdev.manifests import SECRET_CONFIG
from tests.program import run_program
from tests.test_cli_errors import make_project, one_error_line, run

#: A credential with a length rule (MinIO's user, today), too short by one.
SHORT_KEY, SHORT_SPEC = next((k, s) for k, s in SECRET_CONFIG.items() if s.min_length > 1)

CASES: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    # config, keys stored encrypted
    ({"dockerHubUsername": "me", "dockerHubPassword": "hunter2hunter2"}, ()),
    ({"postgresPassword": "hunter2hunter2"}, ()),
    ({SHORT_KEY: "x" * (SHORT_SPEC.min_length - 1)}, (SHORT_KEY,) if SHORT_SPEC.secret else ()),
    ({"grafanaPort": 5000}, ()),
    ({"mirrors": ["docker.io=9090"]}, ()),
    ({"mirrors": ["docker.io", "ghcr.io=65500"]}, ()),
    ({"mirrors": ["docker.io", "my-reg.io=5010", "my.reg.io=5011"]}, ()),
    ({"mirrors": ["docker.io", "localhost:5001=5010"]}, ()),
    ({"mirrors": ["docker.io="]}, ()),
    ({"workers": "two"}, ()),
]


def runtime_value(value: Any) -> str:
    """How the Pulumi runtime passes a config value to the program."""
    return json.dumps(value) if isinstance(value, list) else str(value)


def without_location(line: str) -> str:
    """``error: Pulumi.dev.yaml line 3: config 'k': …`` → ``config 'k': …``."""
    return re.sub(r"^(error: )?Pulumi\.dev\.yaml( line \d+)?: ", "", line.strip())


@pytest.mark.parametrize(("config", "encrypted"), CASES, ids=[json.dumps(c) for c, _ in CASES])
def test_program_and_render_refuse_alike(tmp_path: Path, config: dict[str, Any], encrypted: tuple[str, ...]) -> None:
    graph = run_program({k: runtime_value(v) for k, v in config.items()}, encrypted, raise_errors=False)
    assert isinstance(graph.error, pulumi.RunError), graph.error
    assert graph.registrations == []
    program_says = str(graph.error)
    assert re.match(r"Pulumi\.dev\.yaml( line \d+)?: config '", program_says), program_says

    stack = {f"localdev:{k}": ({"secure": "v1:AAAA"} if k in encrypted else v) for k, v in config.items()}
    project = make_project(tmp_path, {"dev": yaml.safe_dump({"config": stack})})
    if encrypted:
        # The command line cannot decrypt, so it cannot see a secret's length: only the program refuses.
        assert run(project, "render", "OUT").returncode == 0
        return
    render_says = one_error_line(run(project, "render", "OUT"))
    assert without_location(render_says) == without_location(program_says)
