"""Remove Identity nodes, inference-mode Dropout and the Concat of a single input (which an exporter
writes for a key/value cache's update when there is no past): readers use the input directly."""
from __future__ import annotations

from onnxpy import ir
from onnxpy.passes._uses import rename_uses
from onnxpy.registry import Registry


def _is_identity(node: ir.Node, graph: ir.Graph) -> bool:
    if node.domain:
        return False
    if node.op_type == "Identity" or (node.op_type == "Concat" and len(node.inputs) == 1):
        return True
    if node.op_type == "Dropout":
        mask_used = len(node.outputs) > 1 and node.outputs[1]
        training = node.inputs[2] if len(node.inputs) > 2 else ""
        return not mask_used and not training and not node.attributes.get("is_test", 1) == 0
    return False


def eliminate_identities(model: ir.Model, registry: Registry) -> bool:
    graph = model.graph
    outputs = {v.name for v in graph.outputs}
    keep, renames = [], {}
    for node in graph.nodes:
        if _is_identity(node, graph) and node.outputs[0] not in outputs and node.inputs[0]:
            renames[node.outputs[0]] = node.inputs[0]
        else:
            keep.append(node)
    for name, source in renames.items():  # an identity of an identity reads the first one's input
        while source in renames:
            source = renames[source]
        renames[name] = source
    graph.nodes = keep
    rename_uses(graph, renames)
    return bool(renames)
