"""Fold an inference-mode BatchNormalization into the Conv that feeds it.

``BN(Conv(x, W, b)) = Conv(x, W * s, (b - mean) * s + B)`` with ``s = scale / sqrt(var + eps)``,
per output channel. Applies when the weights and BN parameters are constants and the Conv output
has no other reader. The replaced weights are left to dead-code elimination.
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.passes._match import Index
from onnxpy.registry import Registry


def fuse_conv_batchnorm(model: ir.Model, registry: Registry) -> bool:
    graph = model.graph
    index = Index(graph)
    removed, changed = set(), False
    for bn in graph.nodes:
        conv = index.op(bn.inputs[0], "Conv") if bn.op_type == "BatchNormalization" and not bn.domain else None
        if conv is None or not _foldable(conv, bn, index):
            continue
        w = index.const(conv.inputs[1])
        scale, bias, mean, var = (index.const(n).astype(np.float64) for n in bn.inputs[1:5])
        s = scale / np.sqrt(var + bn.attributes.get("epsilon", 1e-5))
        b = index.const(conv.inputs[2]).astype(np.float64) if len(conv.inputs) > 2 and conv.inputs[2] else 0.0
        w_name, b_name = f"{conv.outputs[0]}__bn_weight", f"{conv.outputs[0]}__bn_bias"
        graph.initializers[w_name] = (w.astype(np.float64) * s.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        graph.initializers[b_name] = ((b - mean) * s + bias).astype(w.dtype)
        conv.inputs = [conv.inputs[0], w_name, b_name]
        conv.outputs = [bn.outputs[0]]
        removed.add(id(bn))
        changed = True
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return changed


def _foldable(conv: ir.Node, bn: ir.Node, index: Index) -> bool:
    inference = len([o for o in bn.outputs if o]) == 1 and not bn.attributes.get("training_mode", 0)
    params = bn.inputs[1:5]
    weights = [n for n in conv.inputs[1:] if n]
    return (inference and bn.attributes.get("spatial", 1) == 1 and len(params) == 4
            and all(index.const(n) is not None for n in params + weights) and index.private(conv.outputs[0]))
