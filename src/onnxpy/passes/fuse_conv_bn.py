"""Fold an inference-mode BatchNormalization into the Conv that feeds it.

``BN(Conv(x, W, b)) = Conv(x, W * s, (b - mean) * s + B)`` with ``s = scale / sqrt(var + eps)``,
per output channel. Applies when the weights and BN parameters are constants and the Conv output
has no other reader.
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.passes._uses import fixed_inputs, used_names
from onnxpy.registry import Registry


def fuse_conv_batchnorm(model: ir.Model, registry: Registry) -> bool:
    graph = model.graph
    constants = fixed_inputs(graph)
    readers: dict[str, int] = {}
    for node in graph.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    outputs = {v.name for v in graph.outputs}
    producer = {o: n for n in graph.nodes for o in n.outputs}
    removed, changed = set(), False
    for bn in graph.nodes:
        conv = producer.get(bn.inputs[0]) if bn.op_type == "BatchNormalization" and not bn.domain else None
        if conv is None or conv.op_type != "Conv" or conv.domain or not _foldable(conv, bn, constants, readers, outputs):
            continue
        init = graph.initializers
        w = init[conv.inputs[1]]
        scale, bias, mean, var = (init[n].astype(np.float64) for n in bn.inputs[1:5])
        s = scale / np.sqrt(var + bn.attributes.get("epsilon", 1e-5))
        b = init[conv.inputs[2]].astype(np.float64) if len(conv.inputs) > 2 and conv.inputs[2] else 0.0
        w_name, b_name = f"{conv.outputs[0]}__bn_weight", f"{conv.outputs[0]}__bn_bias"
        init[w_name] = (w.astype(np.float64) * s.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        init[b_name] = ((b - mean) * s + bias).astype(w.dtype)
        conv.inputs = [conv.inputs[0], w_name, b_name]
        conv.outputs = [bn.outputs[0]]
        removed.add(id(bn))
        changed = True
    if changed:
        graph.nodes = [n for n in graph.nodes if id(n) not in removed]
        used = used_names(graph)
        for name in [k for k in graph.initializers if k not in used and k not in {v.name for v in graph.inputs}]:
            del graph.initializers[name]
    return changed


def _foldable(conv: ir.Node, bn: ir.Node, constants: set[str], readers: dict[str, int], outputs: set[str]) -> bool:
    inference = len([o for o in bn.outputs if o]) == 1 and not bn.attributes.get("training_mode", 0)
    params = bn.inputs[1:5]
    weights = [n for n in conv.inputs[1:] if n]
    return (inference and bn.attributes.get("spatial", 1) == 1 and len(params) == 4
            and all(n in constants for n in params + weights)
            and readers.get(conv.outputs[0], 0) == 1 and conv.outputs[0] not in outputs)
