"""``x * Sigmoid(x)`` → ``Swish`` (standard from opset 24) and ``x * HardSigmoid(x, 1/6, 0.5)``
→ ``HardSwish`` (opset 14), through ``node.opset`` when the model imports less and only where
onnx.defs has the op and the registry a kernel."""
from __future__ import annotations

import onnx

from onnxpy import ir
from onnxpy.passes._match import Index, close, other_input, replace, standard_opset
from onnxpy.registry import Registry

# gate op -> (fused op, its first opset, attribute check on the gate)
FUSED = {
    "Sigmoid": ("Swish", 24, lambda attrs: True),
    "HardSigmoid": ("HardSwish", 14,
                    lambda attrs: close(attrs.get("alpha", 0.2), 1 / 6) and close(attrs.get("beta", 0.5), 0.5)),
}


def fuse_swish(model: ir.Model, registry: Registry) -> bool:
    graph = model.graph
    index = Index(graph)
    changed = False
    for mul in list(graph.nodes):
        if mul.op_type != "Mul" or mul.domain or len(mul.inputs) != 2:
            continue
        gate = next((index.op(n, *FUSED) for n in mul.inputs if index.op(n, *FUSED)), None)
        if gate is None or not index.private(gate.outputs[0]) or other_input(mul, gate.outputs[0]) != gate.inputs[0]:
            continue
        op_type, since, accepts = FUSED[gate.op_type]
        opset = standard_opset(model, since)
        if not accepts(gate.attributes) or not _available(registry, op_type, opset or model.opset_imports[""]):
            continue
        fused = ir.Node(op_type, [gate.inputs[0]], list(mul.outputs), name=f"{mul.name}/{op_type.lower()}", opset=opset)
        replace(graph, [gate, mul], mul, fused)
        changed = True
    return changed


def _available(registry: Registry, op_type: str, opset: int) -> bool:
    return onnx.defs.has(op_type) and registry.resolve("", op_type, opset) is not None
