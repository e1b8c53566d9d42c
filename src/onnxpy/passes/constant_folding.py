"""Evaluate nodes whose inputs are all constants once, at session creation, with the kernels.

``Shape`` of a value whose shape is fully known folds too. Random and sequence-producing ops,
nodes with subgraphs, and results larger than ``MAX_FOLDED_BYTES`` are left alone.
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.passes._uses import fixed_inputs
from onnxpy.registry import Registry

NOT_FOLDED = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial",
    "If", "Loop", "Scan", "SequenceMap",
})
MAX_FOLDED_BYTES = 16 << 20


def fold_constants(model: ir.Model, registry: Registry) -> bool:
    from onnxpy.executor import execute
    from onnxpy.plan import build, node_opset

    graph = model.graph
    constants = fixed_inputs(graph)
    keep, changed = [], False
    for node in graph.nodes:
        static_shape = _static_shape(node, graph)
        foldable = (
            not node.domain and node.op_type not in NOT_FOLDED and not any(node.subgraphs())
            and all(n in constants for n in node.inputs if n) and node.inputs
        )
        if static_shape is not None:
            graph.initializers[node.outputs[0]] = static_shape
            constants.add(node.outputs[0])
            changed = True
            continue
        if not foldable or registry.resolve(node.domain, node.op_type, node_opset(node, model.opset_imports)) is None:
            keep.append(node)
            continue
        single = ir.Graph("fold", [], [ir.ValueInfo(o) for o in node.outputs if o], [node],
                          {n: graph.initializers[n] for n in node.inputs if n})
        try:
            results = execute(build(single, model.opset_imports, registry), [])
        except Exception:  # noqa: BLE001 - a node that fails here fails at run time, with context
            keep.append(node)
            continue
        if not all(isinstance(r, np.ndarray) and r.nbytes <= MAX_FOLDED_BYTES for r in results):
            keep.append(node)
            continue
        for name, value in zip((o for o in node.outputs if o), results):
            graph.initializers[name] = value
            constants.add(name)
        changed = True
    graph.nodes = keep
    return changed


def _static_shape(node: ir.Node, graph: ir.Graph) -> np.ndarray | None:
    """The folded value of a ``Shape`` node whose input shape is fully static, else None."""
    if node.op_type != "Shape" or node.domain or len(node.outputs) != 1:
        return None
    info = graph.value_info.get(node.inputs[0])
    if info is None:
        info = next((v for v in graph.inputs if v.name == node.inputs[0]), None)
    t = info.type if info is not None else None
    if not isinstance(t, ir.TensorType) or t.shape is None or not all(isinstance(d, int) for d in t.shape):
        return None
    shape = np.array(t.shape, dtype=np.int64)
    rank = len(shape)
    start = node.attributes.get("start", 0)
    end = node.attributes.get("end", rank)
    start, end = (min(max(v + rank if v < 0 else v, 0), rank) for v in (start, end))
    return shape[start:end]
