"""The decomposed layer normalization that exporters write before opset 17 → ``LayerNormalization``.

Matched: ``d = Sub(x, ReduceMean(x))``, ``var = ReduceMean(Pow(d, 2) or Mul(d, d))``,
``Div(d, Sqrt(Add(var, eps)))``, then optionally ``Mul`` by a constant gamma and ``Add`` of a
constant beta — both reductions over the same trailing axes with keepdims. float32 only
(LayerNormalization computes in float32, ``stash_type``). Fused only where a LayerNormalization
kernel serves the model's opset: the standard one from 17, onnxruntime's default-domain one before.
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.passes._match import Index, close, ints_input, other_input, rewrite_each
from onnxpy.registry import Registry


def fuse_layer_normalization(model: ir.Model, registry: Registry) -> bool:
    if registry.resolve("", "LayerNormalization", model.opset_imports.get("", 0)) is None:
        return False

    def rewrite(div: ir.Node, index: Index):
        match = _match(div, index) if div.op_type == "Div" and not div.domain else None
        if match is None:
            return None
        x, axis, eps, nodes, anchor, scale, bias = match
        return nodes, anchor, ir.Node("LayerNormalization", [x, scale, bias], list(anchor.outputs),
                                      {"axis": axis, "epsilon": eps}, name=f"{anchor.name or div.name}/layernorm")

    return rewrite_each(model.graph, rewrite)


def _match(div: ir.Node, index: Index):
    d, s = div.inputs
    sub, sqrt = index.op(d, "Sub"), index.op(s, "Sqrt")
    add_eps = index.op(sqrt.inputs[0], "Add") if sqrt is not None and index.private(s) else None
    if sub is None or add_eps is None or not index.private(add_eps.outputs[0]):
        return None
    x, mean = sub.inputs
    mean_node = index.op(mean, "ReduceMean")
    var = next((n for n in add_eps.inputs if index.op(n, "ReduceMean")), None)
    if mean_node is None or var is None or mean_node.inputs[0] != x or index.dtype(x) != np.float32:
        return None
    eps = index.scalar(other_input(add_eps, var), x)
    var_node = index.op(var, "ReduceMean")
    square = index.op(var_node.inputs[0], "Pow", "Mul")
    axes = [_axes(n, index, x) for n in (mean_node, var_node)]
    if (eps is None or square is None or axes[0] is None or axes[0] != axes[1]
            or not all(index.private(n) for n in (mean, var, var_node.inputs[0]))):
        return None
    if square.op_type == "Pow" and (square.inputs[0] != d or not close(index.scalar(square.inputs[1], x), 2.0)):
        return None
    if square.op_type == "Mul" and square.inputs != [d, d]:
        return None
    if d in index.pinned or {id(n) for n in index.readers[d]} != {id(square), id(div)}:
        return None
    nodes = [mean_node, sub, square, var_node, add_eps, sqrt, div]
    scale, bias, anchor = _affine(div, index, nodes, axes[0])
    if scale is None:
        return None
    return x, -axes[0], eps, nodes, anchor, scale, bias


def _axes(reduce: ir.Node, index: Index, x: str) -> int | None:
    """How many trailing axes a keepdims ReduceMean over ``x`` reduces (None if not trailing)."""
    axes = ints_input(index, reduce, 1, "axes")
    shape = index.shape(x)
    if not axes or reduce.attributes.get("keepdims", 1) != 1:
        return None
    if any(a < 0 for a in axes):
        return len(axes) if sorted(axes) == list(range(-len(axes), 0)) else None
    if shape is None or sorted(axes) != list(range(len(shape) - len(axes), len(shape))):
        return None
    return len(axes)


def _affine(div: ir.Node, index: Index, nodes: list[ir.Node], k: int):
    """The gamma/beta that follow (ones/zeros when absent); extends ``nodes``; returns
    (scale name, bias name or "", anchor node) or (None, None, None)."""
    graph, anchor, scale, bias = index.graph, div, None, ""
    reader = index.readers[div.outputs[0]][0] if index.private(div.outputs[0]) else None
    if reader is not None and reader.op_type == "Mul" and not reader.domain:
        gamma = other_input(reader, div.outputs[0])
        if gamma is not None and _param(index, gamma, div.inputs[0], k):
            anchor, scale = reader, gamma
            nodes.append(reader)
    reader = index.readers[anchor.outputs[0]][0] if scale and index.private(anchor.outputs[0]) else None
    if reader is not None and reader.op_type == "Add" and not reader.domain:
        beta = other_input(reader, anchor.outputs[0])
        if beta is not None and _param(index, beta, div.inputs[0], k):
            anchor, bias = reader, beta
            nodes.append(reader)
    if scale is None:
        shape = index.shape(div.inputs[0])
        trailing = shape[len(shape) - k:] if shape is not None else None
        if trailing is None or not all(isinstance(d, int) for d in trailing):
            return None, None, None
        scale = f"{div.outputs[0]}__layernorm_scale"
        graph.initializers[scale] = np.ones(trailing, np.float32)
    return scale, bias, anchor


def _param(index: Index, name: str, d: str, k: int) -> bool:
    """A float32 constant shaped like the ``k`` normalized (static) axes of ``d``."""
    value, shape = index.const(name), index.shape(d)
    return value is not None and value.dtype == np.float32 and shape is not None and value.shape == tuple(shape[-k:])
