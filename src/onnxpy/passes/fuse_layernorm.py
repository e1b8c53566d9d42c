"""The decomposed layer normalization that exporters write before opset 17 → ``LayerNormalization``,
and its RMS form (T5, LLaMA) → ``SimplifiedLayerNormalization``.

Matched: ``d = Sub(x, ReduceMean(x))``, ``var = ReduceMean(Pow(d, 2) or Mul(d, d))``,
``Div(d, Sqrt(Add(var, eps)))``, then optionally ``Mul`` by a constant gamma and ``Add`` of a
constant beta — both reductions over the same trailing axes with keepdims. The RMS form:
``x / Sqrt(Add(ReduceMean(Pow(x, 2) or Mul(x, x)), eps))`` (or x times its ``Reciprocal``, or
times ``Div(1, ...)``), then optionally ``Mul`` by a constant gamma. float32 only
(LayerNormalization computes in float32, ``stash_type``). Fused only where a kernel serves the
model's opset: LayerNormalization the standard one from 17, onnxruntime's default-domain one
before; SimplifiedLayerNormalization onnxruntime's default-domain one (which its own optimizer
writes for this pattern).
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.passes._match import Index, close, ints_input, other_input, rewrite_each
from onnxpy.registry import Registry


def fuse_layer_normalization(model: ir.Model, registry: Registry) -> bool:
    opset = model.opset_imports.get("", 0)
    full = registry.resolve("", "LayerNormalization", opset) is not None
    rms = registry.resolve("", "SimplifiedLayerNormalization", opset) is not None

    def rewrite(node: ir.Node, index: Index):
        if node.domain or node.op_type not in ("Div", "Mul"):
            return None
        match = _match(node, index) if full and node.op_type == "Div" else None
        op = "LayerNormalization"
        if match is None and rms:
            match, op = _match_rms(node, index), "SimplifiedLayerNormalization"
        if match is None:
            return None
        x, axis, eps, nodes, anchor, scale, bias = match
        return nodes, anchor, ir.Node(op, [x, scale, bias] if bias else [x, scale], list(anchor.outputs),
                                      {"axis": axis, "epsilon": eps}, name=f"{anchor.name or node.name}/layernorm")

    return (full or rms) and rewrite_each(model.graph, rewrite)


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
    scale, bias, anchor = _affine(div, d, index, nodes, axes[0])
    if scale is None:
        return None
    return x, -axes[0], eps, nodes, anchor, scale, bias


def _match_rms(node: ir.Node, index: Index):
    """``node`` as the division of x by its root mean square (see the module's docstring)."""
    if node.op_type == "Div":
        candidates = [(node.inputs[0], node.inputs[1], None)]
    else:
        candidates = []
        for x, r in (node.inputs, node.inputs[::-1]):
            inverse = index.op(r, "Reciprocal", "Div") if index.private(r) else None
            if inverse is not None and inverse.op_type == "Reciprocal":
                candidates.append((x, inverse.inputs[0], inverse))
            elif inverse is not None and close(index.scalar(inverse.inputs[0], x), 1.0):
                candidates.append((x, inverse.inputs[1], inverse))
    for x, s, inverse in candidates:
        sqrt = index.op(s, "Sqrt") if index.private(s) else None
        add_eps = index.op(sqrt.inputs[0], "Add") if sqrt is not None and index.private(sqrt.inputs[0]) else None
        var = next((n for n in add_eps.inputs if index.op(n, "ReduceMean")), None) if add_eps else None
        if var is None or not index.private(var) or index.dtype(x) != np.float32:
            continue
        eps, var_node = index.scalar(other_input(add_eps, var), x), index.op(var, "ReduceMean")
        square = index.op(var_node.inputs[0], "Pow", "Mul") if index.private(var_node.inputs[0]) else None
        axes = _axes(var_node, index, x)
        if eps is None or square is None or axes is None or square.inputs[0] != x:
            continue
        if square.inputs[1] != x and not (square.op_type == "Pow" and close(index.scalar(square.inputs[1], x), 2.0)):
            continue
        nodes = [square, var_node, add_eps, sqrt] + ([inverse] if inverse else []) + [node]
        scale, _, anchor = _affine(node, x, index, nodes, axes, with_bias=False)
        if scale is not None:
            return x, -axes, eps, nodes, anchor, scale, ""
    return None


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


def _affine(div: ir.Node, like: str, index: Index, nodes: list[ir.Node], k: int, with_bias: bool = True):
    """The gamma (and with ``with_bias`` beta) that follow the normalized ``div`` (ones/zeros when
    absent), shaped like the last ``k`` axes of ``like``; extends ``nodes``; returns (scale name,
    bias name or "", anchor node) or (None, None, None)."""
    graph, anchor, scale, bias = index.graph, div, None, ""
    reader = index.readers[div.outputs[0]][0] if index.private(div.outputs[0]) else None
    if reader is not None and reader.op_type == "Mul" and not reader.domain:
        gamma = other_input(reader, div.outputs[0])
        if gamma is not None and _param(index, gamma, like, k):
            anchor, scale = reader, gamma
            nodes.append(reader)
    reader = index.readers[anchor.outputs[0]][0] if with_bias and scale and index.private(anchor.outputs[0]) else None
    if reader is not None and reader.op_type == "Add" and not reader.domain:
        beta = other_input(reader, anchor.outputs[0])
        if beta is not None and _param(index, beta, like, k):
            anchor, bias = reader, beta
            nodes.append(reader)
    if scale is None:
        shape = index.shape(like)
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
