"""Every mistake a newcomer makes, through the installed ``localdev`` command, as a subprocess.

Each case asserts what the user sees: exit status 2, exactly one line on stderr,
the stack file (and the key) it is about, and a fix. Nothing here reaches a
network: the commands fail before they contact Docker or a registry, and the
ports given to ``--registry`` are ephemeral ports nothing listens on.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from localdev.manifests import SECRET_CONFIG
from localdev.settings import ConfigError, parse_settings
from tests.tools import tool

ROOT = Path(__file__).resolve().parent.parent

#: A workload credential that is not a secret (a user name or access key) and has a length rule.
PLAIN_KEY, PLAIN_SPEC = next((k, s) for k, s in SECRET_CONFIG.items() if not s.secret and s.min_length > 1)

#: Every command that reads a stack file, with the arguments it needs to get that far.
STACK_COMMANDS = {
    "render": ["render", "OUT"],
    "status": ["status"],
    "stats": ["stats"],
    "warm": ["warm", "--no-manifests"],
    "rewire": ["rewire", "--dry-run"],
}


def localdev() -> str:
    return tool("localdev", "install the project into the venv: .venv/bin/pip install -e .")


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_project(tmp_path: Path, stacks: dict[str, str | bytes] | None = None) -> Path:
    """A project directory: the real Pulumi.yaml and k8s/, plus the given stack files."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    shutil.copytree(ROOT / "k8s", project / "k8s")
    for name, text in (stacks or {}).items():
        path = project / f"Pulumi.{name}.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    return project


def run(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``localdev ARGS`` in ``project``, with no ambient stack choice and no reachable Docker daemon."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALDEV_", "PULUMI_"))}
    environ.update(
        {
            "HOME": str(project.parent / "home"),
            "DOCKER_HOST": f"unix://{project.parent / 'no-docker.sock'}",
            "NO_COLOR": "1",
        }
    )
    environ.update(env or {})
    argv = [str(project / "OUT") if a == "OUT" else a for a in args]
    return subprocess.run(
        [localdev(), *argv], cwd=project, env=environ, capture_output=True, text=True, timeout=120, check=False
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a usage error (exit status 2), with no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    return lines[0]


def stack_error(tmp_path: Path, text: str | bytes, command: str = "render") -> str:
    project = make_project(tmp_path, {"dev": text})
    return one_error_line(run(project, *STACK_COMMANDS[command]))


def dev_stack(**config: object) -> str:
    return yaml.safe_dump({"config": {f"localdev:{k}": v for k, v in config.items()}}, sort_keys=False)


# ----------------------------------------------------------------------- broken stack files
BROKEN_STACK_FILES: dict[str, tuple[str | bytes, list[str]]] = {
    # text, words the one line must hold (besides the file name and a fix)
    "yaml syntax error": ("config:\n  localdev:workers: 1\n  localdev:mirrors: [docker.io\n", ["line 3"]),
    "tab indentation": ("config:\n\tlocaldev:workers: 1\n", ["line 2", "tab"]),
    "list at the top": ("- localdev:workers: 1\n", ["list", "config:"]),
    "string at the top": ("localdev:workers 1\n", ["config:"]),
    "config not a mapping": ("config:\n  - localdev:workers: 1\n", ["line 2", "config:"]),
    "non-UTF-8 bytes": (b"config:\n  localdev:clusterName: caf\xe9\n", ["line 2", "UTF-8"]),
}


@pytest.mark.parametrize("command", sorted(STACK_COMMANDS))
@pytest.mark.parametrize("case", sorted(BROKEN_STACK_FILES))
def test_broken_stack_file_is_one_line_naming_the_file(tmp_path: Path, case: str, command: str) -> None:
    text, words = BROKEN_STACK_FILES[case]
    line = stack_error(tmp_path, text, command)
    assert "Pulumi.dev.yaml" in line
    assert re.search(r"\bfix\b", line, re.IGNORECASE), line
    for word in words:
        assert word in line, f"{word!r} missing from: {line}"


@pytest.mark.parametrize("command", sorted(STACK_COMMANDS))
def test_namespace_typo_is_refused_with_the_right_key(tmp_path: Path, command: str) -> None:
    line = stack_error(tmp_path, "config:\n  localdv:workers: 2\n", command)
    assert "Pulumi.dev.yaml" in line
    assert "localdv:workers" in line and "localdev:workers" in line


def test_unknown_key_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    line = stack_error(tmp_path, dev_stack(worker=2))
    assert "Pulumi.dev.yaml" in line and "'worker'" in line and "workers" in line
    assert "pulumi config rm worker" in line


# ----------------------------------------------------------------------- one validation everywhere
@pytest.mark.parametrize(
    ("config", "key", "words"),
    [
        ({"dockerHubUsername": "me", "dockerHubPassword": "hunter2hunter2"}, "dockerHubPassword", ["plain text"]),
        ({"postgresPassword": "hunter2hunter2"}, "postgresPassword", ["plain text"]),
        ({PLAIN_KEY: "x" * (PLAIN_SPEC.min_length - 1)}, PLAIN_KEY, [f"{PLAIN_SPEC.min_length}-{PLAIN_SPEC.max_length}"]),
        ({PLAIN_KEY: "x" * (PLAIN_SPEC.max_length + 1)}, PLAIN_KEY, [f"{PLAIN_SPEC.min_length}-{PLAIN_SPEC.max_length}"]),
    ],
)
def test_render_refuses_what_pulumi_up_refuses(tmp_path: Path, config: dict[str, object], key: str, words: list[str]) -> None:
    line = stack_error(tmp_path, dev_stack(**config))
    assert f"'{key}'" in line and "Pulumi.dev.yaml" in line
    for word in words:
        assert word in line
    if "plain text" in words:
        assert f"pulumi config set --secret {key}" in line


def test_encrypted_values_pass(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {"dev": dev_stack(dockerHubUsername="me", dockerHubPassword={"secure": "v1:AAAA"}, postgresPassword={"secure": "v1:B"})},
    )
    result = run(project, "render", "OUT")
    assert result.returncode == 0, result.stderr
    env = (project / "OUT" / "registries" / "localdev-cache-docker-io.env").read_text()
    assert "REGISTRY_PROXY_USERNAME=me" in env and "v1:AAAA" not in env


# ----------------------------------------------------------------------- ports
@pytest.mark.parametrize(
    ("config", "blamed", "other"),
    [
        # a UI port the user moved onto the Docker Hub cache: blame the UI port
        ({"grafanaPort": 5000}, "grafanaPort", "docker.io cache"),
        # a cache the user moved onto a UI port: blame the mirrors entry
        ({"mirrors": ["docker.io=9090"]}, "mirrors", "prometheusPort"),
        ({"pushRegistryPort": 5000}, "pushRegistryPort", "docker.io cache"),
        ({"jaegerPort": 5100}, "jaegerPort", "docker.io cache's metrics"),
        # ghcr.io's metrics port (4900+100) lands on the docker.io cache
        ({"mirrors": ["docker.io", "ghcr.io=4900"]}, "mirrors", "docker.io cache"),
        ({"prometheusPort": 3000}, "prometheusPort", "grafanaPort"),
    ],
)
def test_port_clash_names_both_owners_and_blames_the_key_set(
    tmp_path: Path, config: dict[str, object], blamed: str, other: str
) -> None:
    line = stack_error(tmp_path, dev_stack(**config))
    assert f"config '{blamed}'" in line, line
    assert other in line, line
    fix = line.split("Fix:", 1)[1]
    assert "pulumi config set" in fix and blamed in fix


def test_metrics_port_beyond_65535_is_refused(tmp_path: Path) -> None:
    line = stack_error(tmp_path, dev_stack(mirrors=["docker.io", "ghcr.io=65500"]))
    assert "'mirrors'" in line and "65600" in line and "65535" in line


def test_ui_ports_are_settings_used_by_render(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"dev": dev_stack(grafanaPort=3300, prometheusPort=9190, jaegerPort=16786)})
    result = run(project, "render", "OUT")
    assert result.returncode == 0, result.stderr
    kind = yaml.safe_load((project / "OUT" / "kind-config.yaml").read_text())
    host_ports = {m["hostPort"] for m in kind["nodes"][0]["extraPortMappings"]}
    assert host_ports == {3300, 9190, 16786}


# ----------------------------------------------------------------------- mirrors
@pytest.mark.parametrize(
    ("mirrors", "words"),
    [
        (["docker.io", "my-reg.io=5010", "my.reg.io=5011"], ["my-reg.io", "my.reg.io", "container"]),
        (["docker.io", "localhost:5001=5010"], ["localhost:5001", "push registry"]),
        (["docker.io="], ["docker.io=", "port"]),
        (["docker.io", "index.docker.io"], ["docker.io", "twice"]),
    ],
)
def test_bad_mirrors_are_refused(tmp_path: Path, mirrors: list[str], words: list[str]) -> None:
    line = stack_error(tmp_path, dev_stack(mirrors=mirrors))
    assert "'mirrors'" in line and "Pulumi.dev.yaml" in line
    for word in words:
        assert word in line, f"{word!r} missing from: {line}"


@pytest.mark.parametrize("alias", ["index.docker.io", "registry-1.docker.io"])
def test_docker_hub_aliases_become_docker_io(tmp_path: Path, alias: str) -> None:
    project = make_project(tmp_path, {"dev": dev_stack(mirrors=[alias])})
    result = run(project, "render", "OUT")
    assert result.returncode == 0, result.stderr
    hosts = sorted(p.name for p in (project / "OUT" / "certs.d").iterdir())
    assert hosts == ["docker.io", "localhost:5001"]


# ----------------------------------------------------------------------- fixes that paste
def apply_pulumi_config_set(stack_file: Path, command: str) -> None:
    """What ``pulumi config set [--path] KEY VALUE`` does to a stack file (plain values only).

    Pulumi's rules for ``--path 'key[N]'``: N equal to the list's length appends,
    a larger N fails with "array index out of range" (pulumi/pulumi#20376); a
    missing list is created.
    """
    for part in command.split("&&"):
        argv = shlex.split(part)
        assert argv[:3] == ["pulumi", "config", "set"], part
        args = argv[3:]
        path = "--path" in args
        args = [a for a in args if a != "--path"]
        assert len(args) == 2, f"not KEY VALUE: {part}"
        key, value = args
        raw = yaml.safe_load(stack_file.read_text()) or {}
        config = raw.setdefault("config", {})
        match = re.fullmatch(r"([A-Za-z]+)\[([0-9]+)\]", key)
        if path and match:
            name, index = f"localdev:{match.group(1)}", int(match.group(2))
            items = config.setdefault(name, [])
            assert index <= len(items), f"array index out of range: {part}"
            if index == len(items):
                items.append(value)
            else:
                items[index] = value
        else:
            assert re.fullmatch(r"[A-Za-z]+", key), f"not a config key: {key!r} in {part}"
            config[f"localdev:{key}"] = value
        stack_file.write_text(yaml.safe_dump(raw))


@pytest.mark.parametrize(
    "config",
    [
        {"pushRegistryPort": 5000},
        {"pushRegistryPort": "two"},
        {"workers": "two"},
        {"grafanaPort": 5000},
        {"mirrors": ["ghcr.io", "docker.io=5002"]},
        {"mirrors": ["docker.io", "ghcr.io=4900"]},
        {"mirrors": ["docker.io", "example.org"]},
    ],
)
def test_suggested_fix_is_a_command_that_works(tmp_path: Path, config: dict[str, object]) -> None:
    project = make_project(tmp_path, {"dev": dev_stack(**config)})
    line = one_error_line(run(project, "render", "OUT"))
    fix = line.split("Fix:", 1)[1].strip().rstrip(".")
    command = fix.split(", then")[0]
    apply_pulumi_config_set(project / "Pulumi.dev.yaml", command)
    result = run(project, "render", "OUT")
    assert result.returncode == 0, f"fix {command!r} left: {result.stderr}"


def test_fix_adding_a_mirror_to_a_stack_without_a_list_keeps_the_defaults(tmp_path: Path) -> None:
    """warm's fix for an image from an unmirrored registry, on a stack that never set ``mirrors``."""
    project = make_project(tmp_path, {"dev": dev_stack(workers=0)})
    result = run(project, "warm", "--no-manifests", "ghcr.io/org/app:1.0")
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "no cache for ghcr.io" in line]
    assert lines, result.stdout + result.stderr
    command = re.search(r"(pulumi config set .*?)(, then|\)|$)", lines[0])
    assert command is not None, lines[0]
    apply_pulumi_config_set(project / "Pulumi.dev.yaml", command.group(1))
    mirrors = yaml.safe_load((project / "Pulumi.dev.yaml").read_text())["config"]["localdev:mirrors"]
    assert mirrors == ["docker.io", "ghcr.io"]


# ----------------------------------------------------------------------- which stack
def test_several_stacks_and_no_choice_is_refused_listing_them(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"dev": dev_stack(workers=1), "ci": dev_stack(workers=0)})
    line = one_error_line(run(project, "render", "OUT"))
    assert "dev" in line and "ci" in line and "--stack" in line


def test_several_stacks_with_a_choice_work(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"dev": dev_stack(workers=1), "ci": dev_stack(workers=0)})
    assert run(project, "render", "OUT", "--stack", "ci").returncode == 0
    assert run(project, "render", "OUT", env={"LOCALDEV_STACK": "dev"}).returncode == 0


def test_missing_stack_is_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"dev": dev_stack(workers=1)})
    line = one_error_line(run(project, "render", "OUT", "--stack", "prod"))
    assert "Pulumi.prod.yaml" in line and "dev" in line


# ----------------------------------------------------------------------- command-line arguments
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["stats", "--registry", "http://127.0.0.1:{port}", "--metrics-url", "http://127.0.0.1:{port}/x/y"], ["--metrics-url"]),
        (["stats", "--timeout", "-1"], ["--timeout"]),
        (["stats", "--timeout", "0"], ["--timeout"]),
        (["warm", "--no-manifests", "--timeout", "-5", "redis:7"], ["--timeout"]),
        (["warm", "--no-manifests", "--timeout", "nan", "redis:7"], ["--timeout"]),
        (["stats", "--registry", "http://127.0.0.1:{port}", "--storage", "{not_storage}"], ["--storage", "docker/registry/v2"]),
        (["stats", "--registry", "http://127.0.0.1:{port}", "--storage", "{file}"], ["--storage", "not a directory"]),
        (["warm", "--registry", "http://127.0.0.1:{port}", "--storage", "{file}", "redis:7"], ["--storage"]),
        (["warm", "--manifests", "{file}"], ["--manifests", "not a directory"]),
        (["render", "{file}"], ["OUTDIR", "not a directory"]),
        (["warm", "--jobs", "0", "redis:7"], ["--jobs"]),
    ],
)
def test_bad_argument_is_one_usage_line(tmp_path: Path, args: list[str], words: list[str]) -> None:
    project = make_project(tmp_path, {"dev": dev_stack(workers=0)})
    (tmp_path / "not-storage").mkdir()  # a directory, but not a registry's storage
    (tmp_path / "not-storage" / "notes.txt").write_text("not a registry\n")
    (tmp_path / "a-file").write_text("not a directory\n")
    values = {"port": str(free_port()), "not_storage": str(tmp_path / "not-storage"), "file": str(tmp_path / "a-file")}
    line = one_error_line(run(project, *(a.format(**values) for a in args)))
    for word in words:
        assert word in line, f"{word!r} missing from: {line}"


def test_metrics_url_with_the_metrics_path_is_accepted(tmp_path: Path) -> None:
    project = make_project(tmp_path, {"dev": dev_stack(workers=0)})
    port = free_port()
    result = run(project, "stats", "--registry", f"http://127.0.0.1:{port}", "--metrics-url", f"http://127.0.0.1:{port}/metrics")
    assert result.returncode == 1, result.stderr  # nothing answers there: a failed check, not a usage error
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr


def test_help_is_plain_text() -> None:
    result = subprocess.run([localdev(), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert "usage: localdev" in result.stdout
    for command in ("render", "preflight", "status", "stats", "warm", "rewire"):
        assert command in result.stdout
    assert "``" not in result.stdout and ":func:" not in result.stdout


def entry_point() -> tuple[str, str]:
    """The ``localdev`` console script's module and function, as pyproject.toml declares them."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["localdev"].partition(":")
    return module, func


@pytest.mark.parametrize("missing", ["yaml", "httpx", "docker"])
def test_missing_dependency_is_one_line_saying_what_to_run(tmp_path: Path, missing: str) -> None:
    module, func = entry_point()
    code = (
        f"import sys; sys.modules[{missing!r}] = None; sys.argv = ['localdev', 'status']; "
        f"import importlib; sys.exit(getattr(importlib.import_module({module!r}), {func!r})())"
    )
    project = make_project(tmp_path, {"dev": dev_stack(workers=0)})
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_HOST": f"unix://{tmp_path / 'none.sock'}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = one_error_line(result)
    assert missing in line and "pip install" in line


#: Every kind of mistake parse_settings refuses (the stack files' own shape aside).
EVERY_MISTAKE: list[dict[str, object]] = [
    {"mirrors": ["docker.io", "docker.io"]},
    {"mirrors": ["docker.io", "index.docker.io"]},
    {"mirrors": ["ghcr.io=5001"]},
    {"mirrors": ["docker.io", "quay.io=5100"]},
    {"pushRegistryPort": 5000},
    {"mirrors": ["ghcr.io=5002=ftp://ghcr.io"]},
    {"mirrors": ["not a host"]},
    {"mirrors": ["my.registry.example"]},
    {"mirrors": ["ghcr.io=80"]},
    {"mirrors": ["docker.io", "ghcr.io=65500"]},
    {"mirrors": ["docker.io", "my-reg.io=5010", "my.reg.io=5011"]},
    {"mirrors": ["docker.io", "localhost:5001=5010"]},
    {"mirrors": ["docker.io="]},
    {"mirrors": ["docker.io=abc"]},
    {"mirrors": []},
    {"mirrors": "docker.io"},
    {"mirrors": [1, 2]},
    {"workers": 11},
    {"workers": "two"},
    {"controlPlanes": 2},
    {"clusterName": "My_Cluster"},
    {"clusterName": 5},
    {"nodeImage": "kindest/node"},
    {"registryImage": "registry:latest"},
    {"proxyTtl": "a week"},
    {"retainCaches": "yes"},
    {"dockerHubUsername": "me"},
    {"dockerHubPassword": "secret-but-plain"},
    {"postgresPassword": "plain"},
    {PLAIN_KEY: "x" * (PLAIN_SPEC.min_length - 1)},
    {"workrs": 1},
    {"localdv:workers": 2},
    {"localdv:mirrors": ["docker.io"]},
    {"grafanaPort": 80},
    {"grafanaPort": 5000},
    {"jaegerPort": 3000},
]


@pytest.mark.parametrize("config", EVERY_MISTAKE, ids=[repr(c) for c in EVERY_MISTAKE])
def test_every_fix_is_a_pulumi_command(config: dict[str, object]) -> None:
    """The text after "Fix:" pastes into a shell as it is: one or more `pulumi config` commands joined by &&."""
    with pytest.raises(ConfigError) as err:
        parse_settings(config)
    fix = err.value.fix
    for part in fix.split(" && "):
        argv = shlex.split(part)
        assert argv[:2] == ["pulumi", "config"] and argv[2] in ("set", "rm"), f"not a pulumi config command: {fix!r}"
        assert not any(word in ("VALUE", "PORT", "NAME") for word in argv), f"a placeholder in {fix!r}"
