"""Run the whole Pulumi program under mocks and record the resource graph.

``MockResourceArgs`` carries no dependencies, so a ``MockMonitor`` subclass
records what the engine would see: inputs with secrets still marked, the
dependency edges, and resource options.
"""

from __future__ import annotations

import os
import runpy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks, rpc
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "localdev"
SECRET_SIG = rpc._special_secret_sig  # the marker Pulumi wraps secret values in
FAKE_KUBECONFIG = (
    "apiVersion: v1\nkind: Config\nclusters: []\nusers:\n- name: kind-localdev\n  user: {client-key-data: LS0tU0VDUkVU}\n"
)


@dataclass
class Registration:
    """One RegisterResource call as the engine receives it."""

    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]
    raw: dict[str, Any]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    retain_on_delete: bool
    delete_before_replace: bool
    additional_secret_outputs: list[str]
    provider: str

    def secret_paths(self) -> set[str]:
        """Top-level input names whose value contains a secret anywhere inside."""
        return {key for key, value in self.raw.items() if contains_secret(value)}


def is_secret(value: Any) -> bool:
    """Whether ``value`` is a secret as the engine receives it (Pulumi's secret wrapper around a value)."""
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == SECRET_SIG


def contains_secret(value: Any) -> bool:
    """Whether a secret is anywhere inside ``value``."""
    if isinstance(value, dict):
        return is_secret(value) or any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False


class ProgramMocks(pulumi.runtime.Mocks):
    """Provider stand-ins: echo inputs back, plus the outputs the program reads."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "command:local:Command":
            # Without stdout the kubeconfig resolves to None and its dependency edge disappears.
            state["stdout"] = FAKE_KUBECONFIG if "kind get kubeconfig" in str(args.inputs.get("create")) else ""
        if args.typ == "docker:index/remoteImage:RemoteImage":
            state["imageId"] = f"sha256:{'0' * 64}"
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"generated-{args.name}"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(mocks.MockMonitor):
    """A MockMonitor that keeps every registration and the stack outputs."""

    def __init__(self, mocks_: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks_)
        self.registrations: list[Registration] = []
        self.stack_outputs: dict[str, Any] = {}
        self.stack_outputs_raw: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    inputs=rpc.deserialize_properties(request.object),
                    raw=json_format.MessageToDict(request.object),
                    dependencies=list(request.dependencies),
                    property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                    retain_on_delete=bool(request.retainOnDelete),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    provider=request.provider,
                )
            )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        if request.urn.split("::")[2] == "pulumi:pulumi:Stack":
            self.stack_outputs = rpc.deserialize_properties(request.outputs)
            self.stack_outputs_raw = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)


@dataclass
class Graph:
    """What one run of the program registered."""

    registrations: list[Registration]
    outputs: dict[str, Any]
    outputs_raw: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    """What the program raised, when run with ``raise_errors=False``."""

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def named(self, name: str) -> Registration:
        found = [r for r in self.registrations if r.name == name]
        assert len(found) == 1, f"expected one resource named {name!r}, found {len(found)}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def commands(self) -> Iterator[Registration]:
        return iter(self.of_type("command:local:Command"))

    def depends_on(self, dependent: Registration, dependency: Registration) -> bool:
        """Whether ``dependent`` waits for ``dependency``, directly or through a property."""
        urns = set(dependent.dependencies)
        for deps in dependent.property_dependencies.values():
            urns.update(deps)
        return dependency.urn in urns


def _run_main() -> None:
    runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")


def run_program(
    config: Mapping[str, Any] | None = None,
    secret_keys: tuple[str, ...] = (),
    *,
    raise_errors: bool = True,
    program_mocks: ProgramMocks | None = None,
) -> Graph:
    """Run ``__main__.py`` under mocks with ``config`` (bare keys) and return its graph.

    ``program_mocks`` replaces the default provider stand-ins (the end-to-end executor passes
    mocks whose outputs are references it resolves on the real engine).
    """
    values = {f"{PROJECT}:{key}": value for key, value in (config or {}).items()}
    program_mocks = program_mocks or ProgramMocks()
    monitor = RecordingMonitor(program_mocks)
    pulumi.runtime.set_mocks(program_mocks, project=PROJECT, stack="dev", preview=False, monitor=monitor)
    # set_mocks opens a root stack of its own; run_in_stack below opens the one whose outputs we read.
    pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_all_config(values, [f"{PROJECT}:{key}" for key in secret_keys])
    previous = os.environ.get("LOCALDEV_SKIP_PREFLIGHT")
    os.environ["LOCALDEV_SKIP_PREFLIGHT"] = "1"
    error: BaseException | None = None
    try:
        _sync_await(run_in_stack(_run_main))
    except Exception as err:
        if raise_errors:
            raise
        error = err
    finally:
        if previous is None:
            os.environ.pop("LOCALDEV_SKIP_PREFLIGHT", None)
        else:
            os.environ["LOCALDEV_SKIP_PREFLIGHT"] = previous
    return Graph(monitor.registrations, monitor.stack_outputs, monitor.stack_outputs_raw, error)
