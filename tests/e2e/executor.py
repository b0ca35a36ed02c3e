"""The Pulumi engine's part, for this program, on the real Docker engine.

The Pulumi CLI and its provider plugins cannot run on this machine. This module plays their part
from the graph the program registers under mocks (``tests/program.py`` records each resource's
type, inputs, dependencies and options): it creates, updates, replaces and deletes the docker and
command resources for real, and keeps a state file so a second ``up`` finds nothing to do.

Where the engine's or a provider's semantics matter, the code follows the providers' own
documentation, cited at each place from the SDK docstrings generated from their schemas
(``pulumi_docker`` 5.2.0 and ``pulumi_command`` 1.2.1 as pinned in requirements.txt; the same text
is on https://www.pulumi.com/registry/packages/docker/api-docs/ and
https://www.pulumi.com/registry/packages/command/api-docs/local/command/).

What it does not do: Kubernetes resources (no API server exists here) and ``random`` resources are
listed as not applied. Resources start one at a time in an order that respects the declared
dependencies and nothing else: each resource starts as late as its dependents allow, and ties go
to the one registered first, so the program's registration order never hides a missing edge. A
container's wait for health overlaps with the steps that do not depend on it, as Pulumi runs
independent steps concurrently; a dependent starts only once it is healthy.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from tests.program import Graph, ProgramMocks, run_program

VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"
APPLIED = (VOLUME, REMOTE_IMAGE, CONTAINER, COMMAND)

#: The inputs the executor implements, per type. Any other input the program declares fails the
#: run: an input the executor silently dropped would make a test pass on something never applied.
SUPPORTED_INPUTS = {
    VOLUME: {"name", "labels", "driver"},
    REMOTE_IMAGE: {"name", "keepLocally"},
    CONTAINER: {
        "name", "image", "envs", "ports", "volumes", "labels", "restart", "healthcheck", "wait", "waitTimeout",
        "mustRun", "uploads", "entrypoints", "command", "logDriver", "logOpts", "networkMode", "destroyGraceSeconds",
    },
    # `logging` only chooses what the CLI shows of the command's output.
    COMMAND: {"create", "update", "delete", "stdin", "environment", "triggers", "logging", "interpreter", "dir",
              "addPreviousOutputInEnv"},
}  # fmt: skip

#: A provider output the program reads, before the real value exists: ⟦key|field⟧.
_REF = re.compile(r"\u27e6([^|\u27e7]+)\|([A-Za-z]+)\u27e7")


def ref(key: str, output: str) -> str:
    return f"\u27e6{key}|{output}\u27e7"


class ReferenceMocks(ProgramMocks):
    """Mocks whose computed outputs are references, resolved once the real resource exists.

    The recorded inputs of a dependent then say exactly which output of which resource they hold
    (a container's ``image`` is the RemoteImage's ``imageId``, a trigger is a container's ``id``).
    """

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        _, state = super().new_resource(args)
        key = f"{args.typ}::{args.name}"
        if args.typ == COMMAND:
            state["stdout"] = ref(key, "stdout")
        if args.typ == REMOTE_IMAGE:
            state["imageId"] = ref(key, "imageId")
        return ref(key, "id"), state


class ExecutorError(RuntimeError):
    """A step failed on the real engine; the message names the resource."""


@dataclass
class Resource:
    """One resource the executor applies, as the program declared it."""

    urn: str
    type: str
    name: str
    index: int
    inputs: dict[str, Any]
    deps: set[str]
    delete_before_replace: bool
    retain_on_delete: bool

    @property
    def key(self) -> str:
        return f"{self.type}::{self.name}"


@dataclass
class Plan:
    """What the program declares: the resources to apply and the ones listed as not applied."""

    resources: dict[str, Resource]
    not_applied: list[str]
    outputs: dict[str, Any]


def plan_from_graph(graph: Graph) -> Plan:
    by_urn = {r.urn: r for r in graph.registrations}
    children: dict[str, list[str]] = {}
    for registration in graph.registrations:
        children.setdefault(registration.parent, []).append(registration.urn)

    def applied_under(urn: str) -> set[str]:
        """A dependency on a component is a dependency on every resource inside it (Pulumi expands it)."""
        registration = by_urn.get(urn)
        if registration is None:
            return set()
        if registration.type in APPLIED:
            return {urn}
        found: set[str] = set()
        for child in children.get(urn, []):
            found |= applied_under(child)
        return found

    resources: dict[str, Resource] = {}
    not_applied: list[str] = []
    for index, registration in enumerate(graph.registrations):
        if registration.type not in APPLIED:
            if not registration.type.startswith("localdev:"):
                not_applied.append(f"{registration.type} {registration.name}")
            continue
        declared = set(registration.dependencies)
        for urns in registration.property_dependencies.values():
            declared.update(urns)
        deps: set[str] = set()
        for urn in declared:
            deps |= applied_under(urn)
        resources[registration.urn] = Resource(
            urn=registration.urn,
            type=registration.type,
            name=registration.name,
            index=index,
            inputs=registration.inputs,
            deps=deps - {registration.urn},
            delete_before_replace=registration.delete_before_replace,
            retain_on_delete=registration.retain_on_delete,
        )
    keys = {r.key: r.urn for r in resources.values()}
    for resource in resources.values():
        unknown = sorted(set(resource.inputs) - SUPPORTED_INPUTS[resource.type])
        if unknown:
            raise ExecutorError(f"{resource.name}: the executor does not implement {resource.type} inputs {unknown}")
        for key, _ in _refs(resource.inputs):
            if key not in keys:
                raise ExecutorError(f"{resource.name} reads an output of {key}, which the executor does not apply")
            if keys[key] not in resource.deps:
                raise ExecutorError(f"{resource.name} reads an output of {key} without depending on it")
    return Plan(resources, not_applied, graph.outputs)


def load_plan(config: Mapping[str, Any], secret_keys: tuple[str, ...] = ()) -> Plan:
    """Run the program under reference mocks with ``config`` and plan from what it registers."""
    return plan_from_graph(run_program(config, secret_keys, program_mocks=ReferenceMocks()))


def _refs(value: Any) -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield from _REF.findall(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def adversarial_order(resources: Mapping[str, Resource]) -> list[Resource]:
    """Dependencies first and otherwise as late as possible, ties to the earliest registered.

    Built backwards: the last slot goes to a resource nothing left depends on, preferring the one
    the program registered first. A resource thus runs right before its first dependent, and a
    dependency the program forgot to declare shows up as a failure instead of passing by the
    order of registration.
    """
    dependents: dict[str, set[str]] = {urn: set() for urn in resources}
    for resource in resources.values():
        for dep in resource.deps:
            if dep in dependents:
                dependents[dep].add(resource.urn)
    remaining = set(resources)
    backwards: list[Resource] = []
    while remaining:
        ready = [resources[u] for u in remaining if not (dependents[u] & remaining)]
        if not ready:
            raise ExecutorError(f"dependency cycle among {sorted(resources[u].name for u in remaining)}")
        pick = min(ready, key=lambda r: r.index)
        backwards.append(pick)
        remaining.remove(pick.urn)
    return list(reversed(backwards))


# ----------------------------------------------------------------------------------- state


@dataclass
class State:
    """The executor's stack state: per resource its id, resolved inputs, outputs and edges."""

    path: Path
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> State:
        if path.exists():
            return cls(path, json.loads(path.read_text())["resources"])
        return cls(path)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        # The state holds secret inputs (a test upstream password at most): keep it private.
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps({"resources": self.resources}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


@dataclass
class Step:
    op: str  # create | update | replace | delete | same
    name: str
    seconds: float = 0.0


# ------------------------------------------------------------------------------- providers


def _docker_client() -> Any:
    import docker  # type: ignore[import-untyped]

    return docker.from_env(timeout=120)


def _duration_ns(value: str | None) -> int:
    """Go durations as the docker provider takes them ("10s", "1m30s") in nanoseconds."""
    if not value:
        return 0
    units = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(ns|us|ms|s|m|h)", value):
        total += float(number) * units[unit]
    return int(total)


class Providers:
    """Create, update and delete of each resource type, as the providers do it."""

    def __init__(self, env: Mapping[str, str], log: Callable[[str], None]) -> None:
        self.env = dict(env)
        self.log = log
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _docker_client()
        return self._client

    # docker.Volume: `name` and `labels` (list of {label, value}); the id is the volume name.
    def create_volume(self, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        labels = {item["label"]: item["value"] for item in inputs.get("labels") or []}
        volume = self.client.volumes.create(name=inputs["name"], driver=inputs.get("driver") or "local", labels=labels)
        return volume.name, {"name": volume.name, "mountpoint": volume.attrs.get("Mountpoint", "")}

    def delete_volume(self, record: Mapping[str, Any]) -> None:
        import docker

        with contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(record["id"]).remove()

    # docker.RemoteImage: pulls `name` when missing. Here nothing may be pulled, so the image must
    # already be in the engine (the harness builds it); `keep_locally`: "If true, then the Docker
    # image won't be deleted on destroy operation" (remote_image.py).
    def create_remote_image(self, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        import docker

        name = inputs["name"]
        try:
            image = self.client.images.get(name)
        except docker.errors.ImageNotFound:
            raise ExecutorError(
                f"image {name} is not in the engine and the end-to-end test never pulls: build it first "
                "(python -m tests.e2e up builds the stand-ins)"
            ) from None
        return f"{image.id}{name}", {"imageId": image.id, "name": name, "repoDigest": ""}

    def delete_remote_image(self, record: Mapping[str, Any]) -> None:
        if record["inputs"].get("keepLocally"):
            return
        import docker

        with contextlib.suppress(docker.errors.ImageNotFound):
            self.client.images.remove(record["inputs"]["name"])

    def create_container(self, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        from docker.types import Mount

        api = self.client.api
        ports = inputs.get("ports") or []
        # ports: `ip` "Defaults to `0.0.0.0`", `protocol` defaults to tcp (container.py, ContainerPortArgs).
        port_bindings: dict[str, list[tuple[str, int]]] = {}
        for port in ports:
            # Numbers arrive as floats (a protobuf Struct carries no integers).
            spec = f"{int(port['internal'])}/{port.get('protocol') or 'tcp'}"
            port_bindings.setdefault(spec, []).append((port.get("ip") or "0.0.0.0", int(port["external"])))
        mounts = [
            Mount(target=v["containerPath"], source=v.get("volumeName"), type="volume", read_only=bool(v.get("readOnly")))
            for v in inputs.get("volumes") or []
        ]
        health = inputs.get("healthcheck")
        healthcheck = (
            {
                "test": health["tests"],
                "interval": _duration_ns(health.get("interval")),
                "timeout": _duration_ns(health.get("timeout")),
                "start_period": _duration_ns(health.get("startPeriod")),
                "retries": int(health.get("retries") or 0),
            }
            if health
            else None
        )
        host_config = api.create_host_config(
            port_bindings={k: v if len(v) > 1 else v[0] for k, v in port_bindings.items()},
            mounts=mounts,
            # restart: "Must be one of 'no', 'on-failure', 'always', 'unless-stopped'. Defaults to `no`."
            restart_policy={"Name": inputs.get("restart") or "no"},
            # log_driver / log_opts: the container's logging driver and its options.
            log_config={"Type": inputs.get("logDriver") or "json-file", "Config": dict(inputs.get("logOpts") or {})},
            network_mode=inputs.get("networkMode") or "bridge",
        )
        created = api.create_container(
            image=inputs["image"],
            name=inputs["name"],
            environment=list(inputs.get("envs") or []),
            entrypoint=inputs.get("entrypoints") or None,
            command=inputs.get("command") or None,
            labels={item["label"]: item["value"] for item in inputs.get("labels") or []},
            ports=[tuple(k.split("/")) if not k.endswith("/tcp") else int(k.split("/")[0]) for k in port_bindings],
            healthcheck=healthcheck,
            host_config=host_config,
        )
        container_id = created["Id"]
        # uploads: "Specifies files to upload to the container before starting it"; `executable`:
        # "the file will be uploaded with user executable permission" (container.py, ContainerUploadArgs).
        for upload in inputs.get("uploads") or []:
            self._upload(container_id, upload)
        api.start(container_id)
        return container_id, {"id": container_id, "name": inputs["name"]}

    def _upload(self, container_id: str, upload: Mapping[str, Any]) -> None:
        content = upload.get("content")
        if content is None:
            raise ExecutorError(f"upload {upload.get('file')}: only `content` uploads are supported by the executor")
        data = content.encode()
        path = upload["file"]
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = (
                int(upload["permissions"], 8) if upload.get("permissions") else 0o755 if upload.get("executable") else 0o644
            )
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(data))
        if not self.client.api.put_archive(container_id, "/", buffer.getvalue()):
            raise ExecutorError(f"upload of {path} into {container_id[:12]} refused")

    def await_running(self, inputs: Mapping[str, Any], container_id: str) -> None:
        """`must_run` (default true): the container must be running after creation. `wait`: "the Docker
        container is waited for being healthy state after creation. This requires your container to
        have a healthcheck"; `wait_timeout`: "Defaults to 60" seconds (container.py)."""
        must_run = inputs.get("mustRun", True) is not False
        wait = bool(inputs.get("wait"))
        if wait and not inputs.get("healthcheck"):
            raise ExecutorError(f"container {inputs['name']}: wait=true needs a healthcheck")
        deadline = time.monotonic() + float(inputs.get("waitTimeout") or 60)
        while True:
            attrs = self.client.api.inspect_container(container_id)
            status = attrs["State"]["Status"]
            health = (attrs["State"].get("Health") or {}).get("Status")
            if must_run and status in ("exited", "dead"):
                logs = self.client.api.logs(container_id, tail=20).decode(errors="replace")
                raise ExecutorError(f"container {inputs['name']} is {status} (must_run); last log lines:\n{logs}")
            if not wait and (status == "running" or not must_run):
                return
            if wait and health == "healthy":
                return
            if time.monotonic() > deadline:
                logs = self.client.api.logs(container_id, tail=20).decode(errors="replace")
                raise ExecutorError(
                    f"container {inputs['name']} not healthy within wait_timeout={inputs.get('waitTimeout') or 60}s "
                    f"(status {status}, health {health}); last log lines:\n{logs}"
                )
            time.sleep(0.5)

    def delete_container(self, record: Mapping[str, Any]) -> None:
        """destroy_grace_seconds: "If defined will attempt to stop the container before destroying.
        Container will be destroyed after `n` seconds or on successful stop" (container.py); without
        it the container is removed by force at once."""
        import docker

        grace = int(record["inputs"].get("destroyGraceSeconds") or 0)
        with contextlib.suppress(docker.errors.NotFound):
            if grace:
                self.client.api.stop(record["id"], timeout=grace)
            self.client.api.remove_container(record["id"], v=True, force=True)

    # command.local.Command. `interpreter`: "On Linux and macOS, defaults to: ["/bin/sh", "-c"]";
    # `environment`: "Additional environment variables available to the command's process"; `stdin`
    # is passed to the process (local/command.py).
    def _run(self, name: str, script: str, inputs: Mapping[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any]:
        env = {**self.env, **(inputs.get("environment") or {})}
        # addPreviousOutputInEnv (default true): "the previous command's stdout and stderr (as generated
        # by the prior create/update) is injected into the environment of the next run as
        # PULUMI_COMMAND_STDOUT and PULUMI_COMMAND_STDERR".
        if previous is not None and inputs.get("addPreviousOutputInEnv", True) is not False:
            env["PULUMI_COMMAND_STDOUT"] = previous.get("stdout", "")
            env["PULUMI_COMMAND_STDERR"] = previous.get("stderr", "")
        interpreter = list(inputs.get("interpreter") or ["/bin/sh", "-c"])
        result = subprocess.run(
            [*interpreter, script],
            input=inputs.get("stdin"),
            capture_output=True,
            text=True,
            env=env,
            cwd=inputs.get("dir") or None,
            check=False,
        )
        for line in result.stderr.splitlines():
            self.log(f"  {name}: {line}")
        if result.returncode != 0:
            # "A command is considered to have failed when it finished with a non-zero exit code."
            raise ExecutorError(f"command {name} exited with {result.returncode}: {result.stderr.strip()[-1500:]}")
        # The provider trims one trailing newline from stdout and stderr.
        return {"stdout": result.stdout.removesuffix("\n"), "stderr": result.stderr.removesuffix("\n")}

    def create_command(self, name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        outputs = (
            self._run(name, inputs.get("create") or "", inputs, None) if inputs.get("create") else {"stdout": "", "stderr": ""}
        )
        # The provider gives each created Command a fresh random id (resource.NewUniqueHex("", 8, 0)
        # in pulumi-command's provider): a replaced command has a new id, which is what makes a
        # trigger on `cluster.id` re-run its dependents.
        return secrets.token_hex(8), outputs

    def update_command(self, name: str, inputs: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
        # create: "If an `update` command isn't provided, then `create` will also be run when the
        # resource's inputs are modified."
        script = inputs.get("update") or inputs.get("create")
        return self._run(name, script, inputs, previous) if script else dict(previous)

    def delete_command(self, name: str, record: Mapping[str, Any]) -> None:
        # delete: runs with the inputs of the last create/update, with PULUMI_COMMAND_STDOUT/STDERR set.
        script = record["inputs"].get("delete")
        if script:
            self._run(name, script, record["inputs"], record["outputs"])


# -------------------------------------------------------------------------------- executor


def _resolve(value: Any, lookup: Callable[[str, str], Any]) -> Any:
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            return lookup(whole.group(1), whole.group(2))
        return _REF.sub(lambda m: str(lookup(m.group(1), m.group(2))), value)
    if isinstance(value, dict):
        return {k: _resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, lookup) for v in value]
    return value


def _replaces(resource_type: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a change of inputs replaces the resource or updates it in place."""
    if resource_type == COMMAND:
        # triggers: "The resource will be updated (or replaced) if any of these values change. ...
        # If the `update` command was provided the resource will be updated, otherwise it will be
        # replaced using the `create` command." Other changed inputs update in place.
        return old.get("triggers") != new.get("triggers") and not new.get("update")
    if resource_type == REMOTE_IMAGE:
        return old.get("name") != new.get("name")
    # docker Container and Volume arguments are ForceNew in the Terraform provider pulumi-docker
    # bridges: any change creates a new one.
    return True


class Executor:
    """``up`` and ``destroy`` of a plan against the real engine, with a state file."""

    def __init__(self, state_path: Path, env: Mapping[str, str], log: Callable[[str], None] = print) -> None:
        self.state = State.load(state_path)
        self.env = dict(env)
        self.providers = Providers(env, log)
        self.log = log
        self.steps: list[Step] = []
        # A container's create ends when it is healthy (`wait`); meanwhile the engine goes on with
        # resources that do not depend on it, as Pulumi runs independent steps concurrently.
        self._pool = ThreadPoolExecutor(max_workers=8)
        self._pending: dict[str, Future[None]] = {}

    def _settle(self, urns: Iterable[str]) -> None:
        """Wait until the creates of ``urns`` have finished; a failed one fails the update here."""
        for urn in list(urns):
            future = self._pending.pop(urn, None)
            if future is not None:
                future.result()

    # Lookup of a reference in the current state (the resources created so far in this run).
    def _lookup(self, plan: Plan) -> Callable[[str, str], Any]:
        keys = {r.key: r.urn for r in plan.resources.values()}

        def lookup(key: str, output: str) -> Any:
            record = self.state.resources.get(keys[key])
            if record is None:
                raise ExecutorError(f"{key} has no state yet; a dependency edge is missing")
            return record["id"] if output == "id" else record["outputs"][output]

        return lookup

    def _record(self, resource: Resource, rid: str, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        self.state.resources[resource.urn] = {
            "type": resource.type,
            "name": resource.name,
            "id": rid,
            "inputs": inputs,
            "outputs": outputs,
            "deps": sorted(resource.deps),
            "index": resource.index,
            "deleteBeforeReplace": resource.delete_before_replace,
            "retainOnDelete": resource.retain_on_delete,
        }
        self.state.save()

    def _create(self, resource: Resource, inputs: dict[str, Any]) -> None:
        p = self.providers
        if resource.type == VOLUME:
            rid, outputs = p.create_volume(inputs)
        elif resource.type == REMOTE_IMAGE:
            rid, outputs = p.create_remote_image(inputs)
        elif resource.type == CONTAINER:
            rid, outputs = p.create_container(inputs)
        else:
            rid, outputs = p.create_command(resource.name, inputs)
        self._record(resource, rid, inputs, outputs)
        if resource.type == CONTAINER:
            # Its own client: the wait runs in another thread.
            waiter = Providers(self.env, self.log)
            self._pending[resource.urn] = self._pool.submit(waiter.await_running, inputs, rid)

    def _delete_record(self, urn: str, record: Mapping[str, Any], *, replacing: bool = False) -> None:
        name = record["name"]
        # retain_on_delete: the engine forgets the resource and leaves it in place; a replacement
        # still deletes the old one only when it is not retained either.
        if not record.get("retainOnDelete"):
            p = self.providers
            if record["type"] == VOLUME:
                p.delete_volume(record)
            elif record["type"] == REMOTE_IMAGE:
                p.delete_remote_image(record)
            elif record["type"] == CONTAINER:
                p.delete_container(record)
            else:
                p.delete_command(name, record)
        if not replacing:
            self.steps.append(Step("delete", name))
            self.log(f"- delete {name}")
        if self.state.resources.get(urn) is record:
            del self.state.resources[urn]
        self.state.save()

    def _replaced_with(self, urn: str) -> dict[str, dict[str, Any]]:
        """Resources in state that a replacement of ``urn`` replaces too, directly or not.

        Those whose recorded inputs hold one of its outputs (its id in a trigger, say): the new
        resource's outputs differ, so they change with it (Pulumi's dependent replacements).
        """
        found: dict[str, dict[str, Any]] = {}
        frontier = [urn]
        while frontier:
            current_urn = frontier.pop()
            current = self.state.resources[current_urn]
            values = [current["id"], *(v for v in current["outputs"].values() if isinstance(v, str) and len(v) >= 8)]
            for other, record in self.state.resources.items():
                if other in found or other == urn or current_urn not in record["deps"]:
                    continue
                text = json.dumps(record["inputs"])
                if any(value and value in text for value in values):
                    found[other] = record
                    frontier.append(other)
        return found

    def _delete_in_order(self, records: dict[str, dict[str, Any]], *, replacing: bool = False) -> None:
        """Dependents before what they depend on; otherwise each deleted as early as allowed."""
        remaining = dict(records)
        while remaining:
            ready = [u for u in remaining if not any(u in r["deps"] for v, r in remaining.items() if v != u)]
            if not ready:
                raise ExecutorError(f"cannot order deletion of {sorted(r['name'] for r in remaining.values())}")
            urn = max(ready, key=lambda u: (len(remaining[u]["deps"]) == 0, -remaining[u]["index"]))
            self._delete_record(urn, remaining.pop(urn), replacing=replacing)

    def up(self, plan: Plan) -> list[Step]:
        self.steps = []
        lookup = self._lookup(plan)
        pending_deletes: dict[str, dict[str, Any]] = {}
        try:
            self._update(plan, lookup, pending_deletes)
            self._settle(self._pending)
        finally:
            for future in self._pending.values():
                future.exception()
            self._pending.clear()
        gone = {u: r for u, r in self.state.resources.items() if u not in plan.resources}
        self._delete_in_order({**gone, **pending_deletes}, replacing=False)
        return self.steps

    def _update(self, plan: Plan, lookup: Callable[[str, str], Any], pending_deletes: dict[str, dict[str, Any]]) -> None:
        for resource in adversarial_order(plan.resources):
            self._settle(resource.deps)
            started = time.monotonic()
            inputs = _resolve(resource.inputs, lookup)
            old = self.state.resources.get(resource.urn)
            if old is None:
                self.log(f"+ create {resource.name}")
                self._create(resource, inputs)
                self.steps.append(Step("create", resource.name, time.monotonic() - started))
                continue
            if old["inputs"] == inputs:
                self.steps.append(Step("same", resource.name))
                continue
            if not _replaces(resource.type, old["inputs"], inputs):
                self.log(f"~ update {resource.name}")
                outputs = self.providers.update_command(resource.name, inputs, old["outputs"])
                self._record(resource, old["id"], inputs, outputs)
                self.steps.append(Step("update", resource.name, time.monotonic() - started))
                continue
            self.log(f"+- replace {resource.name}{' (delete first)' if resource.delete_before_replace else ''}")
            if resource.delete_before_replace:
                # The engine first deletes the dependents this replacement will replace too (their
                # inputs hold this resource's outputs), then this resource, then creates it anew.
                self._delete_in_order({**self._replaced_with(resource.urn), resource.urn: old}, replacing=True)
                self._create(resource, inputs)
            else:
                # Create-before-delete, the default: the old one goes at the end of the update.
                del self.state.resources[resource.urn]
                pending_deletes[f"{resource.urn}#old"] = old
                self._create(resource, inputs)
            self.steps.append(Step("replace", resource.name, time.monotonic() - started))

    def destroy(self, targets: Iterable[str] = ()) -> list[Step]:
        """Delete everything, or (like ``pulumi destroy --target NAME --target-dependents``) the
        resources named in ``targets`` and everything that depends on them."""
        self.steps = []
        wanted = {u for u, r in self.state.resources.items() if r["name"] in set(targets)}
        if targets and not wanted:
            raise ExecutorError(f"no resource named {sorted(targets)} in the state")
        if wanted:
            frontier = set(wanted)
            while frontier:
                frontier = {u for u, r in self.state.resources.items() if set(r["deps"]) & frontier and u not in wanted}
                wanted |= frontier
        records = {u: r for u, r in self.state.resources.items() if not targets or u in wanted}
        self._delete_in_order(records)
        return self.steps
