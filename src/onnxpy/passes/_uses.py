"""Use-def helpers shared by the passes."""
from __future__ import annotations

from onnxpy import ir


def used_names(graph: ir.Graph) -> set[str]:
    """Every value name this graph's nodes (and their subgraphs) read, plus its outputs."""
    used = {v.name for v in graph.outputs}
    for node in graph.nodes:
        used.update(n for n in node.inputs if n)
        for sub in node.subgraphs():
            used |= sub.outer_references()
    return used


def rename_uses(graph: ir.Graph, old: str, new: str) -> None:
    """Make every reader of ``old`` in ``graph`` and its subgraphs read ``new`` instead."""
    for node in graph.nodes:
        node.inputs = [new if n == old else n for n in node.inputs]
        for sub in node.subgraphs():
            if old in sub.outer_references():
                rename_uses(sub, old, new)
    for v in graph.outputs:
        if v.name == old:
            v.name = new


def fixed_inputs(graph: ir.Graph) -> set[str]:
    """Initializers the caller cannot override: these are constants."""
    return set(graph.initializers) - {v.name for v in graph.inputs}
