"""A squeeze-and-excitation block → ``ai.onnxpy::SqueezeExcite`` (where its kernel is registered):
``Mul(x, gate)`` where ``gate`` is a 1x1 convolution of a 1x1 convolution of ``GlobalAveragePool(x)``
(or of a ``ReduceMean`` of x over its spatial axes, keeping them, as the dynamo exporter writes it),
each a ``Conv`` or a ``FusedConv`` of either domain (with its activation, without ``Z``), of one group,
unpadded, at stride and dilation 1, with constant float32 or float64 weights (R, C, 1...) and (C, R,
1...) and constant biases, every intermediate read by the next node only. MobileNetV3, EfficientNet
and the like carry one per block; fused, four nodes of a few microseconds of arithmetic each become
one (``ops/contrib.py``).
"""
from __future__ import annotations

import math

import numpy as np

from onnxpy import ir
from onnxpy.passes._match import ONNXPY, Index, import_domain, ints_input, rewrite_each
from onnxpy.registry import Registry

CONVOLUTIONS = {("", "Conv"), ("com.microsoft", "FusedConv"), (ONNXPY, "FusedConv")}
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def fuse_squeeze_excite(model: ir.Model, registry: Registry) -> bool:
    if registry.resolve(ONNXPY, "SqueezeExcite", 1) is None:
        return False

    def rewrite(mul: ir.Node, index: Index):
        if mul.op_type != "Mul" or mul.domain or len(mul.inputs) != 2:
            return None
        for gate, x in (mul.inputs, mul.inputs[::-1]):
            found = _block(gate, x, index)
            if found is not None:
                pool, first, second = found
                import_domain(model, ONNXPY)
                attrs = {f"activation{i}{suffix}": conv.attributes[f"activation{suffix}"]
                         for i, conv in enumerate((first, second), 1) for suffix in ("", "_params")
                         if f"activation{suffix}" in conv.attributes}
                inputs = [x, *_weights(first), *_weights(second)]
                return [pool, first, second, mul], mul, ir.Node("SqueezeExcite", inputs, list(mul.outputs), attrs,
                                                                domain=ONNXPY, name=f"{mul.name}/squeeze_excite")
        return None

    return rewrite_each(model.graph, rewrite)


def _block(gate: str, x: str, index: Index) -> tuple[ir.Node, ir.Node, ir.Node] | None:
    """The GlobalAveragePool and the two convolutions producing ``gate`` from ``x``, if they match."""
    second = _pointwise(gate, index)
    first = None if second is None else _pointwise(second.inputs[0], index)
    w1 = None if first is None else index.const(first.inputs[1])
    pool = None if first is None else _spatial_mean(first.inputs[0], w1.ndim, index)
    if pool is None or pool.inputs[0] != x or not index.private(pool.outputs[0]):
        return None
    w2 = index.const(second.inputs[1])
    if w1.shape[0] != w2.shape[1] or w1.shape[1] != w2.shape[0] or w1.dtype != w2.dtype:
        return None
    return pool, first, second


def _spatial_mean(name: str, rank: int, index: Index) -> ir.Node | None:
    """The node producing ``name`` if it is a GlobalAveragePool, or a ReduceMean over every spatial
    axis of its rank-``rank`` input keeping them (as the dynamo exporter writes the pool)."""
    node = index.op(name, "GlobalAveragePool", "ReduceMean")
    if node is None or node.op_type == "GlobalAveragePool":
        return node
    axes = ints_input(index, node, 1, "axes")
    if axes is None or not node.attributes.get("keepdims", 1):
        return None
    return node if sorted(a % rank for a in axes) == list(range(2, rank)) else None


def _pointwise(name: str, index: Index) -> ir.Node | None:
    """The convolution producing ``name``, read by one node only, if it is a 1x1 convolution of one
    group, unpadded, at stride and dilation 1, without ``Z``, with a constant floating-point weight
    and a constant bias or none."""
    conv = index.producer.get(name)
    if conv is None or (conv.domain, conv.op_type) not in CONVOLUTIONS or not index.private(name):
        return None
    inputs = conv.inputs + [""] * (4 - len(conv.inputs))
    w = index.const(inputs[1])
    attrs = conv.attributes
    if (w is None or w.dtype not in FLOATS or w.ndim < 3 or math.prod(w.shape[2:]) != 1 or inputs[3]
            or (inputs[2] and index.const(inputs[2]) is None) or attrs.get("group", 1) != 1
            or any(attrs.get("pads", [])) or any(v != 1 for key in ("strides", "dilations")
                                                    for v in attrs.get(key, []))):
        return None
    return conv


def _weights(conv: ir.Node) -> list[str]:
    """The convolution's weight and bias inputs (the bias '' when it has none)."""
    return [conv.inputs[1], conv.inputs[2] if len(conv.inputs) > 2 else ""]
