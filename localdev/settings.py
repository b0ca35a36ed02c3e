"""Stack settings: read, validated once by :func:`parse_settings`, before any resource exists.

The schema (keys, types, defaults, descriptions) lives in ``Pulumi.yaml`` only;
this module reads it, so the Pulumi CLI, the program under mocks and the
``localdev`` command all see the same defaults. :func:`parse_settings` is the one
validation: the program (``__main__.py``), ``render`` and every other command call
it, so they can never disagree about what is valid. No Pulumi import: the command
line uses it too.

Every refusal is a :class:`ConfigError`: one line naming the key (and, where the
caller knows it, the stack file and line) and a fix that is a command to paste.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localdev.errors import UsageError
from localdev.images import DIGEST_REQUIRED, parse_reference
from localdev.manifests import SECRET_CONFIG, GeneratedValue

#: The checkout this package was installed from (``pip install -e .``).
PROJECT_DIR = Path(__file__).resolve().parent.parent

#: Port the registry listens on inside its container (the image's default).
REGISTRY_API_PORT = 5000
#: distribution's debug server (expvar and Prometheus /metrics) inside the container.
REGISTRY_DEBUG_PORT = 5001
#: A cache's metrics are published on 127.0.0.1 at its port plus this offset.
METRICS_PORT_OFFSET = 100
#: Lowest port a suggested fix proposes.
FIRST_SUGGESTED_PORT = 5010

#: Registries whose API is not served at https://HOST.
KNOWN_REMOTES = {"docker.io": "https://registry-1.docker.io"}
#: Other names of Docker Hub. Image references never say ``registry-1.docker.io``, and
#: containerd's reference parser rewrites ``index.docker.io`` to ``docker.io``, so nodes
#: only ever look up ``certs.d/docker.io``: a cache under another name would never be used.
DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io"})
#: Default cache ports for well-known registries; any other host needs HOST=PORT.
DEFAULT_CACHE_PORTS = {
    "docker.io": 5000,
    "ghcr.io": 5002,
    "quay.io": 5003,
    "registry.k8s.io": 5004,
    "gcr.io": 5005,
    "mcr.microsoft.com": 5006,
    "public.ecr.aws": 5007,
}
#: UIs published on 127.0.0.1: name → (setting of its host port, what it is).
UI_PORT_KEYS = {
    "grafana": ("grafanaPort", "Grafana"),
    "prometheus": ("prometheusPort", "Prometheus"),
    "jaeger": ("jaegerPort", "Jaeger"),
}

#: Settings that must only ever be stored encrypted (``pulumi config set --secret``).
SECRET_KEYS = frozenset({"dockerHubPassword", *(key for key, spec in SECRET_CONFIG.items() if spec.secret)})
#: What a value stored encrypted in a stack file reads as: the command line never decrypts.
ENCRYPTED = "<encrypted>"
#: Namespaces of the providers this program uses: their keys in a stack file are not ours.
PROVIDER_NAMESPACES = frozenset({"pulumi", "docker", "kubernetes", "command", "random"})

_HOST_RE = re.compile(
    r"^(?=.{1,253}(:|$))([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,5})?$"
)
_CLUSTER_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_DURATION_RE = re.compile(r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")


class ConfigError(ValueError):
    """A stack setting (or the stack file itself) is wrong; one line naming the key, the problem and the fix."""

    def __init__(self, key: str | None, problem: str, fix: str, *, source: str | None = None, line: int | None = None) -> None:
        self.key, self.problem, self.fix, self.source, self.line = key, problem, fix, source, line
        where = f"{source} line {line}: " if source and line else (f"{source}: " if source else "")
        what = f"config '{key}': " if key else ""
        super().__init__(f"{where}{what}{problem}. Fix: {fix}")

    def at(self, source: str, lines: Mapping[str, int] | None = None) -> ConfigError:
        """The same error, located in ``source`` (a stack file name) at the key's line when known."""
        if self.source:
            return self
        line = self.line or ((lines or {}).get(self.key) if self.key else None)
        return ConfigError(self.key, self.problem, self.fix, source=source, line=line)


@dataclass(frozen=True)
class Mirror:
    """One upstream registry and the local cache in front of it."""

    host: str
    """Registry host as images name it, e.g. ``docker.io`` or ``ghcr.io``."""
    remote_url: str
    """Base URL the cache pulls from (``REGISTRY_PROXY_REMOTEURL``)."""
    port: int
    """Port of the cache's API on 127.0.0.1."""
    metrics_port: int
    """Port of the cache's debug server (``/metrics``, ``/debug/vars``) on 127.0.0.1."""

    @property
    def slug(self) -> str:
        """The host as a name fragment: ``registry.k8s.io`` → ``registry-k8s-io``."""
        return re.sub(r"[^a-z0-9]+", "-", self.host)


@dataclass(frozen=True)
class Settings:
    """Everything the program and the renderers need, validated."""

    cluster_name: str
    node_image: str
    control_planes: int
    workers: int
    mirrors: tuple[Mirror, ...]
    push_port: int
    registry_image: str
    proxy_ttl: str
    retain_caches: bool
    docker_hub_username: str
    ui_ports: Mapping[str, int]
    """UI name → host port on 127.0.0.1 (``grafanaPort``, ``prometheusPort``, ``jaegerPort``)."""
    mirror_entries: tuple[str, ...]
    """``mirrors`` as the stack lists it (or Pulumi.yaml's default), in its order: fixes index into it."""
    mirrors_set: bool
    """Whether the stack sets ``mirrors`` itself (otherwise Pulumi.yaml's default applies)."""

    def cache_name(self, mirror: Mirror) -> str:
        """Container name of a cache; also its alias on the kind network."""
        return f"{self.cluster_name}-cache-{mirror.slug}"

    @property
    def push_name(self) -> str:
        """Container name of the push registry; also its alias on the kind network."""
        return f"{self.cluster_name}-registry"

    @property
    def push_host(self) -> str:
        """How nodes and users name the push registry in image references."""
        return f"localhost:{self.push_port}"

    @property
    def kube_context(self) -> str:
        return f"kind-{self.cluster_name}"

    def add_mirror_command(self, entry: str) -> str:
        """The ``pulumi config set`` command(s) that add ``entry`` to ``mirrors`` and keep what is there."""
        return mirror_set_command(self.mirror_entries, self.mirrors_set, len(self.mirror_entries), entry)


# ------------------------------------------------------------------------------ project and stack files
def find_project_dir(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: the working directory) holding this
    project's ``Pulumi.yaml``, as ``pulumi`` finds it; else the checkout this package came from."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "Pulumi.yaml"
        if candidate.is_file():
            try:
                if project_name(directory) == project_name(PROJECT_DIR):
                    return directory
            except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
                continue
    return PROJECT_DIR


def load_schema(project_dir: Path = PROJECT_DIR) -> dict[str, dict[str, Any]]:
    """The ``config:`` block of Pulumi.yaml: key → {type, default, description}."""
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    return dict(project.get("config") or {})


def project_name(project_dir: Path = PROJECT_DIR) -> str:
    return str(yaml.safe_load((project_dir / "Pulumi.yaml").read_text())["name"])


@dataclass(frozen=True)
class StackConfig:
    """The ``config:`` block of one ``Pulumi.<stack>.yaml``, as the command line sees it."""

    path: Path
    values: dict[str, Any]
    """Key as written (``localdev:workers``) → value; an encrypted value reads as :data:`ENCRYPTED`."""
    secret_keys: frozenset[str]
    """Keys (as written) whose values are stored encrypted (``{secure: …}``)."""
    lines: dict[str, int]
    """Key (as written, and bare for this project's keys) → its line in the file."""


_STACK_SHAPE = "a stack file is a mapping: `config:` then `  localdev:KEY: VALUE` lines indented with spaces"


def stack_names(project_dir: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))


def read_stack(stack: str, project_dir: Path = PROJECT_DIR) -> StackConfig:
    """Read ``Pulumi.<stack>.yaml``; a broken file is one :class:`ConfigError` naming it, the line and the fix."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    name = path.name
    if not path.is_file():
        others = ", ".join(stack_names(project_dir)) or "none"
        raise ConfigError(
            None,
            f"there is no {name} in {project_dir} (stacks here: {others})",
            f"create it with `pulumi stack init {stack}`, or pick one of the stacks here with --stack",
            source="--stack",
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(
            None,
            f"byte 0x{data[err.start]:02x} is not UTF-8",
            f"save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 {name} > {name}.new && mv {name}.new {name})",
            source=name,
            line=line,
        ) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        # The context (an unclosed bracket's line) says more than where the parser gave up (often the end).
        mark = err.context_mark or err.problem_mark
        at: int | None = mark.line + 1 if mark is not None else None
        problem = " ".join(str(err.problem or err).split())
        if "'\\t'" in problem:
            raise ConfigError(None, "a tab indents this line", "indent with spaces, not tabs", source=name, line=at) from None
        raise ConfigError(
            None, f"not valid YAML ({problem})", f"correct the YAML there; {_STACK_SHAPE}", source=name, line=at
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(None, f"not valid YAML ({' '.join(str(err).split())})", _STACK_SHAPE, source=name) from None
    if raw is None:
        return StackConfig(path, {}, frozenset(), {})
    if not isinstance(raw, dict) or not isinstance(root, yaml.MappingNode):
        kind = "a list" if isinstance(raw, list) else f"a {type(raw).__name__} ({str(raw)[:40]!r})"
        raise ConfigError(None, f"the file holds {kind}, not a mapping with a `config:` key", _STACK_SHAPE, source=name, line=1)
    config_node = next((v for k, v in root.value if k.value == "config"), None)
    config = raw.get("config")
    if config is None:
        return StackConfig(path, {}, frozenset(), {})
    if not isinstance(config, dict) or not isinstance(config_node, yaml.MappingNode):
        where = config_node.start_mark.line + 1 if config_node is not None else None
        raise ConfigError(None, "`config:` is not a mapping of keys to values", _STACK_SHAPE, source=name, line=where)
    project = project_name(project_dir)
    lines: dict[str, int] = {}
    for key_node, _ in config_node.value:
        lines[str(key_node.value)] = key_node.start_mark.line + 1
        namespace, _, bare = str(key_node.value).rpartition(":")
        if namespace == project:
            lines.setdefault(bare, key_node.start_mark.line + 1)
    values: dict[str, Any] = {}
    secret_keys: set[str] = set()
    for key, value in config.items():
        if isinstance(value, dict) and "secure" in value:
            values[str(key)] = ENCRYPTED
            secret_keys.add(str(key))
        else:
            values[str(key)] = value
    return StackConfig(path, values, frozenset(secret_keys), lines)


def stack_values(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The ``config:`` block of ``Pulumi.<stack>.yaml``; encrypted values read as :data:`ENCRYPTED`."""
    return read_stack(stack, project_dir).values


def load_stack(stack: str | None, project_dir: Path = PROJECT_DIR) -> Settings:
    """The settings of ``Pulumi.<stack>.yaml`` (Pulumi.yaml's defaults without a stack), validated."""
    if stack is None:
        return parse_settings({}, schema=load_schema(project_dir), project=project_name(project_dir))
    read = read_stack(stack, project_dir)
    try:
        return parse_settings(read.values, read.secret_keys, schema=load_schema(project_dir), project=project_name(project_dir))
    except ConfigError as err:
        raise err.at(read.path.name, read.lines) from None


def resolve_stack(stack: str | None, project_dir: Path = PROJECT_DIR) -> str | None:
    """Which stack a command reads when ``--stack`` is not given.

    ``$LOCALDEV_STACK``, else the only ``Pulumi.<stack>.yaml`` there is, else None
    (Pulumi.yaml's defaults, when there is no stack file at all). Several stack
    files and no choice is refused, listing them: Pulumi's own "selected stack" is
    kept in its workspace files under ``~/.pulumi``, an internal format, and these
    commands must work without the Pulumi CLI installed.
    """
    chosen = stack or os.environ.get("LOCALDEV_STACK")
    if chosen:
        return chosen
    stacks = stack_names(project_dir)
    if len(stacks) > 1:
        raise ConfigError(
            None,
            f"{len(stacks)} stacks here ({', '.join(stacks)}) and none chosen",
            f"pass --stack {stacks[0]} (or export LOCALDEV_STACK={stacks[0]})",
            source="--stack",
        )
    return stacks[0] if stacks else None


# ------------------------------------------------------------------------------ fixes
def mirror_set_command(entries: Sequence[str], entries_set: bool, index: int, entry: str) -> str:
    """``pulumi config set --path 'mirrors[index]' entry``, pasteable.

    Pulumi appends when the index equals the list's length and refuses a larger
    one (pulumi/pulumi#20376). A stack with no ``mirrors`` of its own uses
    Pulumi.yaml's default list; setting one element there would replace the whole
    default, so the command writes the whole list, in order, defaults kept.
    """
    wanted = list(entries)
    if index < len(wanted):
        wanted[index] = entry
    else:
        wanted.append(entry)
    written = range(len(wanted)) if not entries_set else [index]
    return " && ".join(f"pulumi config set --path 'mirrors[{i}]' {shlex.quote(wanted[i])}" for i in written)


def mirror_remove_command(entries: Sequence[str], index: int) -> str:
    return f"pulumi config rm --path 'mirrors[{index}]'" if index < len(entries) else "pulumi config rm mirrors"


# ------------------------------------------------------------------------------ values
def _coerce(key: str, kind: str, value: Any, default: Any) -> Any:
    """Config reaches us as YAML values (stack file) or strings (Pulumi runtime)."""
    example = default if default not in (None, "", []) else None
    if kind == "string":
        if isinstance(value, str):
            return value
        fix = f"pulumi config set {key} {shlex.quote(str(example))}" if example is not None else f"pulumi config rm {key}"
        raise ConfigError(key, f"expected a string, got {value!r}", fix)
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            return int(value)
        raise ConfigError(key, f"expected a whole number, got {value!r}", f"pulumi config set {key} {default}")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(key, f"expected true or false, got {value!r}", f"pulumi config set {key} {str(default).lower()}")
    if kind == "array":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                problem = f"not a list ({err}); set entries with --path '{key}[N]'"
                raise ConfigError(key, problem, f"pulumi config rm {key}") from err
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ConfigError(
            key, f"expected a list of strings, got {value!r}; set entries with --path '{key}[N]'", f"pulumi config rm {key}"
        )
    raise ConfigError(key, f"Pulumi.yaml declares unsupported type {kind!r}", "declare string, integer, boolean or array")


def _port_range(key: str, port: int, fix: str, *, top: int = 65535) -> int:
    if not 1024 <= port <= top:
        raise ConfigError(key, f"port {port} is outside 1024-{top}", fix)
    return port


def parse_mirror(entry: str, index: int = 0, entries: Sequence[str] = (), entries_set: bool = True) -> Mirror:
    """Parse one ``mirrors`` entry: ``HOST``, ``HOST=PORT`` or ``HOST=PORT=REMOTE_URL``.

    ``index`` and ``entries`` (the whole list) only shape the fix of an error.
    """
    entries = entries or [entry]

    def fix_with(new: str) -> str:
        return mirror_set_command(entries, entries_set, index, new)

    key = "mirrors"
    parts = entry.strip().split("=", 2)
    host = parts[0].strip().lower()
    if not _HOST_RE.match(host):
        raise ConfigError(
            key,
            f"{entry!r} does not start with a registry host (write HOST, HOST=PORT or HOST=PORT=URL)",
            fix_with("ghcr.io"),
        )
    if host.split(":", 1)[0] in ("localhost", "127.0.0.1") or host.startswith("127."):
        raise ConfigError(
            key,
            f"{host} names a registry on this machine, like the push registry (localhost:PORT), not an upstream to cache;"
            " push your images to the push registry instead",
            mirror_remove_command(entries, index),
        )
    canonical = "docker.io" if host in DOCKER_HUB_ALIASES else host
    if len(parts) > 1:
        text = parts[1].strip()
        if not re.fullmatch(r"[0-9]+", text):
            what = "an empty port" if not text else f"port {text!r}, not a number"
            suggestion = canonical if canonical in DEFAULT_CACHE_PORTS else f"{canonical}={FIRST_SUGGESTED_PORT}"
            raise ConfigError(key, f"{entry!r} has {what}", fix_with(suggestion))
        port = int(text)
    elif canonical in DEFAULT_CACHE_PORTS:
        port = DEFAULT_CACHE_PORTS[canonical]
    else:
        raise ConfigError(key, f"{host} has no default cache port", fix_with(f"{host}={FIRST_SUGGESTED_PORT}"))
    remote = parts[2].strip() if len(parts) > 2 else KNOWN_REMOTES.get(canonical, f"https://{canonical}")
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?", remote):
        raise ConfigError(
            key, f"remote URL {remote!r} of {host} is not a scheme://host[:port] base URL", fix_with(f"{canonical}={port}")
        )
    return Mirror(host=canonical, remote_url=remote.rstrip("/"), port=port, metrics_port=port + METRICS_PORT_OFFSET)


def _check_pinned(key: str, image: str, default: str) -> None:
    fix = f"pulumi config set {key} {shlex.quote(default)}"
    try:
        ref = parse_reference(image)
    except UsageError as err:
        raise ConfigError(key, f"{image!r} is not an image reference ({err})", fix) from None
    if ref.digest is None and ref.tag in (None, "latest"):
        raise ConfigError(key, f"{image!r} is not pinned (name a version tag or a digest, never latest)", fix)


def check_secret_length(key: str, spec: GeneratedValue, value: str) -> None:
    """A workload credential must fit what its service accepts (SECRET_CONFIG: min_length-max_length)."""
    if not spec.min_length <= len(value) <= spec.max_length:
        raise ConfigError(
            key,
            f"must be {spec.min_length}-{spec.max_length} characters long (got {len(value)});"
            " without it a random value is generated",
            f"pulumi config rm {key}",
        )


@dataclass
class _Binding:
    """One host port the stack publishes on 127.0.0.1, who owns it and which setting moves it."""

    port: int
    owner: str
    key: str
    user_set: bool
    fix: Any = None
    """port → the pasteable command that moves this owner to that port."""
    needs_metrics: bool = False
    """A cache: the suggested port's +100 must be free too."""
    group: int = 0
    """Bindings of one owner (a cache and its metrics) move together."""


def _check_ports(bindings: list[_Binding]) -> None:
    """Every host port against every other; a clash blames the setting the user chose."""
    seen: dict[int, _Binding] = {}
    for binding in bindings:
        other = seen.get(binding.port)
        if other is None:
            seen[binding.port] = binding
            continue
        culprit, victim = (binding, other) if binding.user_set or not other.user_set else (other, binding)
        taken = {b.port for b in bindings if b.group != culprit.group}
        port = FIRST_SUGGESTED_PORT
        while port in taken or (culprit.needs_metrics and port + METRICS_PORT_OFFSET in taken):
            port += 1
        raise ConfigError(
            culprit.key, f"{culprit.owner} and {victim.owner} both want 127.0.0.1:{binding.port}", culprit.fix(port)
        )


def _namespace_of(raw_key: str, value: Any, project: str, schema: Mapping[str, Any]) -> str | None:
    """The bare key of one of ours, or None for another namespace; a near-miss of ours is refused."""
    namespace, _, key = raw_key.rpartition(":")
    if not namespace or namespace == project:
        return key
    if namespace not in PROVIDER_NAMESPACES and difflib.SequenceMatcher(None, namespace, project).ratio() >= 0.7:
        right = f"{project}:{key}"
        remove = f"pulumi config rm {shlex.quote(raw_key)}"
        if key not in schema:
            fix = remove
        elif isinstance(value, (str, int, float, bool)) and value != ENCRYPTED:
            text = str(value).lower() if isinstance(value, bool) else str(value)
            fix = f"{remove} && pulumi config set {key} {shlex.quote(text)}"
        else:
            fix = remove
        again = "" if "&&" in fix else f" (set it again as {key})"
        problem = f"namespace {namespace!r} is not this project's ({project!r}), so {right} stays unset{again}"
        raise ConfigError(raw_key, problem, fix)
    return None


def _check_node_image(image: str, default: str) -> None:
    """kind's own node images must be used by digest (kind v0.33.0 release notes): a tag alone may name
    an image built for another kind release."""
    ref = parse_reference(image)
    if (ref.registry, ref.repository) in DIGEST_REQUIRED and ref.digest is None:
        raise ConfigError(
            "nodeImage",
            f"{image!r} has no digest; kind v0.33+ requires its node images by digest"
            " (NAME:TAG@sha256:DIGEST, as your kind release's notes list it)",
            f"pulumi config set nodeImage {shlex.quote(default)}",
        )


def parse_settings(
    values: Mapping[str, Any],
    secret_keys: Collection[str] = (),
    *,
    schema: Mapping[str, Mapping[str, Any]] | None = None,
    project: str | None = None,
) -> Settings:
    """The one validation: stack config over Pulumi.yaml's defaults, checked as a whole.

    ``values`` maps keys, bare (``workers``) or namespaced (``localdev:workers``), to
    values: YAML values from a stack file, or strings from the Pulumi runtime. A value
    that is :data:`ENCRYPTED` was not decrypted (the command line) and is only checked
    for being set. ``secret_keys`` are the keys (bare or namespaced) stored encrypted:
    the stack file's ``{secure: …}`` entries for the command line, Pulumi's secret keys
    for the program. Keys of provider namespaces (``kubernetes:…``) are not ours and pass.
    """
    schema = load_schema() if schema is None else schema
    project = project_name() if project is None else project
    encrypted = {key.rpartition(":")[2] for key in secret_keys if key.rpartition(":")[0] in ("", project)}
    given: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = _namespace_of(raw_key, value, project, schema)
        if key is None:
            continue
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(schema))}"
            raise ConfigError(key, f"unknown setting ({hint})", f"pulumi config rm {key}")
        given[key] = value
    cfg = {
        key: _coerce(key, str(spec.get("type", "string")), given.get(key, spec.get("default")), spec.get("default"))
        for key, spec in schema.items()
    }

    for key in sorted(SECRET_KEYS & set(schema)):
        if cfg[key] and key not in encrypted:
            raise ConfigError(key, "is stored in plain text (the fix asks for the value)", f"pulumi config set --secret {key}")
    for key, spec in SECRET_CONFIG.items():
        value = cfg.get(key)
        if isinstance(value, str) and value and value != ENCRYPTED:
            check_secret_length(key, spec, value)

    def default_of(key: str) -> Any:
        return schema[key].get("default")

    cluster = cfg["clusterName"]
    if not _CLUSTER_RE.match(cluster):
        raise ConfigError(
            "clusterName",
            f"{cluster!r} is not a valid kind cluster name (1-32 lowercase letters, digits and dashes)",
            f"pulumi config set clusterName {default_of('clusterName')}",
        )
    _check_pinned("nodeImage", cfg["nodeImage"], default_of("nodeImage"))
    _check_node_image(cfg["nodeImage"], default_of("nodeImage"))
    _check_pinned("registryImage", cfg["registryImage"], default_of("registryImage"))
    if cfg["controlPlanes"] not in (1, 3):
        raise ConfigError(
            "controlPlanes",
            f"{cfg['controlPlanes']} control-plane nodes cannot form a healthy etcd quorum here (use 1, or 3 for HA testing)",
            "pulumi config set controlPlanes 1",
        )
    if not 0 <= cfg["workers"] <= 10:
        raise ConfigError(
            "workers", f"{cfg['workers']} workers is outside 0-10", f"pulumi config set workers {default_of('workers')}"
        )
    if not _DURATION_RE.match(cfg["proxyTtl"]):
        raise ConfigError(
            "proxyTtl",
            f"{cfg['proxyTtl']!r} is not a Go duration (e.g. 720h, 168h, or 0 to never expire)",
            f"pulumi config set proxyTtl {default_of('proxyTtl')}",
        )
    if bool(cfg["dockerHubUsername"]) != bool(cfg["dockerHubPassword"]):
        missing = "dockerHubPassword" if cfg["dockerHubUsername"] else "dockerHubUsername"
        other = "dockerHubUsername" if missing == "dockerHubPassword" else "dockerHubPassword"
        set_it = f"pulumi config set{' --secret' if missing == 'dockerHubPassword' else ''} {missing}"
        together = f"dockerHubUsername and dockerHubPassword must be set together (or set it: {set_it})"
        raise ConfigError(missing, together, f"pulumi config rm {other}")

    entries = tuple(cfg["mirrors"])
    mirrors_set = "mirrors" in given
    if not entries:
        raise ConfigError("mirrors", "no registry to cache", "pulumi config rm mirrors")
    parsed = [(index, parse_mirror(entry, index, entries, mirrors_set)) for index, entry in enumerate(entries)]
    by_host: dict[str, int] = {}
    by_container: dict[str, tuple[int, Mirror]] = {}
    for index, mirror in parsed:
        if mirror.host in by_host:
            named = [entries[i].split("=", 1)[0].strip().lower() for i in (by_host[mirror.host], index)]
            alias = next((n for n in named if n != mirror.host), None)
            also = f" ({alias} is another name for it)" if alias else ""
            raise ConfigError(
                "mirrors",
                f"{mirror.host} is listed twice{also}; keep one entry per registry",
                mirror_remove_command(entries, index),
            )
        by_host[mirror.host] = index
        container = f"{cluster}-cache-{mirror.slug}"
        if mirror.slug in by_container:
            first = by_container[mirror.slug][1].host
            raise ConfigError(
                "mirrors",
                f"{first} and {mirror.host} would both be the container {container}; keep one of them",
                mirror_remove_command(entries, index),
            )
        by_container[mirror.slug] = (index, mirror)

    push_port = _port_range(
        "pushRegistryPort", cfg["pushRegistryPort"], f"pulumi config set pushRegistryPort {default_of('pushRegistryPort')}"
    )
    ui_ports: dict[str, int] = {}
    for ui, (key, _) in UI_PORT_KEYS.items():
        ui_ports[ui] = _port_range(key, cfg[key], f"pulumi config set {key} {default_of(key)}")

    bindings: list[_Binding] = []
    group = 0
    # Sorted by host: the order nothing downstream may depend on the list's order.
    for index, mirror in sorted(parsed, key=lambda pair: pair[1].host):
        group += 1
        explicit = mirrors_set and len(entries[index].split("=")) > 1

        def move(port: int, index: int = index) -> str:
            rest = entries[index].split("=", 2)
            new = f"{rest[0].strip()}={port}" + (f"={rest[2].strip()}" if len(rest) > 2 else "")
            return mirror_set_command(entries, mirrors_set, index, new)

        _port_range("mirrors", mirror.port, move(FIRST_SUGGESTED_PORT), top=65535)
        if mirror.metrics_port > 65535:
            raise ConfigError(
                "mirrors",
                f"the {mirror.host} cache's metrics port would be {mirror.metrics_port}"
                f" (its port + {METRICS_PORT_OFFSET}), above 65535",
                move(FIRST_SUGGESTED_PORT),
            )
        bindings.append(_Binding(mirror.port, f"the {mirror.host} cache", "mirrors", explicit, move, True, group))
        bindings.append(
            _Binding(
                mirror.metrics_port,
                f"the {mirror.host} cache's metrics (its port + {METRICS_PORT_OFFSET})",
                "mirrors",
                explicit,
                move,
                True,
                group,
            )
        )
    group += 1
    bindings.append(
        _Binding(
            push_port,
            "the push registry (pushRegistryPort)",
            "pushRegistryPort",
            "pushRegistryPort" in given,
            lambda port: f"pulumi config set pushRegistryPort {port}",
            group=group,
        )
    )
    for ui, (key, label) in UI_PORT_KEYS.items():
        group += 1
        bindings.append(
            _Binding(
                ui_ports[ui],
                f"{label} ({key})",
                key,
                key in given,
                lambda port, key=key: f"pulumi config set {key} {port}",
                group=group,
            )
        )
    _check_ports(bindings)

    return Settings(
        cluster_name=cluster,
        node_image=cfg["nodeImage"],
        control_planes=cfg["controlPlanes"],
        workers=cfg["workers"],
        mirrors=tuple(sorted((m for _, m in parsed), key=lambda m: m.host)),
        push_port=push_port,
        registry_image=cfg["registryImage"],
        proxy_ttl=cfg["proxyTtl"],
        retain_caches=cfg["retainCaches"],
        docker_hub_username=cfg["dockerHubUsername"],
        ui_ports=ui_ports,
        mirror_entries=entries,
        mirrors_set=mirrors_set,
    )
