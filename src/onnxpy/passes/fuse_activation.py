"""``Conv`` followed by an activation, by an ``Add`` of a same-shaped tensor (a residual), or by
both → ``com.microsoft::FusedConv`` (the added tensor is its input ``Z``), only when the registry
has a FusedConv kernel (contrib ops are optional); otherwise the pass changes nothing.

Activations and their ``activation_params`` follow onnxruntime's FusedConv: Relu, Tanh, Sigmoid,
LeakyRelu [alpha], HardSigmoid [alpha, beta], Clip [min, max] (constant bounds).
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.passes._match import Index, import_domain, rewrite_each
from onnxpy.registry import Registry

DEFAULTS = {"Relu": [], "Tanh": [], "Sigmoid": [], "LeakyRelu": [("alpha", 0.01)],
            "HardSigmoid": [("alpha", 0.2), ("beta", 0.5)]}


def fuse_conv_activation(model: ir.Model, registry: Registry) -> bool:
    if registry.resolve("com.microsoft", "FusedConv", 1) is None:
        return False

    def rewrite(node: ir.Node, index: Index):
        if node.domain or not node.inputs:
            return None
        if node.op_type == "Add":
            readers = index.readers.get(node.outputs[0], [])
            if (index.private(node.outputs[0]) and not readers[0].domain and readers[0].inputs[0] == node.outputs[0]
                    and _params(readers[0], index) is not None):
                return None  # the activation after it takes the Add too
            conv, z = _residual(node, index)
            return None if conv is None else fuse([conv, node], conv, z, node, None, [])
        params = _params(node, index)
        if params is None:
            return None
        conv = index.op(node.inputs[0], "Conv")
        if conv is not None and index.private(conv.outputs[0]):
            return fuse([conv, node], conv, None, node, node.op_type, params)
        add = index.op(node.inputs[0], "Add")
        if add is None or not index.private(add.outputs[0]):
            return None
        conv, z = _residual(add, index)
        return None if conv is None else fuse([conv, add, node], conv, z, node, node.op_type, params)

    def fuse(removed, conv, z, last, activation, params):
        attrs = dict(conv.attributes)
        if activation:
            attrs["activation"] = activation
        if params:
            attrs["activation_params"] = params
        inputs = list(conv.inputs) + [""] * (3 - len(conv.inputs)) + [z] if z else list(conv.inputs)
        import_domain(model, "com.microsoft")
        fused = ir.Node("FusedConv", inputs, list(last.outputs), attrs, domain="com.microsoft",
                        name=f"{conv.name}/fused")
        return removed, last, fused

    return rewrite_each(model.graph, rewrite)


def _residual(add: ir.Node, index: Index) -> tuple[ir.Node | None, str]:
    """The private Conv feeding ``add`` and the other operand, when that has the Conv output's
    (known) shape: FusedConv's ``Z`` does not broadcast."""
    for mine, other in ((0, 1), (1, 0)):
        conv = index.op(add.inputs[mine], "Conv")
        if conv is None or not index.private(conv.outputs[0]):
            continue
        shape, z_shape = index.shape(conv.outputs[0]), index.shape(add.inputs[other])
        dtype = index.dtype(conv.outputs[0])
        if (shape is not None and None not in shape and shape == z_shape and dtype is not None
                and index.dtype(add.inputs[other]) == dtype):
            return conv, add.inputs[other]
    return None, ""


def _params(act: ir.Node, index: Index) -> list[float] | None:
    if act.op_type in DEFAULTS:
        return [float(act.attributes.get(name, default)) for name, default in DEFAULTS[act.op_type]]
    if act.op_type != "Clip":
        return None
    if len(act.inputs) == 1 or "min" in act.attributes or "max" in act.attributes:  # Clip-1/6: attributes
        return [float(act.attributes.get("min", -np.inf)), float(act.attributes.get("max", np.inf))]
    bounds = []
    for name, unbounded in zip((*act.inputs, "", "")[1:3], (-np.inf, np.inf)):
        value = index.const(name) if name else np.array(unbounded)
        if value is None:
            return None
        bounds.append(float(value.reshape(())))
    return bounds
