"""``MatMul(Softmax(MatMul(Q, K) [+ B]), V)`` → ``ai.onnxpy::AttentionCore(Q, K, V[, B])``.

The unfused graph writes the (..., S, L) score tensor to memory and reads it back three times
(bias, softmax, the second product): for Whisper's 1500 positions, 54 MB per layer. The fused
kernel makes the scores a block of query rows at a time and finishes them while they are in cache.
onnxruntime has no operator for this pattern on 4-D inputs (its attention operators take the
projections or 3-D packed heads), so the node is onnxpy's own: a model saved after this pass runs
in onnxpy only.

The softmax must be over the last axis, the values float32 or float64, and the scores, the
biased scores and the probabilities each read by the next node only. A ``Mul`` of Q or K by a
constant number (the TorchScript exporter scales both by the fourth root of the head size, each a
pass over a copy) is folded into the node's ``scale``, which multiplies the scores instead.
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.passes._match import ONNXPY, Index, import_domain, other_input, rewrite_each
from onnxpy.registry import Registry

FLOATS = frozenset(np.dtype(t) for t in (np.float32, np.float64))


def fuse_attention(model: ir.Model, registry: Registry) -> bool:
    if registry.resolve(ONNXPY, "AttentionCore", 1) is None:
        return False

    default_axis = -1 if model.opset_imports.get("", 0) >= 13 else 1  # Softmax's axis before opset 13: 1

    def rewrite(matmul: ir.Node, index: Index):
        if matmul.op_type != "MatMul" or matmul.domain:
            return None
        found = _match(matmul, index, default_axis)
        if found is None:
            return None
        inputs, nodes, scale = found
        import_domain(model, ONNXPY)
        return nodes, matmul, ir.Node("AttentionCore", inputs, list(matmul.outputs),
                                      {"scale": scale} if scale != 1.0 else {}, domain=ONNXPY,
                                      name=f"{matmul.name}/attention")

    return rewrite_each(model.graph, rewrite)


def _match(matmul: ir.Node, index: Index, default_axis: int):
    """([Q, K, V(, B)], nodes, scale) for ``MatMul(Softmax(MatMul(Q, K) [+ B]), V)`` ending at
    ``matmul``, Q and K taken from before a private ``Mul`` by a constant number (their product the
    scale). Before opset 13 Softmax flattens the axes from ``axis`` on, the same as the last axis
    alone only when ``axis`` is the last one."""
    probs, v = matmul.inputs
    softmax = index.op(probs, "Softmax")
    if softmax is None or not index.private(probs):
        return None
    rank = len(index.shape(probs) or ())
    if softmax.attributes.get("axis", default_axis) not in (-1, rank - 1 if rank else -1):
        return None
    scores = softmax.inputs[0]
    nodes, bias = [softmax, matmul], []
    add = index.op(scores, "Add")
    if add is not None:
        product = next((n for n in add.inputs if index.op(n, "MatMul")), None)
        if product is None or not index.private(scores):
            return None
        nodes.append(add)
        bias = [other_input(add, product)]
        scores = product
    first = index.op(scores, "MatMul")
    if first is None or not index.private(scores) or index.dtype(scores) not in FLOATS:
        return None
    (q, q_scale, q_nodes), (k, k_scale, k_nodes) = (_unscaled(name, index) for name in first.inputs)
    return [q, k, v, *bias], nodes + [first, *q_nodes, *k_nodes], q_scale * k_scale


def _unscaled(name: str, index: Index) -> tuple[str, float, list[ir.Node]]:
    """(x, c, [the Mul]) where ``name`` is a private ``Mul(x, c)`` (either order) by a constant
    number c of its dtype, else (name, 1.0, [])."""
    mul = index.op(name, "Mul") if index.private(name) else None
    for operand in (mul.inputs if mul is not None and len(mul.inputs) == 2 else []):
        other = other_input(mul, operand)
        factor = index.scalar(operand, other)
        if factor is not None and index.dtype(operand) == index.dtype(name):
            return other, factor, [mul]
    return name, 1.0, []
