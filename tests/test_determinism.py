"""Same config in, same bytes out: rendered files and the program's resource inputs.

A review diff is only worth reading if nothing but a change of config or code can
change it. Each check here runs the code twice, each time in a fresh Python
process that differs from the other in everything that must not matter:

* ``PYTHONHASHSEED`` (set and dict iteration order of str keys),
* the working directory and ``HOME`` (and, for the program, the checkout's path:
  like the Pulumi CLI, the program runs from its checkout's root),
* ``TZ`` and the locale,
* the wall clock: years apart, through libfaketime (Debian package ``faketime``)
  when it is installed, else by replacing Python's own clock functions,
* the order of the keys of the config mapping the settings are parsed from.

Two things are compared:

* **Renderers**: ``localdev.cli.render_files`` and every ``render_*`` function
  of every ``components`` module, found by name, called with every mirror and
  both credential modes. A new renderer is picked up without touching this file;
  one whose parameters this file cannot supply fails :func:`test_every_renderer_is_exercised`.
* **The program**: ``__main__.py`` under Pulumi mocks (``tests/program.py``): the
  type, name, inputs, dependencies and options of every resource it registers,
  and its stack outputs, as canonical JSON. The same dump proves that secrets
  (the Docker Hub token, the workload passwords, the kubeconfig) only ever reach
  a resource input wrapped as secrets.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from localdev.render import render_env_file  # noqa: E402
from localdev.settings import stack_values  # noqa: E402  (needs ROOT on sys.path)
from tests.program import is_secret  # noqa: E402

#: libfaketime's wrapper; without it the runner fakes Python's clock functions itself.
FAKETIME = shutil.which("faketime")

#: Secret config values the program is given; none may reach a resource input unwrapped.
SECRETS = {
    "dockerHubPassword": "dckr_pat_determinism-canary-7f3a",
    "postgresPassword": "pg-determinism-canary-51c9",
    "grafanaAdminPassword": "grafana-determinism-canary-0b2e",
    "backupStoreSecretKey": "backup-store-determinism-canary-93d4",
}

# --------------------------------------------------------------------------- the runner
# Runs in a fresh interpreter: argv = ROOT MODE SPEC_JSON OUT_JSON. Kept as text so
# that each run imports the project from scratch, under its own environment.
RUNNER = r'''
import dataclasses
import importlib
import inspect
import itertools
import json
import os
import pkgutil
import sys
from pathlib import Path

root, mode, spec_path, out_path = sys.argv[1:5]
sys.path.insert(0, root)
spec = json.loads(Path(spec_path).read_text())

fake_epoch = os.environ.get("FAKE_EPOCH")
if fake_epoch:  # no libfaketime: move the clocks Python code reads
    import datetime as _dt
    import time as _time

    offset = float(fake_epoch) - _time.time()
    _real_time = _time.time
    _time.time = lambda: _real_time() + offset
    _time.time_ns = lambda: int((_real_time() + offset) * 1e9)

    class _FakeDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls.fromtimestamp(_time.time(), tz)

        @classmethod
        def utcnow(cls):
            return cls.utcfromtimestamp(_time.time())

        @classmethod
        def today(cls):
            return cls.fromtimestamp(_time.time())

    class _FakeDate(_dt.date):
        @classmethod
        def today(cls):
            return cls.fromtimestamp(_time.time())

    _dt.datetime = _FakeDatetime
    _dt.date = _FakeDate


def canonical(value):
    """JSON for anything a renderer or the mocks return; no memory addresses."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if dataclasses.is_dataclass(value):
        return canonical(dataclasses.asdict(value))
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def render_all(values):
    import localdev
    from localdev import image_lock, render
    from localdev.settings import SECRET_KEYS, parse_settings

    settings = parse_settings(values, SECRET_KEYS)  # as a stack file whose secrets are all encrypted
    first = min(settings.mirrors, key=lambda m: m.host)  # by name: the mirrors' order is under test
    choices = {
        "settings": [("", settings)],
        "mirror": [(m.host, m) for m in settings.mirrors],
        "with_credentials": [("plain", False), ("credentials", True)],
        "env": [
            ("cache", render.render_cache_env(settings, first, with_credentials=True)),
            ("push", render.render_push_env(settings)),
        ],
        "server": [("upstream", first.remote_url), ("no-upstream", None)],
        "host_url": [("cache", "http://cache:5000")],
        "capabilities": [("push", ("pull", "resolve", "push"))],
        "lock": [("", image_lock.load_lock())],
    }
    results, missing = {}, []
    for info in sorted(pkgutil.iter_modules(localdev.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"localdev.{info.name}")
        for name, fn in sorted(inspect.getmembers(module, inspect.isfunction)):
            if not name.startswith("render_") or fn.__module__ != module.__name__:
                continue
            params = [p for p in inspect.signature(fn).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            unknown = [p.name for p in params if p.name not in choices and p.default is p.empty]
            if unknown:
                missing.append(f"{module.__name__}.{name}({', '.join(unknown)})")
                continue
            used = [p.name for p in params if p.name in choices]
            for combo in itertools.product(*(choices[p] for p in used)):
                label = ",".join(f"{p}={lab}" for p, (lab, _) in zip(used, combo) if lab)
                kwargs = {p: value for p, (_, value) in zip(used, combo)}
                results[f"{module.__name__}.{name}({label})"] = canonical(fn(**kwargs))
    return {"renders": results, "missing": missing}


def run_program(values, secret_keys):
    from tests.program import run_program as run

    graph = run(values, tuple(secret_keys))
    resources = []
    for reg in graph.registrations:
        entry = {f.name: getattr(reg, f.name) for f in dataclasses.fields(reg) if f.name != "raw"}
        entry["dependencies"] = sorted(entry.get("dependencies") or [])
        entry["property_dependencies"] = {
            k: sorted(v) for k, v in sorted((entry.get("property_dependencies") or {}).items())
        }
        resources.append(canonical(entry))
    resources.sort(key=lambda r: (r.get("urn") or "", r["type"], r["name"]))
    return {"resources": resources, "outputs": canonical(graph.outputs)}


values = dict(spec["values"])  # a list of pairs: the caller chooses the key order
if mode == "render":
    result = render_all(values)
else:
    result = run_program(values, spec.get("secret_keys", []))
import datetime
import time

# What this process saw, to prove the runs really differed (not compared).
result["seen"] = {
    "year": datetime.datetime.now().year,
    "utc_offset": time.localtime().tm_gmtoff,
    "cwd": os.getcwd(),
    "str_hash": hash("localdev"),
}
Path(out_path).write_text(json.dumps(result, sort_keys=True, indent=1, ensure_ascii=False))
'''


@dataclass(frozen=True)
class Environment:
    """Everything about a process that must not change what it renders."""

    label: str
    hash_seed: str
    tz: str
    locale: str
    clock: str
    """``YYYY-MM-DD HH:MM:SS`` (UTC) the process believes it starts at."""
    epoch: int
    """The same instant as seconds, for the no-libfaketime fallback."""


# POSIX TZ strings: they need no zoneinfo files (UTC, and UTC+14 like Pacific/Kiritimati).
FIRST = Environment("first", hash_seed="0", tz="UTC0", locale="C.UTF-8", clock="2001-02-03 04:05:06", epoch=981173106)
SECOND = Environment("second", hash_seed="3141592", tz="<+14>-14", locale="C", clock="2037-11-30 23:59:30", epoch=2143238370)


def run_isolated(
    tmp_path: Path,
    mode: str,
    pairs: list[tuple[str, Any]],
    env: Environment,
    secret_keys: tuple[str, ...] = (),
    *,
    root: Path = ROOT,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run the runner in a fresh process under ``env`` on the checkout at ``root``; return its JSON result.

    ``cwd`` defaults to a fresh empty directory.
    """
    base = tmp_path / f"{mode}-{env.label}-{len(list(tmp_path.iterdir()))}"
    workdir, home = base / "cwd", base / "home"
    workdir.mkdir(parents=True)
    home.mkdir()
    workdir = cwd or workdir
    runner, spec, out = base / "runner.py", base / "spec.json", base / "out.json"
    runner.write_text(RUNNER)
    spec.write_text(json.dumps({"values": pairs, "secret_keys": list(secret_keys)}))
    process_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONHASHSEED": env.hash_seed,
        "PYTHONDONTWRITEBYTECODE": "1",
        "TZ": env.tz,
        "LC_ALL": env.locale,
        "LOCALDEV_SKIP_PREFLIGHT": "1",
    }
    command = [sys.executable, str(runner), str(root), mode, str(spec), str(out)]
    if FAKETIME:
        command = [FAKETIME, "-f", f"@{env.clock}", *command]
        process_env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"  # asyncio's timers keep working
    else:
        process_env["FAKE_EPOCH"] = str(env.epoch)
    done = subprocess.run(command, cwd=workdir, env=process_env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{mode} run ({env.label}) failed:\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def explain(first: Any, second: Any, what: str) -> str:
    """A unified diff of two JSON-able values, for assertion messages."""
    a = json.dumps(first, sort_keys=True, indent=1, ensure_ascii=False).splitlines()
    b = json.dumps(second, sort_keys=True, indent=1, ensure_ascii=False).splitlines()
    return f"{what} differ:\n" + "\n".join(difflib.unified_diff(a, b, "first", "second", lineterm="", n=2))


def assert_same(first: Mapping[str, Any], second: Mapping[str, Any], what: str) -> None:
    assert sorted(first) == sorted(second), explain(sorted(first), sorted(second), f"{what}: the keys")
    for key in sorted(first):
        assert first[key] == second[key], explain(first[key], second[key], f"{what}: {key}")


# --------------------------------------------------------------------------- configs
def _bare(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key.rpartition(":")[2]: value for key, value in values.items()}


#: Only Pulumi.yaml's defaults.
DEFAULTS: list[tuple[str, Any]] = []
#: The dev stack, plus every optional feature switched on.
FULL: list[tuple[str, Any]] = [
    *_bare(stack_values("dev")).items(),
    ("mirrors", ["docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "gcr.io", "example.org=5010=https://mirror.example.org"]),
    ("controlPlanes", 3),
    ("workers", 2),
    ("proxyTtl", "168h"),
    ("retainCaches", False),
    ("dockerHubUsername", "someone"),
    ("dockerHubPassword", "<secret>"),
]
FULL = list(dict(FULL).items())  # later entries win, as in a stack file


def reorder(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The same config with its keys in the opposite order."""
    return list(reversed(pairs))


def with_mirrors_reversed(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(k, list(reversed(v)) if k == "mirrors" else v) for k, v in pairs]


# --------------------------------------------------------------------------- renderers
@pytest.fixture(scope="module")
def render_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("render")
    return {
        "defaults-first": run_isolated(tmp, "render", DEFAULTS, FIRST),
        "defaults-second": run_isolated(tmp, "render", DEFAULTS, SECOND),
        "full-first": run_isolated(tmp, "render", FULL, FIRST),
        "full-second": run_isolated(tmp, "render", reorder(FULL), SECOND),
        "full-mirrors-reversed": run_isolated(tmp, "render", with_mirrors_reversed(FULL), SECOND),
    }


def test_the_runs_really_differ(render_runs: dict[str, dict[str, Any]]) -> None:
    first, second = render_runs["defaults-first"]["seen"], render_runs["defaults-second"]["seen"]
    assert (first["year"], second["year"]) == (2001, 2037), "the faked clock did not take"
    assert first["utc_offset"] != second["utc_offset"], "TZ did not take"
    assert first["cwd"] != second["cwd"]
    assert first["str_hash"] != second["str_hash"], "PYTHONHASHSEED did not take"


def test_every_renderer_is_exercised(render_runs: dict[str, dict[str, Any]]) -> None:
    run = render_runs["full-first"]
    assert not run["missing"], f"renderers whose parameters this test cannot supply (add them to `choices`): {run['missing']}"
    names = {key.split("(", 1)[0] for key in run["renders"]}
    assert "localdev.cli.render_files" in names
    assert len([n for n in names if n.startswith("localdev.render.render_")]) >= 10, sorted(names)
    files = run["renders"]["localdev.cli.render_files()"]
    assert "kind-config.yaml" in files and "certs.d/docker.io/hosts.toml" in files, sorted(files)


def test_renderers_are_identical_across_processes_seeds_dirs_zones_and_clocks(render_runs: dict[str, dict[str, Any]]) -> None:
    assert_same(render_runs["defaults-first"]["renders"], render_runs["defaults-second"]["renders"], "default-config renders")


def test_renderers_ignore_the_order_of_config_keys(render_runs: dict[str, dict[str, Any]]) -> None:
    # The second run also has every other environment difference; both properties in one diff.
    assert_same(render_runs["full-first"]["renders"], render_runs["full-second"]["renders"], "full-config renders")


def test_render_files_ignore_the_order_of_mirrors(render_runs: dict[str, dict[str, Any]]) -> None:
    """Listing the same registries in another order must not change a single file (or a review diff)."""
    first = render_runs["full-first"]["renders"]
    reordered = render_runs["full-mirrors-reversed"]["renders"]
    assert_same(first, reordered, "renders with the mirrors listed in reverse")


def test_render_files_write_byte_identical_files(tmp_path: Path) -> None:
    """The CLI writes the same bytes from two processes (the renders above are what it writes)."""
    outputs = []
    for env in (FIRST, SECOND):
        out = tmp_path / env.label
        process_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "PYTHONHASHSEED": env.hash_seed,
            "TZ": env.tz,
            "LC_ALL": env.locale,
        }
        command = [sys.executable, "-m", "localdev.cli", "render", str(out), "--stack", "dev"]
        if FAKETIME:
            command = [FAKETIME, "-f", f"@{env.clock}", *command]
        done = subprocess.run(command, cwd=ROOT, env=process_env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        outputs.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert outputs[0], "render wrote nothing"
    assert outputs[0] == outputs[1], sorted(k for k in outputs[0] if outputs[0][k] != outputs[1].get(k))


def test_env_files_ignore_the_order_of_the_environment() -> None:
    env = {"REGISTRY_PROXY_REMOTEURL": "https://ghcr.io", "A_FIRST": "1", "REGISTRY_PROXY_PASSWORD": "hunter2"}
    assert render_env_file(env) == render_env_file(dict(reversed(list(env.items()))))
    assert "hunter2" not in render_env_file(env)


# --------------------------------------------------------------------------- the program
PROGRAM_CONFIG: list[tuple[str, Any]] = list(
    {
        **dict(FULL),
        "retainCaches": True,
        **SECRETS,
    }.items()
)


#: What a second checkout needs to run the program (and nothing that is being written elsewhere).
CHECKOUT_IGNORE = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "*.pyc", ".*_cache", "out", "bench")


@pytest.fixture(scope="module")
def program_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The program from this checkout, and from a copy of it at another path.

    Like the Pulumi CLI, each run's working directory is its checkout's root; the
    second checkout's path differs, as a CI runner's differs from a laptop's.
    """
    tmp = tmp_path_factory.mktemp("program")
    other = tmp_path_factory.mktemp("elsewhere") / "another-checkout"
    shutil.copytree(ROOT, other, ignore=CHECKOUT_IGNORE)
    secret_keys = tuple(sorted(SECRETS))
    here: dict[str, Any] = {"root": ROOT, "cwd": ROOT}
    there: dict[str, Any] = {"root": other, "cwd": other}
    return {
        "first": run_isolated(tmp, "program", PROGRAM_CONFIG, FIRST, secret_keys, **here),
        "second": run_isolated(tmp, "program", reorder(PROGRAM_CONFIG), SECOND, secret_keys, **there),
        "mirrors-reversed": run_isolated(tmp, "program", with_mirrors_reversed(PROGRAM_CONFIG), SECOND, secret_keys, **there),
    }


def by_urn(run: Mapping[str, Any]) -> dict[str, Any]:
    return {r["urn"]: r for r in run["resources"]}


def test_program_registers_the_whole_stack(program_runs: dict[str, dict[str, Any]]) -> None:
    types = {r["type"] for r in program_runs["first"]["resources"]}
    for expected in (
        "docker:index/container:Container",
        "docker:index/volume:Volume",
        "command:local:Command",
        "pulumi:providers:kubernetes",
    ):
        assert expected in types, sorted(types)
    assert set(program_runs["first"]["outputs"]) >= {"clusterName", "kubeContext", "kubeconfig", "pushRegistry", "caches"}


def test_program_inputs_are_identical_across_processes_seeds_dirs_zones_clocks_and_key_order(
    program_runs: dict[str, dict[str, Any]],
) -> None:
    first, second = program_runs["first"], program_runs["second"]
    assert_same(by_urn(first), by_urn(second), "resources")
    assert first["outputs"] == second["outputs"], explain(first["outputs"], second["outputs"], "stack outputs")


def test_program_inputs_ignore_the_order_of_mirrors(program_runs: dict[str, dict[str, Any]]) -> None:
    """Reordering ``mirrors`` in a stack file must not replace or rewire anything."""
    assert_same(by_urn(program_runs["first"]), by_urn(program_runs["mirrors-reversed"]), "resources with the mirrors reversed")


def _strip_secrets(value: Any) -> tuple[Any, list[Any]]:
    """(``value`` with every secret-wrapped subtree replaced by a marker, the removed subtrees)."""
    if isinstance(value, dict):
        if is_secret(value):
            return "<secret>", [value]
        kept, removed = {}, []
        for key, item in value.items():
            kept[key], inner = _strip_secrets(item)
            removed += inner
        return kept, removed
    if isinstance(value, list):
        kept_list, removed = [], []
        for item in value:
            stripped, inner = _strip_secrets(item)
            kept_list.append(stripped)
            removed += inner
        return kept_list, removed
    return value, []


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, str):
        yield value


def test_secrets_never_reach_an_input_in_plain_text(program_runs: dict[str, dict[str, Any]]) -> None:
    from tests.program import FAKE_KUBECONFIG

    run = program_runs["first"]
    plain, wrapped = _strip_secrets(run)
    plain_text = "\n".join(_texts(plain))
    canaries = {**SECRETS, "kubeconfig": FAKE_KUBECONFIG}
    leaks = [name for name, value in canaries.items() if value in plain_text]
    assert not leaks, f"secret values in plain text in the program's inputs or outputs: {leaks}"
    wrapped_text = "\n".join(_texts(wrapped))
    # Not vacuous: the values the program certainly uses are there, wrapped.
    assert SECRETS["dockerHubPassword"] in wrapped_text, "the Docker Hub token never reached the docker.io cache"
    assert FAKE_KUBECONFIG in wrapped_text, "the kubeconfig never reached the Kubernetes provider"
    assert _strip_secrets(run["outputs"]["kubeconfig"])[0] == "<secret>", "the kubeconfig output is not a secret"
