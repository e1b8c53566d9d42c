"""Build an immutable execution plan from an IR graph.

Names at planning time, integer slots at run time: the plan fixes the topological order,
resolves each node's kernel once, binds its attributes, pre-places initializers and lists,
per step, the slots whose last use it is. Graph attributes (If/Loop/Scan bodies) become
sub-plans with explicit outer-scope captures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from onnxpy import ir
from onnxpy.errors import InvalidGraph, NotImplemented
from onnxpy.registry import KernelContext, Registry

NONE_SLOT = 0   # always holds None: omitted optional inputs read it
SINK_SLOT = 1   # omitted outputs are written here and never read


class Step(NamedTuple):
    """One node's call: ``fn(*slots[inputs], **kwargs)`` stored to ``outputs``; then ``free`` cleared."""

    fn: Callable[..., Any]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    kwargs: dict[str, Any]
    free: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    nodes: tuple[ir.Node, ...]          # nodes[i] is the node of steps[i]
    template: tuple[Any, ...]           # initial slot contents: initializers placed
    inputs: tuple[ir.ValueInfo, ...]    # values fed by the caller, in order
    input_slots: tuple[int, ...]
    output_slots: tuple[int, ...]
    output_names: tuple[str, ...]


class BoundGraph:
    """A sub-plan bound to the outer-scope values it captures; call it with the formal inputs."""

    __slots__ = ("plan", "captured")

    def __init__(self, plan: Plan, captured: list[Any]) -> None:
        self.plan = plan
        self.captured = captured

    def __call__(self, *inputs: Any) -> list[Any]:
        from onnxpy.executor import execute

        return execute(self.plan, [*inputs, *self.captured])


class ScopedKernel:
    """Calls a kernel whose node has graph attributes: the step's trailing inputs are the
    outer-scope values its sub-plans capture; each graph attribute is passed as a BoundGraph."""

    def __init__(self, fn: Callable, n_explicit: int, kwargs: dict, graphs: dict[str, Any]) -> None:
        self.fn, self.n_explicit, self.kwargs, self.graphs = fn, n_explicit, kwargs, graphs

    def __call__(self, *args: Any) -> Any:
        outer = args[self.n_explicit:]
        kwargs = dict(self.kwargs)
        for name, sub in self.graphs.items():
            if isinstance(sub, list):
                kwargs[name] = [BoundGraph(p, [outer[i] for i in idx]) for p, idx in sub]
            else:
                plan, idx = sub
                kwargs[name] = BoundGraph(plan, [outer[i] for i in idx])
        return self.fn(*args[: self.n_explicit], **kwargs)


def build(graph: ir.Graph, opsets: dict[str, int], registry: Registry,
          fed: Sequence[str] | None = None) -> Plan:
    """Plan ``graph``. ``fed`` names the values the caller supplies (default: the graph inputs
    that are not initializers, then overridable initializers)."""
    problems: list[str] = []
    plan = _build(graph, opsets, registry, fed, (), problems)
    if problems:
        raise NotImplemented(
            "the model uses operators onnxpy cannot run:\n  " + "\n  ".join(dict.fromkeys(problems))
        )
    return plan


def _build(graph: ir.Graph, opsets: dict[str, int], registry: Registry, fed: Sequence[str] | None,
           captures: Sequence[str], problems: list[str]) -> Plan:
    init_names = set(graph.initializers)
    inputs = [v for v in graph.inputs if v.name not in init_names]
    inputs += [v for v in graph.inputs if v.name in init_names]
    if fed is not None:
        by_name = {v.name: v for v in graph.inputs}
        inputs = [by_name.get(n, ir.ValueInfo(n)) for n in fed]
    inputs += [ir.ValueInfo(c) for c in captures]
    order = toposort(graph, {v.name for v in inputs} | init_names)

    slot_of: dict[str, int] = {"": NONE_SLOT}
    template: list[Any] = [None, None]

    def slot(name: str) -> int:
        if name not in slot_of:
            slot_of[name] = len(template)
            template.append(None)
        return slot_of[name]

    for name, value in graph.initializers.items():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)  # shared by every run: kernels may cache what they derive from it
        template[slot(name)] = value
    input_slots = tuple(slot(v.name) for v in inputs)
    types = _known_types(graph)

    steps, nodes = [], []
    for node in order:
        ins = [slot(n) for n in node.inputs]
        outs = [slot(n) if n else SINK_SLOT for n in node.outputs]
        fn, kwargs, extra = _bind(node, opsets, registry, types, problems)
        steps.append([fn, tuple(ins + [slot(n) for n in extra]), tuple(outs), kwargs])
        nodes.append(node)

    output_slots = tuple(slot(v.name) for v in graph.outputs)
    keep = set(output_slots) | {NONE_SLOT, SINK_SLOT}
    last_use: dict[int, int] = {}
    for i, (_, ins, outs, _) in enumerate(steps):
        for s in outs:
            last_use.setdefault(s, i)  # a value never read dies where it is made
        for s in ins:
            last_use[s] = i
    frees: list[list[int]] = [[] for _ in steps]
    for s, i in last_use.items():
        if s not in keep:
            frees[i].append(s)
    return Plan(
        steps=tuple(Step(fn, ins, outs, kw, tuple(sorted(f))) for (fn, ins, outs, kw), f in zip(steps, frees)),
        nodes=tuple(nodes),
        template=tuple(template),
        inputs=tuple(inputs[: len(inputs) - len(captures)]),
        input_slots=input_slots,
        output_slots=output_slots,
        output_names=tuple(v.name for v in graph.outputs),
    )


def _known_types(graph: ir.Graph) -> dict[str, ir.Type | None]:
    types = {name: v.type for name, v in graph.value_info.items()}
    types.update((v.name, v.type) for v in (*graph.inputs, *graph.outputs) if v.type is not None)
    for name, arr in graph.initializers.items():
        types[name] = ir.TensorType(arr.dtype, arr.shape)
    return types


def node_opset(node: ir.Node, opsets: dict[str, int]) -> int:
    """The opset a node resolves against; an import must exist for its domain."""
    if node.opset is not None:
        return node.opset
    if node.domain not in opsets:
        raise InvalidGraph(
            f"{node.describe()} uses domain {node.domain or 'ai.onnx'!r}, which the model does not import "
            f"(imports: {sorted(d or 'ai.onnx' for d in opsets)})"
        )
    return opsets[node.domain]


def _bind(node: ir.Node, opsets: dict[str, int], registry: Registry, types: dict,
          problems: list[str]) -> tuple[Callable, dict, list[str]]:
    """Resolve and bind one node's kernel; returns (callable, kwargs, captured outer names)."""
    opset = node_opset(node, opsets)
    spec = registry.resolve(node.domain, node.op_type, opset)
    where = f"{node.domain or 'ai.onnx'}::{node.op_type} at opset {opset} ({node.describe()})"
    if spec is None:
        have = registry.versions(node.domain, node.op_type)
        problems.append(f"{where}: no kernel" + (f" (kernels exist since versions {have})" if have else ""))
        return _unreachable, {}, []
    unknown = sorted(set(node.attributes) - spec.attributes)
    if unknown:
        problems.append(f"{where}: unsupported attribute(s) {unknown}")
    missing = sorted(spec.required - set(node.attributes))
    if missing:
        raise InvalidGraph(f"{node.describe()} lacks required attribute(s) {missing}")
    kwargs = {k: v for k, v in node.attributes.items() if k in spec.attributes}
    if spec.wants_ctx:
        kwargs["ctx"] = KernelContext(
            node=node, opset=opset, num_outputs=len(node.outputs),
            output_types=tuple(types.get(n) for n in node.outputs),
            input_types=tuple(types.get(n) for n in node.inputs),
        )
    graph_attrs = {k: v for k, v in kwargs.items() if isinstance(v, ir.Graph)
                   or (isinstance(v, list) and v and all(isinstance(g, ir.Graph) for g in v))}
    if not graph_attrs:
        return spec.fn, kwargs, []
    captured: list[str] = []
    subs: dict[str, Any] = {}
    for name, value in graph_attrs.items():
        built = []
        for g in value if isinstance(value, list) else [value]:
            refs = sorted(g.outer_references())  # check_defined has ensured each is visible
            sub = _build(g, opsets, registry, None, refs, problems)
            built.append((sub, [_index(captured, r) for r in refs]))
        subs[name] = built if isinstance(value, list) else built[0]
        del kwargs[name]
    return ScopedKernel(spec.fn, len(node.inputs), kwargs, subs), {}, captured


def _index(items: list[str], name: str) -> int:
    if name not in items:
        items.append(name)
    return items.index(name)


def _unreachable(*_: Any, **__: Any) -> Any:
    raise AssertionError("a plan with unsupported nodes is never executed")


def toposort(graph: ir.Graph, available: set[str]) -> list[ir.Node]:
    """Nodes in dependency order; raises InvalidGraph on undefined, duplicate or cyclic values.

    Values read by a node's subgraphs from the outer scope count as its dependencies; names
    not defined in this graph are left to the enclosing scope (checked there)."""
    producer: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for out in node.outputs:
            if not out:
                continue
            if out in producer or out in available:
                raise InvalidGraph(f"value {out!r} is defined more than once (again by {node.describe()})")
            producer[out] = i
    deps: list[set[int]] = []
    for node in graph.nodes:
        needed = {n for n in node.inputs if n}
        for sub in node.subgraphs():
            needed |= sub.outer_references()
        deps.append({producer[n] for n in needed if n in producer})
    order, state = [], [0] * len(graph.nodes)  # 0 new, 1 on stack, 2 done
    for start in range(len(graph.nodes)):
        if state[start]:
            continue
        stack = [(start, iter(sorted(deps[start])))]
        state[start] = 1
        while stack:
            i, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                state[i] = 2
                order.append(graph.nodes[i])
            elif state[nxt] == 1:
                cycle = [graph.nodes[j].describe() for j, _ in stack]
                raise InvalidGraph(f"the graph has a cycle through: {', '.join(cycle)}")
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(deps[nxt]))))
    return order


def check_defined(graph: ir.Graph, outer: set[str] = frozenset()) -> None:
    """Raise InvalidGraph naming the first value read before any definition, in this graph or below."""
    defined = set(outer) | {v.name for v in graph.inputs} | set(graph.initializers)
    for node in graph.nodes:
        defined.update(o for o in node.outputs if o)
    for node in graph.nodes:
        for name in node.inputs:
            if name and name not in defined:
                raise InvalidGraph(
                    f"{node.describe()} reads value {name!r}, which no graph input, initializer or node defines"
                )
        for sub in node.subgraphs():
            check_defined(sub, defined)
    for v in graph.outputs:
        if v.name not in defined:
            raise InvalidGraph(f"graph output {v.name!r} is not produced by any node, input or initializer")
