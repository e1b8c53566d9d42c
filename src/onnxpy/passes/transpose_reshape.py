"""Cancel layout ops that undo or repeat each other.

``Transpose(Transpose(x, p), q)`` is one ``Transpose`` with the composed permutation, or ``x``
when that is the identity; ``Reshape(Reshape(x, s), t)`` is ``Reshape(x, t)`` when ``t`` is a
constant without 0 entries (a 0 copies a dim of its own input); ``Squeeze(Unsqueeze(x, a), a)``
and ``Unsqueeze(Squeeze(x, a), a)`` are ``x`` (Squeeze checks those dims are 1). The inner node
goes unless something else reads it.
"""
from __future__ import annotations

from onnxpy import ir
from onnxpy.passes._match import Index, ints_input
from onnxpy.passes._uses import rename_uses
from onnxpy.registry import Registry


def cancel_transposes_reshapes(model: ir.Model, registry: Registry) -> bool:
    graph = model.graph
    index = Index(graph)
    removed: set[int] = set()
    changed = False
    for node in graph.nodes:
        if node.domain or not node.inputs or not node.inputs[0]:
            continue
        inner = index.producer.get(node.inputs[0])
        if inner is None or inner.domain or id(inner) in removed:
            continue
        if node.op_type == "Transpose" and inner.op_type == "Transpose":
            done = _compose_transposes(node, inner, index, removed)
        elif node.op_type == "Reshape" and inner.op_type == "Reshape":
            done = _merge_reshapes(node, inner, index)
        elif {node.op_type, inner.op_type} == {"Squeeze", "Unsqueeze"}:
            done = _cancel_squeeze(node, inner, index, removed)
        else:
            continue
        if done and index.private(inner.outputs[0]):
            removed.add(id(inner))
        changed |= done
    if removed:
        graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return changed


def _bypass(node: ir.Node, source: str, index: Index, removed: set[int]) -> bool:
    """Make the readers of ``node``'s output read ``source``; not for graph outputs."""
    out = node.outputs[0]
    if out in {v.name for v in index.graph.outputs}:
        return False
    rename_uses(index.graph, {out: source})
    removed.add(id(node))
    return True


def _compose_transposes(node: ir.Node, inner: ir.Node, index: Index, removed: set[int]) -> bool:
    shape = index.shape(inner.inputs[0])
    rank = len(shape) if shape is not None else None
    perms = [n.attributes.get("perm") for n in (inner, node)]
    if any(p is None for p in perms):
        if rank is None:
            return False
        perms = [list(p) if p is not None else list(range(rank))[::-1] for p in perms]
    first, second = perms
    if len(first) != len(second):
        return False
    composed = [first[p] for p in second]
    if composed == list(range(len(composed))):
        return _bypass(node, inner.inputs[0], index, removed)
    node.inputs = [inner.inputs[0]]
    node.attributes = {**node.attributes, "perm": composed}
    return True


def _merge_reshapes(node: ir.Node, inner: ir.Node, index: Index) -> bool:
    if len(node.inputs) < 2 or len(inner.inputs) < 2:  # Reshape-1 has a shape attribute
        return False
    target = index.const(node.inputs[1])
    if target is None or (target == 0).any():
        return False
    node.inputs = [inner.inputs[0], node.inputs[1]]
    return True


def _cancel_squeeze(node: ir.Node, inner: ir.Node, index: Index, removed: set[int]) -> bool:
    axes = [ints_input(index, n, 1, "axes") for n in (inner, node)]
    if any(a is None for a in axes):
        return False
    wide = inner.outputs[0] if inner.op_type == "Unsqueeze" else inner.inputs[0]
    shape = index.shape(wide)
    if any(v < 0 for a in axes for v in a):
        if shape is None:
            return False
        axes = [[v + len(shape) if v < 0 else v for v in a] for a in axes]
    if sorted(axes[0]) != sorted(axes[1]):
        return False
    return _bypass(node, inner.inputs[0], index, removed)
