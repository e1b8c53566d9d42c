"""``x * Sigmoid(x)`` → ``Swish`` (standard from opset 24; before, onnxruntime's
``com.microsoft::QuickGelu`` with alpha 1) and ``x * HardSigmoid(x, 1/6, 0.5)`` → ``HardSwish``
(where the model imports opset 14 or later), only where the registry has a kernel."""
from __future__ import annotations

from onnxpy import ir
from onnxpy.passes._match import MS, Index, close, import_domain, other_input, rewrite_each
from onnxpy.registry import Registry

# gate op -> (standard op, its first opset, attribute check on the gate, contrib stand-in or None)
FUSED = {
    "Sigmoid": ("Swish", 24, lambda attrs: True, ("QuickGelu", {"alpha": 1.0})),
    "HardSigmoid": ("HardSwish", 14,
                    lambda attrs: close(attrs.get("alpha", 0.2), 1 / 6) and close(attrs.get("beta", 0.5), 0.5), None),
}


def fuse_swish(model: ir.Model, registry: Registry) -> bool:
    def rewrite(mul: ir.Node, index: Index):
        if mul.op_type != "Mul" or mul.domain or len(mul.inputs) != 2:
            return None
        gate = next((index.op(n, *FUSED) for n in mul.inputs if index.op(n, *FUSED)), None)
        if gate is None or not index.private(gate.outputs[0]) or other_input(mul, gate.outputs[0]) != gate.inputs[0]:
            return None
        fused = _fused(model, registry, gate, mul)
        return None if fused is None else ([gate, mul], mul, fused)

    return rewrite_each(model.graph, rewrite)


def _fused(model: ir.Model, registry: Registry, gate: ir.Node, mul: ir.Node) -> ir.Node | None:
    op_type, since, accepts, contrib = FUSED[gate.op_type]
    opset = model.opset_imports.get("", 0)
    if not accepts(gate.attributes):
        return None
    name = f"{mul.name}/{op_type.lower()}"
    if opset >= since and registry.resolve("", op_type, opset) is not None:
        return ir.Node(op_type, [gate.inputs[0]], list(mul.outputs), name=name)
    if contrib is not None and registry.resolve(MS, contrib[0], 1) is not None:
        import_domain(model, MS)
        return ir.Node(contrib[0], [gate.inputs[0]], list(mul.outputs), dict(contrib[1]), domain=MS, name=name)
    return None
