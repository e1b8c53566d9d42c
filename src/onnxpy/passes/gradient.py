"""Expand ``ai.onnx.preview.training::Gradient`` into the backward graph (reverse-mode automatic
differentiation over the nodes between ``xs`` and ``y``).

Runs at every optimization level. Differentiable ops: Add, Sub, Mul, Div, Neg, Identity, MatMul,
Relu, Sigmoid, Tanh, Exp, Log; any other op between ``xs`` and ``y`` raises NotImplemented at
session creation. ``zs`` are treated as constants. The seed is ``dy = 1`` (per element).
"""
from __future__ import annotations

import itertools
from typing import Callable

from onnxpy import ir
from onnxpy.errors import InvalidGraph, NotImplemented
from onnxpy.ops.autodiff import DOMAIN
from onnxpy.plan import toposort
from onnxpy.registry import Registry

TRAINING = "ai.onnx.preview.training"


def expand_gradients(model: ir.Model, registry: Registry) -> bool:
    graph = model.graph
    gradients = [n for n in graph.nodes if n.domain == TRAINING and n.op_type == "Gradient"]
    for node in gradients:
        graph.nodes.remove(node)
        graph.nodes.extend(_Backward(graph, node).nodes)
        model.opset_imports.setdefault(DOMAIN, 1)
    return bool(gradients)


class _Backward:
    """The nodes computing ``node``'s outputs d y / d x for each x of its ``xs`` attribute."""

    def __init__(self, graph: ir.Graph, node: ir.Node) -> None:
        self.prefix = f"{node.name or 'Gradient'}/grad"
        self.counter = itertools.count()
        self.nodes: list[ir.Node] = []
        xs, y = list(node.attributes.get("xs", [])), node.attributes.get("y")
        if not xs or y is None:
            raise InvalidGraph(f"{node.describe()} needs attributes xs and y")
        order = toposort(graph, {v.name for v in graph.inputs} | set(graph.initializers))
        active = self._depends_on(order, set(xs))
        if y not in active:
            raise InvalidGraph(f"{node.describe()}: y {y!r} does not depend on any of xs {xs}")
        grads: dict[str, list[str]] = {y: [self._emit("FillLike", [y], DOMAIN, value=1.0)]}
        for fwd in reversed(order):
            if fwd.outputs and fwd.outputs[0] in grads and any(i in active for i in fwd.inputs):
                g = self._sum(grads.pop(fwd.outputs[0]))
                for name, contribution in self._rule(fwd)(g):
                    if name in active:
                        grads.setdefault(name, []).append(contribution)
        for x, out in zip(xs, node.outputs):
            if out:
                parts = grads.get(x) or [self._emit("FillLike", [x], DOMAIN, value=0.0)]
                self.nodes.append(ir.Node("Sum", parts, [out], name=f"{self.prefix}/{x}"))

    @staticmethod
    def _depends_on(order: list[ir.Node], xs: set[str]) -> set[str]:
        active = set(xs)
        for n in order:
            if any(i in active for i in n.inputs):
                active.update(o for o in n.outputs if o)
        return active

    def _emit(self, op: str, inputs: list[str], domain: str = "", **attrs) -> str:
        out = f"{self.prefix}/{next(self.counter)}"
        self.nodes.append(ir.Node(op, inputs, [out], attrs, domain=domain, name=out))
        return out

    def _sum(self, parts: list[str]) -> str:
        return parts[0] if len(parts) == 1 else self._emit("Sum", parts)

    def _unbroadcast(self, g: str, x: str) -> str:
        return self._emit("UnbroadcastLike", [g, x], DOMAIN)

    def _rule(self, n: ir.Node) -> Callable[[str], list[tuple[str, str]]]:
        """The vector-Jacobian product of ``n``: grad of its output -> (input, grad) pairs."""
        if n.domain:
            raise NotImplemented(f"Gradient: cannot differentiate through {n.describe()}")
        x = n.inputs[0]
        b = n.inputs[1] if len(n.inputs) > 1 else None
        out = n.outputs[0]
        e, ub = self._emit, self._unbroadcast
        rules: dict[str, Callable[[str], list[tuple[str, str]]]] = {
            "Add": lambda g: [(x, ub(g, x)), (b, ub(g, b))],
            "Sub": lambda g: [(x, ub(g, x)), (b, ub(e("Neg", [g]), b))],
            "Mul": lambda g: [(x, ub(e("Mul", [g, b]), x)), (b, ub(e("Mul", [g, x]), b))],
            "Div": lambda g: [(x, ub(e("Div", [g, b]), x)),
                              (b, ub(e("Neg", [e("Div", [e("Mul", [g, out]), b])]), b))],
            "Neg": lambda g: [(x, e("Neg", [g]))],
            "Identity": lambda g: [(x, g)],
            "MatMul": lambda g: [(x, ub(e("MatMul", [g, e("SwapLastAxes", [b], DOMAIN)]), x)),
                                 (b, ub(e("MatMul", [e("SwapLastAxes", [x], DOMAIN), g]), b))],
            "Relu": lambda g: [(x, e("ReluGrad", [g, x], DOMAIN))],
            "Sigmoid": lambda g: [(x, e("SigmoidGrad", [g, out], DOMAIN))],
            "Tanh": lambda g: [(x, e("TanhGrad", [g, out], DOMAIN))],
            "Exp": lambda g: [(x, e("Mul", [g, out]))],
            "Log": lambda g: [(x, e("Div", [g, x]))],
        }
        if n.op_type not in rules:
            raise NotImplemented(
                f"Gradient: cannot differentiate through {n.describe()}; differentiable ops: {sorted(rules)}")
        return rules[n.op_type]
