"""Run a plan: a tight loop over its steps, plus feed validation before the loop."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import numpy as np

from onnxpy import ir
from onnxpy.errors import InvalidArgument, OnnxpyError, RuntimeException
from onnxpy.plan import Plan


def execute(plan: Plan, inputs: Sequence[Any]) -> list[Any]:
    """Run ``plan`` on ``inputs`` (aligned with ``plan.input_slots``); returns the graph outputs."""
    slots = list(plan.template)
    for s, v in zip(plan.input_slots, inputs):
        slots[s] = v
    i = 0
    try:
        for i, (fn, ins, outs, kwargs, free) in enumerate(plan.steps):
            res = fn(*[slots[j] for j in ins], **kwargs)
            if type(res) is tuple:
                for s, v in zip(outs, res):
                    slots[s] = v
            else:
                slots[outs[0]] = res
            for s in free:
                slots[s] = None
    except Exception as e:
        raise _node_error(plan, i, e) from e
    return [slots[s] for s in plan.output_slots]


def profiled(plan: Plan, records: list[tuple[ir.Node, float, float]]) -> Plan:
    """A copy of ``plan`` whose steps append ``(node, start, duration)`` (perf_counter seconds) to
    ``records`` as they run; the plain plan stays free of any timing cost."""
    clock = time.perf_counter

    def timed(fn, node):
        def call(*args, **kwargs):
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                records.append((node, start, clock() - start))
        return call

    steps = tuple(step._replace(fn=timed(step.fn, node)) for step, node in zip(plan.steps, plan.nodes))
    return dataclasses.replace(plan, steps=steps)


def _node_error(plan: Plan, i: int, e: Exception) -> Exception:
    node = plan.nodes[i]
    if isinstance(e, OnnxpyError) and " failed: " in str(e):
        return type(e)(str(e))  # already names the innermost node (subgraph)
    cls = type(e) if isinstance(e, OnnxpyError) else RuntimeException
    return cls(f"{node.describe()} failed: {type(e).__name__}: {e}")


def check_feeds(plan: Plan, feeds: dict[str, Any]) -> list[Any]:
    """Validate a feed dict against the plan's inputs and return the values in plan order.

    Checks names, dtype, rank, static dims and that a symbolic dim takes one value across inputs.
    """
    expected = {v.name: v for v in plan.inputs}
    unknown = [n for n in feeds if n not in expected]
    if unknown:
        raise InvalidArgument(f"invalid input name(s) {unknown}: the model's inputs are {list(expected)}")
    values, dims, missing = [], {}, []
    for info, s in zip(plan.inputs, plan.input_slots):
        if info.name in feeds:
            values.append(_check_value(info, feeds[info.name], dims))
        elif plan.template[s] is not None or isinstance(info.type, ir.OptionalType):
            values.append(plan.template[s])  # an initializer's default, or an empty optional
        else:
            missing.append(info.name)
    if missing:
        raise InvalidArgument(f"missing required input(s) {missing}: the model's inputs are {list(expected)}")
    return values


def _check_value(info: ir.ValueInfo, value: Any, dims: dict[str, tuple[int, str]]) -> Any:
    t = info.type
    if isinstance(t, ir.OptionalType):
        if value is None:
            return None
        t = t.elem
    if isinstance(t, ir.SequenceType):
        if not isinstance(value, (list, tuple)):
            raise InvalidArgument(f"input {info.name!r} expects a sequence (list of arrays), got {type(value).__name__}")
        return [_check_value(ir.ValueInfo(info.name, t.elem), v, {}) for v in value]
    if isinstance(t, ir.MapType):
        if not isinstance(value, dict):
            raise InvalidArgument(f"input {info.name!r} expects a map (dict), got {type(value).__name__}")
        return value
    if t is None:
        return value if isinstance(value, np.ndarray) else np.asarray(value)
    if isinstance(value, np.generic):
        value = np.asarray(value)  # a numpy scalar is a 0-d tensor
    if not isinstance(value, np.ndarray):
        if np.isscalar(value) or isinstance(value, (list, tuple)):
            raise InvalidArgument(
                f"input {info.name!r} expects a numpy array of {t}, got {type(value).__name__}"
            )
        value = np.asarray(value)
    got = value.dtype
    if got != t.dtype and not (got.kind == "U" and t.dtype == object):
        raise InvalidArgument(
            f"input {info.name!r} has the wrong data type: got tensor({_dtype_label(got)}), expected {t}"
        )
    if got.kind == "U":
        value = value.astype(object)
    if t.shape is not None:
        if value.ndim != len(t.shape):
            raise InvalidArgument(
                f"input {info.name!r} has the wrong rank: got {value.ndim} (shape {value.shape}), "
                f"expected {len(t.shape)} (shape {_shape_label(t.shape)})"
            )
        for axis, (d, want) in enumerate(zip(value.shape, t.shape)):
            if isinstance(want, int) and d != want:
                raise InvalidArgument(
                    f"input {info.name!r} has the wrong size on axis {axis}: got {d} (shape {value.shape}), "
                    f"expected {want} (shape {_shape_label(t.shape)})"
                )
            if isinstance(want, str):
                seen = dims.setdefault(want, (d, info.name))
                if seen[0] != d:
                    raise InvalidArgument(
                        f"symbolic dimension {want!r} is {seen[0]} in input {seen[1]!r} but {d} in input "
                        f"{info.name!r} (axis {axis}): it must take one value in a run"
                    )
    return value


def _dtype_label(dt: np.dtype) -> str:
    try:
        return ir.dtype_name(dt)
    except ValueError:
        return str(dt)


def _shape_label(shape: tuple) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
