"""``Add(MatMul(A, B), C)`` → ``Gemm(A, B, C)`` when A is 2-D, B a 2-D constant and C a
constant bias that broadcasts to the last dim (shape ``(N,)``, ``(1, N)`` or a scalar).

Gemm adds the bias into the product in place, saving one temporary of the output's size.
Float types only (Gemm before opset 11 has no integer types); the MatMul must have no other reader.
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.passes._match import Index, column_bias, other_input, rewrite_each
from onnxpy.registry import Registry

FLOATS = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64))


def fuse_matmul_add(model: ir.Model, registry: Registry) -> bool:
    if model.opset_imports.get("", 0) < 7:
        return False
    return rewrite_each(model.graph, _rewrite)


def _rewrite(add: ir.Node, index: Index):
    if add.op_type != "Add" or add.domain or len(add.inputs) != 2:
        return None
    matmul = next((index.op(n, "MatMul") for n in add.inputs if index.op(n, "MatMul")), None)
    if matmul is None or not index.private(matmul.outputs[0]):
        return None
    a, b = matmul.inputs
    bias = index.const(other_input(add, matmul.outputs[0]) or "")
    weight = index.const(b)
    shape = index.shape(a)
    if (weight is None or weight.ndim != 2 or shape is None or len(shape) != 2 or weight.dtype not in FLOATS
            or column_bias(bias, weight.shape[1]) is None or bias.dtype != weight.dtype):
        return None
    gemm = ir.Node("Gemm", [a, b, other_input(add, matmul.outputs[0])], list(add.outputs),
                   name=f"{add.name or matmul.name}/gemm")
    return [matmul, add], add, gemm
