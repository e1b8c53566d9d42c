"""``Conv`` followed by an activation, by an ``Add`` of a same-shaped tensor (a residual), or by
both → ``com.microsoft::FusedConv`` (the added tensor is its input ``Z``), only when the registry
has a FusedConv kernel (contrib ops are optional); otherwise the pass changes nothing.

Activations and their ``activation_params`` follow onnxruntime's FusedConv: Relu, Tanh, Sigmoid,
LeakyRelu [alpha], HardSigmoid [alpha, beta], Clip [min, max] (constant bounds). A Conv followed by
HardSwish, Swish or QuickGelu (activations onnxruntime's FusedConv lacks) becomes
``ai.onnxpy::FusedConv`` instead, whose epilogue applies them (where its kernel is registered). A
HardSigmoid on a Conv with constant weights and no residual becomes a Clip [0, 1]: ``alpha * y +
beta`` moves into the weights and bias, and the clamp costs nothing (the convolution applies it as
it writes).
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.passes._match import ONNXPY, Index, import_domain, rewrite_each
from onnxpy.registry import Registry

DEFAULTS = {"Relu": [], "Tanh": [], "Sigmoid": [], "LeakyRelu": [("alpha", 0.01)],
            "HardSigmoid": [("alpha", 0.2), ("beta", 0.5)]}
# activations onnxruntime's FusedConv lacks -> ai.onnxpy::FusedConv's (activation, activation_params)
EPILOGUES = {("", "HardSwish"): lambda attrs: ("HardSwish", []),
             ("", "Swish"): lambda attrs: ("QuickGelu", [float(attrs.get("alpha", 1.0))]),
             ("com.microsoft", "QuickGelu"): lambda attrs: ("QuickGelu", [float(attrs.get("alpha", 1.702))])}


def fuse_conv_activation(model: ir.Model, registry: Registry) -> bool:
    if registry.resolve("com.microsoft", "FusedConv", 1) is None:
        return False

    extended = registry.resolve(ONNXPY, "FusedConv", 1) is not None

    def rewrite(node: ir.Node, index: Index):
        if extended and node.inputs and (node.domain, node.op_type) in EPILOGUES:
            conv = index.op(node.inputs[0], "Conv")
            if conv is None or not index.private(conv.outputs[0]):
                return None
            import_domain(model, ONNXPY)
            name, params = EPILOGUES[node.domain, node.op_type](node.attributes)
            attrs = {**conv.attributes, "activation": name, **({"activation_params": params} if params else {})}
            return [conv, node], node, ir.Node("FusedConv", list(conv.inputs), list(node.outputs), attrs,
                                               domain=ONNXPY, name=f"{conv.name}/fused")
        if node.domain or not node.inputs:
            return None
        if node.op_type == "Add":
            readers = index.readers.get(node.outputs[0], [])
            if (index.private(node.outputs[0]) and not readers[0].domain and readers[0].inputs[0] == node.outputs[0]
                    and _params(readers[0], index) is not None):
                return None  # the activation after it takes the Add too
            conv, z = _residual(node, index)
            return None if conv is None else fuse([conv, node], conv, z, node, None, [], index)
        params = _params(node, index)
        if params is None:
            return None
        conv = index.op(node.inputs[0], "Conv")
        if conv is not None and index.private(conv.outputs[0]):
            return fuse([conv, node], conv, None, node, node.op_type, params, index)
        add = index.op(node.inputs[0], "Add")
        if add is None or not index.private(add.outputs[0]):
            return None
        conv, z = _residual(add, index)
        return None if conv is None else fuse([conv, add, node], conv, z, node, node.op_type, params, index)

    def fuse(removed, conv, z, last, activation, params, index):
        attrs = dict(conv.attributes)
        inputs = list(conv.inputs) + [""] * (3 - len(conv.inputs)) + [z] if z else list(conv.inputs)
        if activation == "HardSigmoid" and not z:
            inputs, activation, params = _affine_into_weights(model.graph, inputs, params, index, last.outputs[0])
        if activation:
            attrs["activation"] = activation
        if params:
            attrs["activation_params"] = params
        import_domain(model, "com.microsoft")
        fused = ir.Node("FusedConv", inputs, list(last.outputs), attrs, domain="com.microsoft",
                        name=f"{conv.name}/fused")
        return removed, last, fused

    return rewrite_each(model.graph, rewrite)


def _affine_into_weights(graph: ir.Graph, inputs: list[str], params: list[float], index: Index,
                         name: str) -> tuple[list[str], str, list[float]]:
    """HardSigmoid's ``alpha * y + beta`` moved into constant weights and bias (``alpha W``,
    ``alpha b + beta``), leaving the clamp to [0, 1], which the convolution applies as it writes
    its output; the inputs unchanged (and the HardSigmoid kept) where the weights or bias vary."""
    w = index.const(inputs[1])
    b = index.const(inputs[2]) if len(inputs) > 2 and inputs[2] else None
    if w is None or (len(inputs) > 2 and inputs[2] and b is None) or w.dtype.kind != "f":
        return inputs, "HardSigmoid", params
    alpha, beta = params
    w_name, b_name = f"{name}__hard_sigmoid_weight", f"{name}__hard_sigmoid_bias"
    graph.initializers[w_name] = (w.astype(np.float64) * alpha).astype(w.dtype)
    graph.initializers[b_name] = ((0.0 if b is None else b.astype(np.float64)) * alpha
                                  + beta + np.zeros(w.shape[0])).astype(w.dtype)
    return [inputs[0], w_name, b_name], "Clip", [0.0, 1.0]


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
    if act.op_type in DEFAULTS:  # a float attribute's default is a float32 too (0.2 is 0.20000000298...)
        return [float(np.float32(act.attributes.get(name, default))) for name, default in DEFAULTS[act.op_type]]
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
