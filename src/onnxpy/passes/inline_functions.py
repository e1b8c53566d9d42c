"""Inline calls of model-local functions, and of standard ops that have no kernel but whose
schema in ``onnx.defs`` defines a function body. Runs at every optimization level."""
from __future__ import annotations

import copy
import itertools

from onnxpy import ir, loader
from onnxpy.plan import node_opset
from onnxpy.registry import Registry

MAX_DEPTH = 16


def inline_functions(model: ir.Model, registry: Registry) -> bool:
    counter = itertools.count()
    changed = False
    for _ in range(MAX_DEPTH):
        if not _inline_graph(model.graph, model, registry, counter):
            break
        changed = True
    return changed


def _inline_graph(graph: ir.Graph, model: ir.Model, registry: Registry, counter) -> bool:
    types = {v.name: v.type for v in (*graph.inputs, *graph.outputs, *graph.value_info.values())}
    types.update((k, ir.TensorType(a.dtype, a.shape)) for k, a in graph.initializers.items())
    nodes, changed = [], False
    for node in graph.nodes:
        for sub in node.subgraphs():
            changed |= _inline_graph(sub, model, registry, counter)
        fn = _body(node, model, registry, types)
        if fn is None:
            nodes.append(node)
            continue
        nodes.extend(_expand(node, fn, model.opset_imports, f"{node.name or node.op_type}__{next(counter)}"))
        changed = True
    graph.nodes = nodes
    return changed


def _body(node: ir.Node, model: ir.Model, registry: Registry, types: dict) -> ir.Function | None:
    local = model.functions.get((node.domain, node.op_type))
    opsets = model.opset_imports
    if local is not None and (node.domain not in opsets or registry.resolve(node.domain, node.op_type, opsets[node.domain]) is None):
        return local
    if node.domain not in opsets and node.opset is None:
        return None
    opset = node_opset(node, opsets)
    if registry.resolve(node.domain, node.op_type, opset) is not None:
        return None
    return loader.schema_function(node, opset, [types.get(n) if n else None for n in node.inputs])


def _expand(node: ir.Node, fn: ir.Function, opsets: dict[str, int], prefix: str) -> list[ir.Node]:
    rename = {formal: actual for formal, actual in zip(fn.inputs, node.inputs)}
    rename.update((formal, "") for formal in fn.inputs[len(node.inputs):])
    for formal, actual in zip(fn.outputs, node.outputs):
        rename[formal] = actual or f"{prefix}__{formal}"
    attrs = {**fn.attribute_defaults, **node.attributes}
    body = []
    for inner in fn.nodes:
        new_attrs = {k: copy.deepcopy(v) if any(_subgraphs({k: v})) else v for k, v in inner.attributes.items()}
        for name, ref in inner.attribute_refs.items():
            if ref in attrs:
                new_attrs[name] = attrs[ref]
        outs = []
        for o in inner.outputs:
            if o and o not in rename:
                rename[o] = f"{prefix}__{o}"
            outs.append(rename.get(o, o) if o else "")
        for sub in _subgraphs(new_attrs):
            _rename_in_subgraph(sub, rename)
        want = fn.opset_imports.get(inner.domain)
        body.append(ir.Node(
            op_type=inner.op_type,
            inputs=[rename.get(i, i) if i else "" for i in inner.inputs],
            outputs=outs,
            attributes=new_attrs,
            domain=inner.domain,
            name=f"{prefix}/{inner.name or inner.op_type}",
            opset=want if want is not None and want != opsets.get(inner.domain) else inner.opset,
        ))
    return body


def _subgraphs(attrs: dict):
    for v in attrs.values():
        if isinstance(v, ir.Graph):
            yield v
        elif isinstance(v, list):
            yield from (g for g in v if isinstance(g, ir.Graph))


def _rename_in_subgraph(graph: ir.Graph, rename: dict[str, str]) -> None:
    for node in graph.nodes:
        node.inputs = [rename.get(i, i) if i else "" for i in node.inputs]
        for sub in node.subgraphs():
            _rename_in_subgraph(sub, rename)
    for v in graph.outputs:
        v.name = rename.get(v.name, v.name)
