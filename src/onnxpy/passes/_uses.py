"""Use-def helpers shared by the passes."""
from __future__ import annotations

from typing import Mapping

from onnxpy import ir


def used_names(graph: ir.Graph) -> set[str]:
    """Every value name this graph's nodes (and their subgraphs) read, plus its outputs."""
    used = {v.name for v in graph.outputs}
    for node in graph.nodes:
        used.update(n for n in node.inputs if n)
        for sub in node.subgraphs():
            used |= sub.outer_references()
    return used


def rename_uses(graph: ir.Graph, renames: Mapping[str, str]) -> None:
    """Make every reader of a name in ``renames``, in ``graph`` and its subgraphs, read the name
    it maps to instead (one walk for any number of renames)."""
    for node in graph.nodes:
        if any(n in renames for n in node.inputs):
            node.inputs = [renames.get(n, n) for n in node.inputs]
        for sub in node.subgraphs():
            inner = sub.outer_references() & renames.keys()
            if inner:
                rename_uses(sub, {k: renames[k] for k in inner})
    for v in graph.outputs:
        v.name = renames.get(v.name, v.name)


def fixed_inputs(graph: ir.Graph) -> set[str]:
    """Initializers the caller cannot override: these are constants."""
    return set(graph.initializers) - {v.name for v in graph.inputs}
