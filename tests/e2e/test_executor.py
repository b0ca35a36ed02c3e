"""The executor's own rules, without an engine: plan from a graph, order, replace-or-update."""

from __future__ import annotations

from typing import Any

import pytest

from tests.program import Graph, Registration

from .executor import COMMAND, CONTAINER, ExecutorError, _replaces, adversarial_order, plan_from_graph, ref


def _reg(resource: str, type_: str, deps: tuple[str, ...] = (), **inputs: Any) -> Registration:
    return Registration(
        type=type_, name=resource, urn=f"urn:{resource}", parent="", inputs=inputs, raw={},
        dependencies=[f"urn:{d}" for d in deps], property_dependencies={}, retain_on_delete=False,
        delete_before_replace=False, additional_secret_outputs=[], provider="",
    )  # fmt: skip


def test_independent_resources_run_as_late_as_possible_and_dependencies_first() -> None:
    graph = Graph(
        [
            _reg("registry", CONTAINER, name="r", image="i"),
            _reg("cluster", COMMAND, create="true"),
            _reg("attach", COMMAND, ("cluster", "registry"), create="true"),
            _reg("wiring", COMMAND, ("cluster",), create="true"),
        ],
        {},
    )
    order = [r.name for r in adversarial_order(plan_from_graph(graph).resources)]
    # Registered first, needed only by attach: it runs right before attach, after the cluster and wiring.
    assert order == ["cluster", "wiring", "registry", "attach"]


def test_reading_an_output_without_depending_on_it_is_refused() -> None:
    cluster = _reg("cluster", COMMAND, create="true")
    wiring = _reg("wiring", COMMAND, create="true", triggers=[ref(f"{COMMAND}::cluster", "id")])
    with pytest.raises(ExecutorError, match="without depending on it"):
        plan_from_graph(Graph([cluster, wiring], {}))


def test_an_input_the_executor_does_not_implement_is_refused() -> None:
    with pytest.raises(ExecutorError, match="does not implement"):
        plan_from_graph(Graph([_reg("c", CONTAINER, name="c", image="i", privileged=True)], {}))


def test_commands_replace_on_triggers_and_update_otherwise_containers_always_replace() -> None:
    assert _replaces(COMMAND, {"create": "a", "triggers": ["1"]}, {"create": "a", "triggers": ["2"]})
    assert not _replaces(COMMAND, {"create": "a", "triggers": ["1"]}, {"create": "b", "triggers": ["1"]})
    assert not _replaces(COMMAND, {"triggers": ["1"], "update": "u"}, {"triggers": ["2"], "update": "u"})
    assert _replaces(CONTAINER, {"name": "a"}, {"name": "a", "restart": "no"})
