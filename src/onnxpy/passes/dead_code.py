"""Remove nodes whose outputs nobody reads, and initializers nobody reads."""
from __future__ import annotations

from onnxpy import ir
from onnxpy.passes._uses import used_names
from onnxpy.registry import Registry


def eliminate_dead_code(model: ir.Model, registry: Registry) -> bool:
    graph = model.graph
    changed = False
    while True:
        used = used_names(graph)
        live = [n for n in graph.nodes if any(o in used for o in n.outputs if o)]
        if len(live) == len(graph.nodes):
            break
        graph.nodes = live
        changed = True
    interface = {v.name for v in graph.inputs}
    dead = [k for k in graph.initializers if k not in used and k not in interface]
    for k in dead:
        del graph.initializers[k]
    return changed or bool(dead)
