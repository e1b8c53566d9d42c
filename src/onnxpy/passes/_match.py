"""Pattern-matching helpers shared by the fusion passes: who produces and who reads each value."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from onnxpy import ir
from onnxpy.passes._uses import fixed_inputs


ONNXPY = "ai.onnxpy"  # the domain of onnxpy's own fused operators
MS = "com.microsoft"  # onnxruntime's contrib operators, which fusions write where onnxruntime has one

# Constant's value attributes (sparse and string forms are left alone) and their dtypes.
CONSTANT_FORMS = {"value": None, "value_float": np.float32, "value_floats": np.float32,
                  "value_int": np.int64, "value_ints": np.int64}


class Index:
    """Producers, readers, constants and known types of one graph's values, for one pass sweep."""

    def __init__(self, graph: ir.Graph) -> None:
        self.graph = graph
        self.producer = {o: n for n in graph.nodes for o in n.outputs if o}
        self.readers: dict[str, list[ir.Node]] = defaultdict(list)
        self.pinned = {v.name for v in graph.outputs}
        for node in graph.nodes:
            for name in node.inputs:
                if name:
                    self.readers[name].append(node)
            for sub in node.subgraphs():
                self.pinned |= sub.outer_references()
        self.constants = fixed_inputs(graph)
        self.types = {name: v.type for name, v in graph.value_info.items()}
        self.types.update((v.name, v.type) for v in (*graph.inputs, *graph.outputs) if v.type is not None)

    def op(self, name: str, *op_types: str) -> ir.Node | None:
        """The standard-domain node producing ``name`` if its type is one of ``op_types``."""
        node = self.producer.get(name)
        return node if node is not None and not node.domain and node.op_type in op_types else None

    def const(self, name: str) -> np.ndarray | None:
        """The value of ``name`` if it is a constant the caller cannot override: a fixed
        initializer or the output of a ``Constant`` node."""
        if name in self.constants:
            return self.graph.initializers.get(name)
        node = self.op(name, "Constant")
        return _constant_value(node.attributes) if node is not None else None

    def scalar(self, name: str, like: str) -> float | None:
        """A constant holding one number that does not widen the rank of ``like`` when broadcast
        against it, as a Python float."""
        value = self.const(name)
        if value is None or value.size != 1:
            return None
        shape = self.shape(like)
        return float(value.reshape(())) if value.ndim <= (len(shape) if shape is not None else 0) else None

    def private(self, name: str) -> bool:
        """``name`` has exactly one reader and is neither a graph output nor read by a subgraph."""
        return len(self.readers.get(name, ())) == 1 and name not in self.pinned

    def shape(self, name: str) -> tuple | None:
        """The (possibly symbolic) shape of ``name`` if its rank is known."""
        if name in self.graph.initializers:
            return self.graph.initializers[name].shape
        t = self.types.get(name)
        return t.shape if isinstance(t, ir.TensorType) else None

    def dtype(self, name: str) -> np.dtype | None:
        if name in self.graph.initializers:
            return self.graph.initializers[name].dtype
        t = self.types.get(name)
        return t.dtype if isinstance(t, ir.TensorType) else None


def _constant_value(attrs: dict) -> np.ndarray | None:
    for key, dtype in CONSTANT_FORMS.items():
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    return None


def other_input(node: ir.Node, name: str) -> str | None:
    """The input of a binary ``node`` that is not ``name`` (None if ``name`` is not an input)."""
    if len(node.inputs) != 2 or name not in node.inputs:
        return None
    a, b = node.inputs
    return b if a == name else a


def column_bias(value: np.ndarray | None, n: int) -> np.ndarray | None:
    """A constant that adds one value per column of an (..., N) product (shape ``(N,)``, ``(1, N)``
    or a single value), flat; None if it is not one."""
    if value is None or value.size not in (1, n) or value.ndim > 2 or (value.ndim == 2 and value.shape[0] != 1):
        return None
    return value.reshape(-1)


def rewrite_each(graph: ir.Graph,
                 rewrite: Callable[[ir.Node, Index], tuple[list[ir.Node], ir.Node, ir.Node] | None]) -> bool:
    """Offer every node of ``graph`` (as it stood when the pass began, indexed once) to ``rewrite``;
    each ``(removed, anchor, new)`` it returns is applied with ``replace``. True when one was."""
    index = Index(graph)
    changed = False
    for node in list(graph.nodes):
        found = rewrite(node, index)
        if found is not None:
            replace(graph, *found)
            changed = True
    return changed


def replace(graph: ir.Graph, removed: list[ir.Node], anchor: ir.Node, new: ir.Node) -> None:
    """Put ``new`` where ``anchor`` was and drop ``removed`` (which includes ``anchor``)."""
    gone = {id(n) for n in removed}
    graph.nodes = [new if n is anchor else n for n in graph.nodes if n is anchor or id(n) not in gone]


def ints_input(index: Index, node: ir.Node, position: int, attribute: str) -> list[int] | None:
    """An int-list operand given as an attribute (older opsets) or a constant input (newer)."""
    if attribute in node.attributes:
        return list(node.attributes[attribute])
    if len(node.inputs) > position and node.inputs[position]:
        value = index.const(node.inputs[position])
        return None if value is None else [int(v) for v in value.reshape(-1)]
    return None


def factors(index: Index, name: str) -> tuple[list[str], list[ir.Node]]:
    """The leaves of the tree of private ``Mul`` nodes producing ``name``, and those nodes."""
    node = index.op(name, "Mul")
    if node is None or len(node.inputs) != 2:
        return [name], []
    leaves, nodes = [], [node]
    for operand in node.inputs:
        if index.private(operand):
            more, inner = factors(index, operand)
        else:
            more, inner = [operand], []
        leaves += more
        nodes += inner
    return leaves, nodes


def close(value: float | None, expected: float) -> bool:
    """A pattern constant equal to ``expected`` up to float32 rounding of how exporters write it."""
    return value is not None and abs(value - expected) <= 1e-4 * abs(expected)


def import_domain(model: ir.Model, domain: str, version: int = 1) -> None:
    """Make ``model`` import ``domain`` (for a fused contrib node), keeping an existing import."""
    model.opset_imports.setdefault(domain, version)
