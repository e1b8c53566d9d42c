"""Common-subexpression elimination: nodes with the same op, domain, opset, inputs and
attributes compute the same values, so one node serves every reader.

Nondeterministic ops and nodes with subgraphs are never merged; a duplicate whose output is a
graph output stays (renaming it would change the model's interface).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from onnxpy import ir
from onnxpy.passes._uses import rename_uses
from onnxpy.plan import toposort
from onnxpy.registry import Registry

NONDETERMINISTIC = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial", "Dropout",
})


def eliminate_common_subexpressions(model: ir.Model, registry: Registry) -> bool:
    graph = model.graph
    outputs = {v.name for v in graph.outputs}
    available = {v.name for v in graph.inputs} | set(graph.initializers)
    try:
        order = toposort(graph, available)
    except Exception:  # noqa: BLE001 - a malformed graph is reported by the planner, not here
        return False
    seen: dict[tuple, ir.Node] = {}
    alias: dict[str, str] = {}
    removed: set[int] = set()
    for node in order:  # readers come after producers, so each sees its inputs' final names
        node.inputs = [alias.get(n, n) for n in node.inputs]
        for sub in node.subgraphs():
            rename_uses(sub, {old: alias[old] for old in sub.outer_references() & alias.keys()})
        key = _key(node)
        if key is None:
            continue
        first = seen.setdefault(key, node)
        if first is node or any(o in outputs for o in node.outputs if o):
            continue
        alias.update((mine, theirs) for mine, theirs in zip(node.outputs, first.outputs) if mine)
        removed.add(id(node))
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return bool(removed)


def _key(node: ir.Node) -> tuple | None:
    if (node.op_type in NONDETERMINISTIC and not node.domain) or any(node.subgraphs()) or node.attribute_refs:
        return None
    attrs = tuple(sorted((k, _frozen(v)) for k, v in node.attributes.items()))
    return (node.domain, node.op_type, node.opset, tuple(node.inputs), tuple(bool(o) for o in node.outputs), attrs)


def _frozen(value: Any) -> Any:
    """A hashable stand-in for an attribute value (arrays by dtype, shape and bytes)."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value
