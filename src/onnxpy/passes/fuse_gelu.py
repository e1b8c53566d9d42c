"""GELU written out by exporters → ``Gelu`` where the model imports opset 20 or later, else
onnxruntime's ``com.microsoft::Gelu`` / ``FastGelu`` (tanh form), so a saved optimized model stays
valid for onnxruntime.

Exact form: ``0.5 * x * (1 + Erf(x / sqrt(2)))`` (or ``x * (1/sqrt(2))``); tanh form:
``0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`` with ``x^3`` as ``Pow(x, 3)`` or
products of x. The products may associate in any order; intermediates must have no other reader.
"""
from __future__ import annotations

import math

from onnxpy import ir
from onnxpy.passes._match import MS, Index, close, factors, import_domain, other_input, rewrite_each
from onnxpy.registry import Registry


def fuse_gelu(model: ir.Model, registry: Registry) -> bool:
    standard = model.opset_imports.get("", 0) >= 20
    if not standard and registry.resolve(MS, "Gelu", 1) is None:
        return False

    def rewrite(mul: ir.Node, index: Index):
        match = _match(mul, index) if mul.op_type == "Mul" and not mul.domain else None
        if match is None:
            return None
        x, approximate, nodes = match
        if standard:
            fused = ir.Node("Gelu", [x], list(mul.outputs), {"approximate": "tanh"} if approximate else {},
                            name=f"{mul.name}/gelu")
        else:
            import_domain(model, MS)
            fused = ir.Node("FastGelu" if approximate else "Gelu", [x], list(mul.outputs), domain=MS,
                            name=f"{mul.name}/gelu")
        return nodes, mul, fused

    return rewrite_each(model.graph, rewrite)


def _match(mul: ir.Node, index: Index):
    """(x, whether tanh, nodes) for ``0.5 * x * (1 + f(x))`` ending at ``mul``, else None."""
    leaves, nodes = factors(index, mul.outputs[0])
    if len(leaves) != 3:
        return None
    half = next((n for n in leaves if index.const(n) is not None), None)
    add = next((index.op(n, "Add") for n in leaves if index.op(n, "Add") and index.private(n)), None)
    if half is None or add is None:
        return None
    x = next((n for n in leaves if n not in (half, add.outputs[0])), None)
    inner = next((index.op(n, "Erf", "Tanh") for n in add.inputs if index.op(n, "Erf", "Tanh")), None)
    if (x is None or inner is None or not close(index.scalar(half, x), 0.5) or not index.private(inner.outputs[0])
            or not close(index.scalar(other_input(add, inner.outputs[0]), x), 1.0)):
        return None
    argument = inner.inputs[0]
    if not index.private(argument):
        return None
    found = _erf_argument(argument, x, index) if inner.op_type == "Erf" else _tanh_argument(argument, x, index)
    if found is None:
        return None
    return x, inner.op_type == "Tanh", [*nodes, add, inner, *found]


def _erf_argument(name: str, x: str, index: Index) -> list[ir.Node] | None:
    node = index.op(name, "Div", "Mul")
    if node is None or len(node.inputs) != 2:
        return None
    c = other_input(node, x)
    if node.op_type == "Div":
        ok = node.inputs[0] == x and close(index.scalar(node.inputs[1], x), math.sqrt(2))
    else:
        ok = c is not None and close(index.scalar(c, x), 1 / math.sqrt(2))
    return [node] if ok else None


def _tanh_argument(name: str, x: str, index: Index) -> list[ir.Node] | None:
    leaves, outer = factors(index, name)
    scale = next((n for n in leaves if close(index.scalar(n, x), math.sqrt(2 / math.pi))), None)
    add = next((index.op(n, "Add") for n in leaves if index.op(n, "Add") and index.private(n)), None)
    if len(leaves) != 2 or scale is None or add is None:
        return None
    cubic = other_input(add, x)
    if cubic is None or not index.private(cubic):
        return None
    terms, inner = factors(index, cubic)
    coefficient = next((n for n in terms if close(index.scalar(n, x), 0.044715)), None)
    if coefficient is None:
        return None
    terms.remove(coefficient)
    pow_node = index.op(terms[0], "Pow") if len(terms) == 1 and index.private(terms[0]) else None
    if pow_node is not None and pow_node.inputs[0] == x and close(index.scalar(pow_node.inputs[1], x), 3.0):
        inner.append(pow_node)
    elif terms != [x, x, x]:
        return None
    return [*outer, add, *inner]
