"""Evaluate nodes whose inputs are all constants once, at session creation, with the kernels.

(``Shape`` of statically known dims is shape_folding's job.) Random and sequence-producing ops,
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
        foldable = (
            not node.domain and node.op_type not in NOT_FOLDED and not any(node.subgraphs())
            and all(n in constants for n in node.inputs if n)
        )
        if not foldable or registry.resolve(node.domain, node.op_type, node_opset(node, model.opset_imports)) is None:
            keep.append(node)
            continue
        single = ir.Graph("fold", [], [ir.ValueInfo(o) for o in node.outputs if o], [node],
                          {n: graph.initializers[n] for n in node.inputs if n})
        try:
            with np.errstate(all="ignore"):  # inf and nan follow ONNX semantics, silently, as in a run
                results = execute(build(single, model.opset_imports, registry), [])
        except Exception:  # noqa: BLE001 - a node that fails here fails at run time, with context
            keep.append(node)
            continue
        if not all(isinstance(r, np.ndarray) and r.nbytes <= MAX_FOLDED_BYTES for r in results):
            keep.append(node)
            continue
        for name, value in zip((o for o in node.outputs if o), results):
            # a view (a folded Transpose's) is stored C-contiguous: each run's readers then read it
            # in order (T5's position bias, transposed, is added to every layer's scores: 111 -> 44 us a layer)
            graph.initializers[name] = value if value.flags.c_contiguous else value.copy()
            constants.add(name)
        changed = True
    graph.nodes = keep
    return changed

