"""``Conv`` followed by an activation → ``com.microsoft::FusedConv``, only when the registry
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

    def rewrite(act: ir.Node, index: Index):
        conv = index.op(act.inputs[0], "Conv") if act.inputs and not act.domain else None
        if conv is None or not index.private(conv.outputs[0]):
            return None
        params = _params(act, index)
        if params is None:
            return None
        attrs = {**conv.attributes, "activation": act.op_type}
        if params:
            attrs["activation_params"] = params
        import_domain(model, "com.microsoft")
        fused = ir.Node("FusedConv", list(conv.inputs), list(act.outputs), attrs, domain="com.microsoft",
                        name=f"{conv.name}/fused")
        return [conv, act], act, fused

    return rewrite_each(model.graph, rewrite)


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
