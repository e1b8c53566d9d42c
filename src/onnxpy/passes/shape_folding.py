"""Fold the statically known parts of partially symbolic shapes.

``Shape`` whose requested slice has only static dims, and ``Gather``/``Slice`` of a ``Shape``
output (the whole shape, rank known) that pick only static dims, become constants: every input
valid for the model's declared types has those dims. ``Size`` of a fully static shape folds too.
"""
from __future__ import annotations

import numpy as np

from onnxpy import ir
from onnxpy.passes._match import Index, ints_input
from onnxpy.registry import Registry


def fold_shape_subgraphs(model: ir.Model, registry: Registry) -> bool:
    graph = model.graph
    index = Index(graph)
    keep, changed = [], False
    for node in graph.nodes:
        value = _folded(node, index) if not node.domain and len(node.outputs) == 1 else None
        if value is None:
            keep.append(node)
            continue
        graph.initializers[node.outputs[0]] = value
        index.constants.add(node.outputs[0])
        changed = True
    graph.nodes = keep
    return changed


def _folded(node: ir.Node, index: Index) -> np.ndarray | None:
    if node.op_type == "Size":
        shape = index.shape(node.inputs[0])
        return np.array(np.prod(shape, dtype=np.int64)) if shape is not None and _static(shape) else None
    if node.op_type == "Shape":
        dims = _dims(node, index)
        return np.array(dims, dtype=np.int64) if dims is not None and _static(dims) else None
    source = index.op(node.inputs[0], "Shape") if node.inputs else None
    dims = _dims(source, index) if source is not None else None
    if dims is None:
        return None
    positions = np.arange(len(dims))
    if node.op_type == "Gather" and node.attributes.get("axis", 0) in (0, -1):
        indices = index.const(node.inputs[1])
        if indices is None or not np.all((indices >= -len(dims)) & (indices < len(dims))):
            return None
        picked = positions[indices]
    elif node.op_type == "Slice":
        picked = _sliced(node, index, positions)
    else:
        return None
    if picked is None or not _static([dims[i] for i in np.ravel(picked)]):
        return None
    return np.array([d if isinstance(d, int) else -1 for d in dims], dtype=np.int64)[picked]


def _dims(shape_node: ir.Node, index: Index) -> list | None:
    """The dims a ``Shape`` node returns (its start/end applied), static or not; None if rank unknown."""
    shape = index.shape(shape_node.inputs[0])
    if shape is None:
        return None
    rank = len(shape)
    start, end = shape_node.attributes.get("start", 0), shape_node.attributes.get("end", rank)
    start, end = (min(max(v + rank if v < 0 else v, 0), rank) for v in (start, end))
    return list(shape[start:end])


def _sliced(node: ir.Node, index: Index, positions: np.ndarray) -> np.ndarray | None:
    starts = ints_input(index, node, 1, "starts")
    ends = ints_input(index, node, 2, "ends")
    if starts is None or ends is None or len(starts) != 1:
        return None
    axes = ints_input(index, node, 3, "axes")
    steps = ints_input(index, node, 4, "steps") if len(node.inputs) > 4 else [1]
    if axes not in (None, [0], [-1]) or steps is None or steps[0] == 0:
        return None
    return positions[slice(starts[0], ends[0], steps[0])]


def _static(dims) -> bool:
    return all(isinstance(d, (int, np.integer)) and d >= 0 for d in dims)
